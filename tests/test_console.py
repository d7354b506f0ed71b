"""A quiet console: TensorFlow's C++ INFO lines off by default, the user's settings respected."""

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, TF_ERROR_LINE
from pretraining_fixtures import make_tiny_data, tiny_config_file

CPP_INFO = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: I ", re.M)  # TF's C++ logging
ABSL_INFO = re.compile(r"^I\d{4} ", re.M)  # absl's Python logging
TF_ERROR = re.compile(TF_ERROR_LINE, re.M)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("data")
    return make_tiny_data(str(directory), num_shards=1), tiny_config_file(str(directory))


def pretrain(data, output_dir, *flags, **env):
    """run_pretraining for 2 steps as a user would start it: none of the tests' log settings."""
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environment.update(env)
    result = subprocess.run(
        [sys.executable, "-m", "bert_tf.run_pretraining", f"--input_file={data[0]}",
         f"--bert_config_file={data[1]}", f"--output_dir={output_dir}", "--max_seq_length=32",
         "--max_predictions_per_seq=5", "--train_batch_size=8", "--num_train_steps=2",
         "--num_warmup_steps=1", "--steps_per_loop=1", "--save_checkpoints_steps=2",
         "--do_eval=false", *flags],
        cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "step 2/2" in result.stdout
    return result.stdout + result.stderr


@pytest.mark.slow
def test_a_quiet_console_unless_the_user_asks(data, tmp_path):
    """By default: no INFO line (TensorFlow's C++ or absl's), and on a CPU-only machine no
    TensorFlow line at error level; TF_CPP_MIN_LOG_LEVEL=0 and --verbosity=0 from the user bring
    their lines back."""
    quiet = pretrain(data, tmp_path / "quiet", "--do_eval=true", "--eval_input_file=" + data[0])
    assert not CPP_INFO.search(quiet), CPP_INFO.findall(quiet)
    assert not ABSL_INFO.search(quiet)
    errors = TF_ERROR.findall(quiet)
    if not os.path.exists("/proc/driver/nvidia"):
        assert not errors, errors
    assert "GeneratorDatasetOp" not in quiet and "oneDNN supports" not in quiet
    loud = pretrain(data, tmp_path / "loud", "--verbosity=0", TF_CPP_MIN_LOG_LEVEL="0")
    assert CPP_INFO.search(loud), "TF_CPP_MIN_LOG_LEVEL=0 from the user brings them back"
    assert ABSL_INFO.search(loud), "--verbosity=0 shows absl's INFO lines"


# A command's start as `cli.run` makes it, without TensorFlow: the noise filter, then lines
# written straight to file descriptor 2 (as TensorFlow's C++ runtime writes them).
FILTERED_PROGRAM = r"""
import os, sys
from bert_tf import console
print("filter on:", console.filter_stderr(), flush=True)
for line in sys.argv[1:]:
    os.write(2, line.encode() + b"\n")
if os.environ.get("CRASH"):
    os.abort()
"""
CUINIT = ("2026-12-02 06:21:59.408635: E external/local_xla/xla/stream_executor/cuda/"
          "cuda_platform.cc:51] failed call to cuInit: INTERNAL: CUDA error: Failed call to "
          "cuInit: UNKNOWN ERROR (303)")
ONEDNN = ("2026-12-02 06:22:27.448894: E tensorflow/core/util/util.cc:131] oneDNN supports DT_INT64 "
          "only on platforms with AVX-512. Falling back to the default Eigen-based implementation "
          "if present.")
GENERATOR = ("2026-12-02 06:22:23.773296: W tensorflow/core/framework/dataset.cc:993] Input of "
             "GeneratorDatasetOp::Dataset will not be optimized because the dataset does not "
             "implement the AsGraphDefInternal() method needed to apply optimizations.")
REAL = ["2026-12-02 06:22:30.000000: W tensorflow/core/kernels/data/x.cc:1] a real warning",
        "2026-12-02 06:22:31.000000: E tensorflow/core/y.cc:2] a real error", "ünïcode ok"]


def filtered(*lines, **env):
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("TF_CPP_MIN_LOG_LEVEL", "BERT_TF_CONSOLE_FILTER")}
    environment.update(env)
    return subprocess.run([sys.executable, "-c", FILTERED_PROGRAM, *lines], cwd=REPO_ROOT,
                          env=environment, capture_output=True, text=True, timeout=60)


def test_the_filter_drops_only_the_known_noise_and_keeps_order():
    result = filtered(REAL[0], CUINIT, ONEDNN, REAL[1], GENERATOR, REAL[2])
    assert result.returncode == 0 and "filter on: True" in result.stdout
    kept = result.stderr.splitlines()
    assert ONEDNN not in kept and GENERATOR not in kept
    no_driver = not os.path.exists("/proc/driver/nvidia")
    assert (CUINIT not in kept) == no_driver, "cuInit's line is noise only without a GPU driver"
    assert [line for line in kept if line != CUINIT] == REAL


@pytest.mark.parametrize("env", [{"TF_CPP_MIN_LOG_LEVEL": "0"}, {"BERT_TF_CONSOLE_FILTER": "0"}])
def test_the_filter_is_off_when_the_user_asks_for_everything(env):
    result = filtered(CUINIT, ONEDNN, GENERATOR, REAL[0], **env)
    assert "filter on: False" in result.stdout
    sent = [CUINIT, ONEDNN, GENERATOR, REAL[0]]  # after TensorFlow's own INFO lines at level 0
    assert [line for line in result.stderr.splitlines() if line in sent] == sent


def test_a_crash_loses_no_line():
    """The process aborts right after writing: the filter, a process of its own, still passes
    every line it was sent."""
    result = filtered(ONEDNN, *REAL, CRASH="1")
    assert result.returncode != 0
    assert result.stderr.splitlines()[:3] == REAL
