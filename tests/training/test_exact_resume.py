"""Exactly-resumable input: after kill -9 and a resume, training goes on with the batch that
would have come next. Every example fed to the model is hashed (in the replica step, with the
step number and replica); an uninterrupted run and a run killed and resumed must have fed the
same examples at every step: static data unpacked on one device, and dynamic data packed under
MirroredStrategy (two logical CPUs), where every part of the resume is at work at once."""

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO_ROOT
from pretraining_fixtures import make_tiny_data, tiny_config_file

STEPS, SAVE_EVERY, KILL_AFTER = 16, 4, 9

# Runs run_pretraining with the replica step wrapped to append "step replica [hashes]" to a
# trace file for every batch it is fed (tf.print into the file, from inside the compiled loop).
DRIVER = """
import sys
import tensorflow as tf
tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
sys.path.insert(0, "tests")
from bert_tf.training import trainer
from bert_tf.training.pretraining import run
from pretraining_fixtures import flag_values
trace, data, config, out, strategy, pack = sys.argv[1:7]
gradients = trainer.Trainer.gradients

def traced(self, features, labels, *args):
    parts = [features[n] for n in sorted(features)] + [labels[n] for n in sorted(labels)]
    rows = tf.concat([tf.cast(p, tf.int64) if p.dtype.is_integer else
                      tf.cast(tf.round(p * 1000), tf.int64) for p in parts], axis=1)
    hashes = tf.strings.to_hash_bucket_fast(
        tf.strings.reduce_join(tf.strings.as_string(rows), axis=1, separator=","), 2 ** 62)
    replica = tf.distribute.get_replica_context().replica_id_in_sync_group
    tf.print(self.optimizer.iterations, replica, hashes, summarize=-1,
             output_stream="file://" + trace)
    return gradients(self, features, labels, *args)

trainer.Trainer.gradients = traced
run(flag_values(data, config, out, num_train_steps=%d, save_checkpoints_steps=%d, log_steps=2,
                steps_per_loop=2, do_eval=False, distribution_strategy=strategy,
                pack_sequences=pack == "packed", max_sequences_per_row=3),
    log=lambda line: print(line, flush=True))
""" % (STEPS, SAVE_EVERY)


def fed(trace):
    """{(step, replica): hashes} from a trace; a step run again after a resume replaces the
    killed run's (which were never checkpointed)."""
    steps = {}
    with open(trace) as f:
        for line in f:
            step, replica, hashes = line.split(" ", 2)
            steps[int(step), int(replica)] = hashes.strip()
    return steps


def launch(trace, data, config, out, strategy, pack):
    return subprocess.Popen([sys.executable, "-c", DRIVER, str(trace), data, config, str(out),
                             strategy, pack], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("data")
    return {"static": make_tiny_data(str(directory)),
            "dynamic": make_tiny_data(str(directory), dynamic_masking=True),
            "config": tiny_config_file(str(directory))}


@pytest.mark.slow
@pytest.mark.parametrize("strategy,masking,pack", [
    ("one_device", "static", "unpacked"), ("mirrored", "dynamic", "packed")])
def test_a_killed_run_resumes_with_the_next_batch(data, tmp_path, strategy, masking, pack):
    args = (data[masking], data["config"])
    whole = launch(tmp_path / "whole.trace", *args, tmp_path / "whole", strategy, pack)
    killed_trace = tmp_path / "killed.trace"
    killed = launch(killed_trace, *args, tmp_path / "killed", strategy, pack)
    deadline = time.time() + 300
    while time.time() < deadline and killed.poll() is None:  # kill -9 mid-training
        if killed_trace.exists() and max((s for s, _ in fed(killed_trace)), default=-1) \
                >= KILL_AFTER:
            os.kill(killed.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    assert killed.wait(60) == -signal.SIGKILL, killed.communicate()[1][-3000:]
    resumed = launch(killed_trace, *args, tmp_path / "killed", strategy, pack)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    assert "resumed from" in out and "input: the data stream resumes after its first" in out
    assert whole.wait(300) == 0, whole.communicate()[1][-3000:]

    expected, got = fed(tmp_path / "whole.trace"), fed(killed_trace)
    replicas = 2 if strategy == "mirrored" else 1
    assert sorted(expected) == [(s, r) for s in range(STEPS) for r in range(replicas)]
    assert got == expected
    assert len(set(expected.values())) == len(expected)  # every batch differs
