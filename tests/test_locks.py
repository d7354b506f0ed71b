"""One writer per output: lock files that name their holder, stale ones taken over."""

import json
import socket
import subprocess
import sys

import pytest

from bert_tf import locks


@pytest.fixture
def sleeper():
    """A live process that is not this one."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield process
    process.kill()
    process.wait()


def write_lock(path, **holder):
    path.write_text(json.dumps({"host": socket.gethostname(), "started": "earlier",
                                "command": "the first writer", **holder}))


def test_a_live_holder_is_named_and_the_lock_kept(tmp_path, sleeper):
    lock = tmp_path / ".out.lock"
    write_lock(lock, pid=sleeper.pid)
    with pytest.raises(locks.LockedError, match=rf"--output_dir out is being written by another "
                                                rf"process: pid {sleeper.pid} on "
                                                rf"{socket.gethostname()}.*the first writer"):
        with locks.output_lock(lock, "--output_dir out"):
            pass
    assert json.loads(lock.read_text())["pid"] == sleeper.pid


def test_a_holder_on_another_host_is_never_taken_over(tmp_path):
    lock = tmp_path / ".out.lock"
    write_lock(lock, pid=1, host="another-machine")
    with pytest.raises(locks.LockedError, match="another-machine.*if that process is gone, "
                                                "remove"):
        with locks.output_lock(lock, "out"):
            pass


def test_stale_locks_are_taken_over_and_released(tmp_path, sleeper, caplog):
    lock = tmp_path / ".out.lock"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    write_lock(lock, pid=int(dead.stdout))  # exited
    with locks.output_lock(lock, "out"):
        assert json.loads(lock.read_text())["pid"] != int(dead.stdout)
    assert not lock.exists()
    # a live pid that now belongs to another process than the one that took the lock
    write_lock(lock, pid=sleeper.pid, process_start=1)
    with locks.output_lock(lock, "out"):
        pass
    assert "taking over a lock left by pid" in caplog.text
    lock.write_text("")  # a creator killed between creating and writing it
    with locks.output_lock(lock, "out"):
        pass
    assert not lock.exists()
    # not a lock this code wrote: JSON that is no object, a pid no process can have
    for content in ("[1, 2]", "42", json.dumps({"host": socket.gethostname(), "pid": 2**64})):
        lock.write_text(content)
        with locks.output_lock(lock, "out"):
            assert json.loads(lock.read_text())["pid"] != 2**64
        assert not lock.exists()


def test_waiting_for_a_holder_that_finishes(tmp_path):
    lock = tmp_path / ".out.lock"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(2)"])
    write_lock(lock, pid=holder.pid)
    try:
        with locks.output_lock(lock, "out", wait=60):
            assert json.loads(lock.read_text())["pid"] != holder.pid
    finally:
        holder.wait()


def test_object_store_locks_refuse_a_second_writer():
    path = "ram://locks/run/.bert_tf.lock"
    with locks.output_lock(path, "--output_dir ram://locks/run"):
        with pytest.raises(locks.LockedError, match="is being written by another process"):
            with locks.output_lock(path, "--output_dir ram://locks/run"):
                pass
    with locks.output_lock(path, "again"):  # released
        pass
