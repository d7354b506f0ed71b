"""One writer per output: lock files that name their holder, stale ones taken over."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from bert_tf import locks
from conftest import REPO_ROOT


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


def test_a_holder_on_another_host_is_judged_by_its_heartbeat(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(locks.LEASE_ENV, "3")
    lock = tmp_path / ".out.lock"
    # a heartbeat older than the lease: the holder is gone, taken over at once
    write_lock(lock, pid=1, host="another-machine", heartbeat=time.time() - 30)
    start = time.monotonic()
    with locks.output_lock(lock, "out"):
        assert json.loads(lock.read_text())["host"] == socket.gethostname()
    assert time.monotonic() - start < 2
    assert "sent no heartbeat for over 3 s" in caplog.text
    # a fresh heartbeat that never moves again (its holder was killed): watched for the lease,
    # however many times it is read meanwhile (here every 0.05 s)
    sleep = time.sleep
    monkeypatch.setattr(locks.time, "sleep", lambda seconds: sleep(min(seconds, 0.05)))
    for holder in ({"heartbeat": time.time()}, {}):  # {}: a lock of an older bert_tf
        write_lock(lock, pid=1, host="another-machine", **holder)
        start = time.monotonic()
        with locks.output_lock(lock, "out"):
            pass
        assert 2 < time.monotonic() - start < 8
    # the same hostname after another boot (a VM recreated under its name): not this machine's
    write_lock(lock, pid=os.getpid(), boot_id="another-boot", heartbeat=time.time() - 30)
    with locks.output_lock(lock, "out"):
        assert json.loads(lock.read_text())["token"]


UNSHARED_HOLDER = """
import sys, time
from bert_tf import locks
with locks.output_lock(sys.argv[1], "--output_dir out"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_live_holder_on_another_host_is_refused_and_a_killed_one_taken_over(tmp_path,
                                                                              monkeypatch):
    """The holder runs under another hostname (a UTS namespace): its heartbeat tells."""
    monkeypatch.setenv(locks.LEASE_ENV, "3")
    lock = tmp_path / ".out.lock"
    holder = subprocess.Popen(
        ["unshare", "--uts", "sh", "-c", 'hostname preempted-vm && exec "$0" -c "$1" "$2"',
         sys.executable, UNSHARED_HOLDER, str(lock)], cwd=REPO_ROOT, stdout=subprocess.PIPE,
        text=True, env={**os.environ, "PYTHONPATH": REPO_ROOT})
    try:
        assert holder.stdout.readline() == "held\n"
        assert json.loads(lock.read_text())["host"] == "preempted-vm"
        with pytest.raises(locks.LockedError, match="pid .* on preempted-vm.*heartbeat is "
                                                    "fresh"):
            with locks.output_lock(lock, "--output_dir out"):
                pass
        holder.kill()  # kill -9: the lock stays behind, its heartbeat stops
        holder.wait()
        assert json.loads(lock.read_text())["host"] == "preempted-vm"
        start = time.monotonic()
        with locks.output_lock(lock, "--output_dir out"):
            assert json.loads(lock.read_text())["host"] == socket.gethostname()
        assert time.monotonic() - start < 3 + 6  # the lease, and a loaded machine
    finally:
        holder.kill()
        holder.wait()


def test_the_holder_refreshes_its_heartbeat_and_notices_a_takeover(tmp_path, monkeypatch,
                                                                  caplog):
    monkeypatch.setenv(locks.LEASE_ENV, "0.6")  # a heartbeat every 0.1 s
    lock = tmp_path / ".out.lock"
    with locks.output_lock(lock, "out"):
        first = json.loads(lock.read_text())
        time.sleep(0.5)
        later = json.loads(lock.read_text())
        assert later["heartbeat"] > first["heartbeat"] and later["token"] == first["token"]
        write_lock(lock, pid=1, host="another-machine", token="theirs")
        time.sleep(0.5)
        assert json.loads(lock.read_text())["token"] == "theirs"  # not written over
    assert "was taken over by another process" in caplog.text
    assert lock.exists()  # theirs: not removed


def test_a_lease_that_is_not_a_number_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv(locks.LEASE_ENV, "soon")
    with pytest.raises(ValueError, match="BERT_TF_LOCK_LEASE_SECS='soon'"):
        with locks.output_lock(tmp_path / ".x.lock", "out"):
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


def test_object_store_locks_refuse_a_second_writer(monkeypatch):
    monkeypatch.setenv(locks.LEASE_ENV, "0.6")  # heartbeats rewrite the object meanwhile
    path = "ram://locks/run/.bert_tf.lock"
    with locks.output_lock(path, "--output_dir ram://locks/run"):
        time.sleep(0.5)
        assert json.loads(locks.io.read_text(path))["pid"] == os.getpid()
        with pytest.raises(locks.LockedError, match="is being written by another process"):
            with locks.output_lock(path, "--output_dir ram://locks/run"):
                pass
    with locks.output_lock(path, "again"):  # released
        pass
