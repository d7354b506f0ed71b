"""Strategies by name and `auto`'s choice for each kind of machine and launcher; a TPU that is
not there is a one-line error saying what was tried."""

import json
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


# === auto: the strategy for the hardware and the launcher ===

from bert_tf.training import strategy as strategies  # noqa: E402

TWO_WORKERS = json.dumps({"cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]},
                          "task": {"type": "worker", "index": 0}})


def choose(**kwargs):
    """`auto` on a machine of no TPU chips and no GPU unless the case says otherwise."""
    return strategies.choose("auto", **{"tpu_chips": {}, "gpus": 0, "environ": {}, **kwargs})


def test_auto_picks_a_configured_tpu_first():
    assert choose(tpu="bert-pod", environ={"TF_CONFIG": TWO_WORKERS}, gpus=8) == \
        ("tpu", "--tpu=bert-pod")
    assert choose(environ={"TPU_NAME": "bert-pod"}) == ("tpu", "$TPU_NAME=bert-pod")
    assert choose(environ={"KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS": "grpc://10.0.0.3:8470"}) == \
        ("tpu", "$KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS=grpc://10.0.0.3:8470")
    assert choose(tpu_chips={"v5e": 8}) == ("tpu", "this machine's TPU chips: 8 x TPU v5e")


def test_auto_picks_multi_worker_from_tf_config_then_the_gpus_then_the_cpu():
    assert choose(environ={"TF_CONFIG": TWO_WORKERS}, gpus=8) == \
        ("multi_worker_mirrored", "TF_CONFIG names 2 tasks that train")
    chief_and_evaluator = json.dumps({"cluster": {"chief": ["a:1"], "evaluator": ["b:1"]},
                                      "task": {"type": "chief", "index": 0}})
    assert choose(environ={"TF_CONFIG": chief_and_evaluator}, gpus=2) == \
        ("mirrored", "2 GPUs on this machine")  # one task trains: not multi-worker
    assert choose(environ={"TF_CONFIG": "not json"}) == ("one_device", "no GPU or TPU: the CPU")
    assert choose(gpus=1) == ("one_device", "1 GPU on this machine")
    assert choose() == ("one_device", "no GPU or TPU: the CPU")
    assert strategies.choose("mirrored", gpus=0) == ("mirrored",
                                                     "--distribution_strategy=mirrored")


def test_tpu_chips_are_found_on_the_pci_bus_by_vendor_and_device(tmp_path):
    """A stand-in of /sys/bus/pci/devices as a v5e host (and a v4 one) lists it."""
    def device(address, vendor, device_id):
        (tmp_path / address).mkdir()
        (tmp_path / address / "vendor").write_text(vendor + "\n")
        (tmp_path / address / "device").write_text(device_id + "\n")

    assert strategies.local_tpu_chips(str(tmp_path)) == {}
    for index in range(4):
        device(f"0000:00:0{index + 4}.0", "0x1ae0", "0x0063")  # Google, TPU v5e
    device("0000:00:01.0", "0x8086", "0x0063")  # Intel's device 0x0063: not a TPU
    device("0000:00:02.0", "0x1ae0", "0x0001")  # a Google device that is not a TPU
    assert strategies.local_tpu_chips(str(tmp_path)) == {"v5e": 4}
    device("0000:00:09.0", "0x1ae0", "0x005e")
    assert strategies.local_tpu_chips(str(tmp_path)) == {"v5e": 4, "v4": 1}
    assert strategies.local_tpu_chips() == {}, "this machine has no TPU"


def test_the_choice_is_one_line_with_its_reason():
    import tensorflow as tf

    chosen = strategies.record(tf.distribute.get_strategy(), "one_device",
                               "no GPU or TPU: the CPU")
    assert chosen == {"name": "one_device", "why": "no GPU or TPU: the CPU", "replicas": 1,
                      "workers": 1}
    assert strategies.describe(chosen) == \
        "strategy: one_device, 1 replica (no GPU or TPU: the CPU)"
    assert strategies.describe({**chosen, "name": "multi_worker_mirrored", "replicas": 16,
                                "workers": 2, "why": "TF_CONFIG names 2 tasks that train"}) == \
        ("strategy: multi_worker_mirrored, 16 replicas on 2 workers (TF_CONFIG names 2 tasks "
         "that train)")


NO_API_CLIENT = """
import sys
sys.modules["googleapiclient"] = None  # as if not installed: import fails
from bert_tf.training.strategy import TPUUnavailableError, make_strategy
try:
    make_strategy("tpu", "bert-pod")
except TPUUnavailableError as e:
    print(e)
"""


@pytest.mark.slow
def test_a_tpu_by_name_needs_the_api_client_and_the_finetuning_tools_take_tpus():
    """Without the Google API client a TPU name is refused naming the extra to install; with it
    (installed here, as the tpu extra brings it) TensorFlow's Cloud TPU client gets past its
    "Missing runtime dependency" and fails only at finding the TPU (no metadata server here)."""
    missing = subprocess.run([sys.executable, "-c", NO_API_CLIENT], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=120)
    assert missing.stdout.strip() == (
        "--distribution_strategy=tpu: the TPU named 'bert-pod' is looked up through the Cloud "
        "TPU API, which needs the Google API client (googleapiclient, oauth2client): pip "
        "install 'bert-tf[tpu]' (or -r requirements-tpu.txt); on the TPU VM itself, "
        "--tpu=local needs neither"), missing.stderr[-2000:]
    assert strategies.api_client_installed()
    named = subprocess.run([sys.executable, "-c", PROBE, "bert-pod"], cwd=REPO_ROOT,
                           capture_output=True, text=True, timeout=120)
    assert named.stdout.startswith("--distribution_strategy=tpu: could not reach the TPU named "
                                   "'bert-pod' through the GCE metadata server: ")
    assert "Missing runtime dependency" not in named.stdout

    address = f"grpc://127.0.0.1:{free_port()}"
    cli = subprocess.run([sys.executable, "-m", "bert_tf.run_classifier", f"--tpu={address}",
                          "--output_dir=unused", "--train_file=unused", "--eval_file=unused",
                          "--init_checkpoint=unused"], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=120)
    assert cli.returncode == 1 and "Traceback" not in cli.stderr, cli.stderr[-2000:]
    assert cli.stderr.strip().splitlines()[-1] == \
        f"run_classifier: error: --tpu={address}: nothing answers at 127.0.0.1:" \
        f"{address.rsplit(':', 1)[1]} ([Errno 111] Connection refused)"


@pytest.mark.parametrize("tool", ["run_pretraining", "run_classifier", "run_squad", "run_tagging",
                                  "run_glue"])
def test_every_training_tool_takes_every_strategy_and_defaults_to_auto(tool):
    import dataclasses
    import importlib

    (config_class,) = importlib.import_module(f"bert_tf.{tool}").SETTINGS
    fields = {field.name: field for field in dataclasses.fields(config_class)}
    assert fields["distribution_strategy"].default == "auto"
    assert fields["distribution_strategy"].metadata["choices"] == (
        "auto", "one_device", "mirrored", "multi_worker_mirrored", "tpu")
    assert {"tpu", "worker_wait_secs"} <= fields.keys() and "num_gpus" not in fields
