"""Finetuning under every strategy pretraining has, on CPU stand-ins: two logical CPU devices
for `mirrored`, two local worker processes for `multi_worker_mirrored` (which `auto` picks from
TF_CONFIG). Without dropout (whose masks differ between replicas) each learns what one device
learns, to float rounding: the global batch is the same rows, split between replicas, and the
summed gradient is clipped and applied once. Each predicts every example once."""

import json
import os
import subprocess
import sys

import pytest

from classification_fixtures import make_workspace
from conftest import REPO_ROOT
from pretraining_fixtures import free_ports

# One process, two logical CPUs: the same job on one device and mirrored over both.
MIRRORED = """
import json, sys
import tensorflow as tf
tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
sys.path.insert(0, "tests")
import pathlib
from classification_fixtures import values
from bert_tf.finetuning.classification import run
workspace, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
results = {}
for strategy in ("one_device", "mirrored"):
    metrics = run(values(workspace, "single", out / strategy, num_train_epochs=4,
                         predict_file=str(workspace / "single_dev.tsv"),
                         distribution_strategy=strategy), log=lambda line: None)
    results[strategy] = {"accuracy": metrics["accuracy"], "loss": metrics["loss"]}
print(json.dumps(results))
"""

CLASSIFIER_FLAGS = ["--text_a_column=text", "--label_column=label", "--max_seq_length=32",
                    "--train_batch_size=32", "--eval_batch_size=32", "--learning_rate=2e-3",
                    "--num_train_epochs=4", "--mixed_precision=float32", "--random_seed=1"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("strategies"), dropout=0.0)


def predictions(directory):
    with open(os.path.join(directory, "predictions.tsv"), encoding="utf-8") as f:
        return f.read().splitlines()[1:]


@pytest.mark.slow
def test_mirrored_learns_what_one_device_learns_and_predicts_each_example_once(workspace,
                                                                               tmp_path):
    result = subprocess.run([sys.executable, "-c", MIRRORED, str(workspace), str(tmp_path)],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.strip().splitlines()[-1])
    one, mirrored = results["one_device"], results["mirrored"]
    assert one["accuracy"] > 0.9, results
    assert mirrored["accuracy"] == one["accuracy"], results
    assert abs(mirrored["loss"] - one["loss"]) < 1e-3, results
    record = json.loads((tmp_path / "mirrored" / "run_config.json").read_text())
    assert record["strategy"]["name"] == "mirrored" and record["strategy"]["replicas"] == 2
    assert len(predictions(tmp_path / "mirrored")) == 120  # once each, not once per replica
    assert predictions(tmp_path / "mirrored")[:3] != []


@pytest.mark.slow
def test_two_local_workers_learn_what_one_device_learns(workspace, tmp_path):
    """run_classifier as a user starts it on each worker of a TF_CONFIG cluster, with the
    default --distribution_strategy=auto: every worker trains, the chief writes the run."""
    files = [f"--train_file={workspace / 'single_train.tsv'}",
             f"--eval_file={workspace / 'single_dev.tsv'}",
             f"--predict_file={workspace / 'single_dev.tsv'}",
             f"--init_checkpoint={workspace / 'pretrain' / 'ckpt-1'}"]
    command = [sys.executable, "-m", "bert_tf.run_classifier", *files, *CLASSIFIER_FLAGS]
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    workers = [subprocess.Popen(
        [*command, f"--output_dir={tmp_path / 'workers'}"], cwd=REPO_ROOT,
        env={**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster,
                                                    "task": {"type": "worker", "index": i}})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    one = subprocess.run([*command, f"--output_dir={tmp_path / 'one'}"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=600)
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    assert all(worker.returncode == 0 for worker in workers), outputs[0][-3000:] + outputs[1][-3000:]
    assert one.returncode == 0, one.stderr[-3000:]
    assert "strategy: multi_worker_mirrored, 2 replicas on 2 workers (TF_CONFIG names 2 tasks " \
           "that train)" in outputs[0]
    assert "strategy: one_device, 1 replica (no GPU or TPU: the CPU)" in one.stdout

    chief, single = tmp_path / "workers", tmp_path / "one"
    together = json.loads((chief / "eval_results.json").read_text())
    alone = json.loads((single / "eval_results.json").read_text())
    assert alone["accuracy"] > 0.9, alone
    assert together["accuracy"] == alone["accuracy"], (together, alone)
    assert abs(together["loss"] - alone["loss"]) < 1e-3, (together, alone)
    record = json.loads((chief / "run_config.json").read_text())["strategy"]
    assert (record["name"], record["replicas"], record["workers"]) == \
        ("multi_worker_mirrored", 2, 2)
    assert len(predictions(chief)) == 120 and (chief / "export" / "classifier").is_dir()
    assert not list(chief.glob(".worker_*")), "worker 1 removes its own files when done"
