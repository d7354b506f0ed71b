"""Faults of a two-worker multi_worker_mirrored run (two local processes): a worker preempted
(SIGTERM), killed (SIGKILL) or never started. Every process exits within a bound, no worker
claims a save that did not happen, and a restart resumes from the last checkpoint there is."""

import os
import signal
import subprocess
import time

import pytest
import tensorflow as tf

from pretraining_fixtures import launch_workers, make_tiny_data, tiny_config_file

EXIT_BOUND = 90  # seconds from the fault to the last process's exit (a heartbeat and a save)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("data")
    return {"glob": make_tiny_data(str(directory)), "config": tiny_config_file(str(directory))}


def launch(data, output_dir, steps=100_000, skip=None, wait=60):
    return launch_workers(data, output_dir, [
        f"--num_train_steps={steps}", "--save_checkpoints_steps=10", "--log_steps=10",
        "--do_eval=false", f"--worker_wait_secs={wait}"], skip)


def finish(processes, timeout):
    """{index: (returncode, output)}; every process must exit within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    results = {}
    for index, process in processes.items():
        try:
            out = process.communicate(timeout=max(1, deadline - time.monotonic()))[0]
        except subprocess.TimeoutExpired:
            for p in processes.values():
                p.kill()
            pytest.fail(f"worker {index} still running {timeout} s after the fault")
        results[index] = (process.returncode, out)
    return results


def first_checkpoint(output_dir, processes, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.isdir(output_dir) and tf.train.latest_checkpoint(str(output_dir)):
            return tf.train.latest_checkpoint(str(output_dir))
        if any(p.poll() is not None for p in processes.values()):
            break
        time.sleep(0.5)
    outputs = {i: p.communicate()[0][-2000:] for i, p in processes.items()
               if p.poll() is not None}
    pytest.fail(f"no checkpoint appeared: {outputs}")


def step_of(checkpoint):
    return int(checkpoint.rsplit("-", 1)[1])


@pytest.mark.slow
@pytest.mark.parametrize("victim", [0, 1])
def test_sigterm_of_either_worker_saves_on_all_and_exits_143(data, tmp_path, victim):
    output_dir = tmp_path / "run"
    processes = launch(data, output_dir)
    first_checkpoint(output_dir, processes)
    time.sleep(1)
    processes[victim].send_signal(signal.SIGTERM)
    results = finish(processes, EXIT_BOUND)
    saved = [int(out.split("saved a checkpoint at step ")[1].split(";")[0])
             for _, out in results.values() if "saved a checkpoint at step" in out]
    assert all(code == 143 for code, _ in results.values()), results  # retryable
    assert len(saved) == 2 and saved[0] == saved[1], results
    assert "SIGTERM: saved" in results[victim][1]
    assert "SIGTERM on another worker: saved" in results[1 - victim][1]
    assert step_of(tf.train.latest_checkpoint(str(output_dir))) == saved[0]


@pytest.mark.slow
@pytest.mark.parametrize("victim", [0, 1])
def test_a_killed_worker_ends_its_peer_with_one_line_and_a_restart_resumes(data, tmp_path,
                                                                           victim):
    output_dir = tmp_path / "run"
    processes = launch(data, output_dir)
    first_checkpoint(output_dir, processes)
    time.sleep(1)
    processes[victim].kill()
    results = finish(processes, EXIT_BOUND)
    code, out = results[1 - victim]
    assert code == 143, out[-2000:]  # retryable: a restart resumes
    assert "saved a checkpoint" not in out
    assert (f"run_pretraining: error: multi_worker_mirrored: lost contact with worker {victim} "
            in out), out[-2000:]
    assert "Traceback" not in out
    latest = tf.train.latest_checkpoint(str(output_dir))
    assert tf.io.gfile.exists(latest + ".index")
    if victim == 1:
        return
    steps = step_of(latest) + 5
    results = finish(launch(data, output_dir, steps=steps), 300)
    for code, out in results.values():
        assert code == 0, out[-2000:]
        assert f"resumed from {latest} at step {step_of(latest)}" in out
    assert step_of(tf.train.latest_checkpoint(str(output_dir))) == steps


@pytest.mark.slow
def test_a_worker_that_never_starts_is_named_after_the_wait(data, tmp_path):
    processes = launch(data, tmp_path / "run", skip=0, wait=5)
    results = finish(processes, 5 + 60)
    code, out = results[1]
    assert code != 0
    assert ("worker 1 (127.0.0.1:" in out and "waited 5 s (--worker_wait_secs) for the other "
            "workers to start; not started: worker 0 (127.0.0.1:" in out), out[-2000:]
    assert not (tmp_path / "run" / "checkpoint").exists()


def test_a_malformed_tf_config_is_named(monkeypatch):
    from bert_tf.training.strategy import make_strategy
    for value, message in (("{not json", "TF_CONFIG is not valid JSON"),
                           ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", '
                            '"index": 3}}', 'TF_CONFIG needs "task"'),
                           ('{"task": {}}', 'TF_CONFIG needs "cluster"')):
        monkeypatch.setenv("TF_CONFIG", value)
        with pytest.raises(ValueError, match=message):
            make_strategy("multi_worker_mirrored")


def test_the_lost_worker_is_named_from_tensorflows_messages():
    from bert_tf.training.strategy import lost_worker
    three = {"cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222", "10.0.0.3:2222"]},
             "task": {"type": "worker", "index": 0}}
    assert lost_worker(three, "Error reported from /job:worker/task:2: unhealthy") == \
        "worker 2 (10.0.0.3:2222)"
    assert lost_worker(three, "from /job:worker/replica:0/task:1 while calling RecvBuf") == \
        "worker 1 (10.0.0.2:2222)"
    assert lost_worker(three, "ipv4:10.0.0.2:2222: Connection refused") == \
        "worker 1 (10.0.0.2:2222)"
    assert lost_worker(three, "Socket closed") == "a worker"
    two = {"cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]},
           "task": {"type": "worker", "index": 1}}
    assert lost_worker(two, "Socket closed") == "worker 0 (10.0.0.1:2222)"  # the only peer
