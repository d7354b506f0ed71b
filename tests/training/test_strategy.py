"""Strategies by name; a TPU that is not there is a one-line error saying what was tried."""

import socket
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

PROBE = """
import sys
from bert_tf.training.strategy import TPUUnavailableError, make_strategy
for tpu in sys.argv[1:]:
    try:
        make_strategy("tpu", tpu)
        print("no error")
    except TPUUnavailableError as e:
        print(e)
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_an_unreachable_tpu_is_a_one_line_error():
    address = f"grpc://127.0.0.1:{free_port()}"
    result = subprocess.run([sys.executable, "-c", PROBE, "local", address], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    local, grpc = result.stdout.strip().splitlines()
    assert local.startswith("--distribution_strategy=tpu: could not reach this machine's TPU")
    assert grpc.startswith(f"--tpu={address}: nothing answers at 127.0.0.1:")

    cli = subprocess.run([sys.executable, "-m", "bert_tf.run_pretraining",
                          "--distribution_strategy=tpu", f"--tpu={address}"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 1 and "Traceback" not in cli.stderr
    assert cli.stderr.strip().splitlines()[-1].startswith(
        f"run_pretraining: error: --tpu={address}: nothing answers")
