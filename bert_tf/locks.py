"""One writer per output: a lock file that names its holder and is kept fresh by a heartbeat.

    with output_lock("runs/x/.bert_tf.lock", "--output_dir runs/x"):
        ...  # a second process asking for the same lock is refused, naming the first

The lock file holds {"host", "pid", "process_start", "boot_id", "pid_namespace", "token",
"started", "command", "heartbeat", "lease_secs"}. Its holder rewrites "heartbeat" (seconds since
the epoch, by its clock) every `lease_secs / 6` seconds while it runs.

When is a lock left by a process that is gone?
- A holder on this machine (same hostname, kernel boot and pid namespace) is checked directly:
  no such process, or another process now under its pid, and the lock is taken over at once.
- A holder on another machine (a preempted VM whose run restarts elsewhere, a pod rescheduled to
  another node) cannot be checked for life from here; its heartbeat can. A heartbeat older than
  the lease (`BERT_TF_LOCK_LEASE_SECS`, default 60 s) is a dead holder's: the lock is taken over,
  with a warning. A younger one is watched until the lease would run out: a heartbeat that moves
  is a live writer, refused (or waited for with `wait`); one that stays still is taken over.
  A restart after a preemption usually takes longer than the lease (a new VM or pod starts), so
  it takes the lock at once; at worst it waits one lease.

Why 60 s and 10 s: six heartbeats may be missed (a slow gs:// write, a long pause of the holder)
before a live writer could be taken for dead; a takeover rests on the two machines' clocks
agreeing to well within 50 s, which NTP-synced cloud machines do; and a write every 10 s costs an
object store nothing worth counting. The holder checks the lock before each heartbeat: if another
process has taken it over, the holder stops writing the lock and logs an error.

On a local disk the lock is created atomically (O_CREAT | O_EXCL), so two processes can never both
hold it. Object stores (gs://) have no exclusive create through tf.io.gfile: there the lock is
written, then read back to see who won, which catches a second writer except within a second of
the first (a race between two starts at the same moment).
"""

import contextlib
import json
import os
import socket
import sys
import threading
import time
import uuid

import tensorflow as tf
from absl import logging

from bert_tf import io

LEASE_ENV = "BERT_TF_LOCK_LEASE_SECS"
DEFAULT_LEASE_SECS = 60.0


class LockedError(OSError):
    """The output is being written by another process."""


def lease_secs() -> float:
    """How long a holder on another machine may go without a heartbeat before its lock is taken
    over: $BERT_TF_LOCK_LEASE_SECS, else 60."""
    value = os.environ.get(LEASE_ENV, "")
    try:
        lease = float(value) if value else DEFAULT_LEASE_SECS
    except ValueError:
        raise ValueError(f"{LEASE_ENV}={value!r}: expected a number of seconds") from None
    if not lease > 0:
        raise ValueError(f"{LEASE_ENV}={value!r}: expected a positive number of seconds")
    return lease


def _proc_stat(pid):
    """(state, start time in clock ticks since boot) of a process from Linux's /proc, or
    (None, None) where unknown. With the pid, the start time identifies a process even after its
    pid is reused; state "Z" is a process that has exited and waits to be reaped."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:  # the kernel's file, not a user path
            fields = f.read().rsplit(b")", 1)[1].split()
        return fields[0].decode(), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None, None


def _machine():
    """What makes a pid meaningful: the hostname, the kernel's boot and the pid namespace (a
    container restarted on another node may keep its hostname; one on the same node gets a new
    pid namespace)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot_id = f.read().strip()
    except OSError:
        boot_id = None
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = None
    return {"host": socket.gethostname(), "boot_id": boot_id, "pid_namespace": namespace}


def _holder(lease):
    return {**_machine(), "pid": os.getpid(), "process_start": _proc_stat(os.getpid())[1],
            "token": uuid.uuid4().hex, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(sys.argv), "heartbeat": time.time(), "lease_secs": lease}


def _on_this_machine(holder) -> bool:
    """Whether the holder's pid can be checked here (recorded fields only: older locks have no
    boot_id or pid_namespace)."""
    here = _machine()
    return all(holder.get(key) in (None, here[key]) if key != "host" else
               holder.get("host") == here["host"] for key in here)


def _process_gone(holder) -> bool:
    """The holder's process, on this machine, has exited."""
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or no pid this system could have
        return True
    except PermissionError:  # alive, another user's
        return False
    state, start = _proc_stat(pid)
    recorded = holder.get("process_start")
    return state == "Z" or (recorded is not None and start not in (None, recorded))


def _heartbeat_age(holder):
    """Seconds since the holder's last heartbeat (by this machine's clock), or None if the lock
    records none (a lock of an older bert_tf)."""
    beat = holder.get("heartbeat")
    return time.time() - beat if isinstance(beat, (int, float)) else None


def _is_stale(holder, lease) -> bool:
    """The holder has exited (this machine), or its heartbeat is older than the lease."""
    if _on_this_machine(holder):
        return _process_gone(holder)
    age = _heartbeat_age(holder)
    return age is not None and age > lease


def _read(path):
    try:
        holder = json.loads(io.read_text(path))
    except (ValueError, tf.errors.OpError):
        return {}  # half-written by a process killed while taking it, or just removed
    return holder if isinstance(holder, dict) else {}  # not a lock this code wrote


def _create(path, content) -> bool:
    """Writes the lock if there is none; True when this process now holds it."""
    if io.is_local(path):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(content)
        return True
    if tf.io.gfile.exists(path):
        return False
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(content)
    time.sleep(1.0)  # let a concurrent writer's object land, then see whose stayed
    return io.read_text(path) == content


@contextlib.contextmanager
def output_lock(path, what, wait=0):
    """Holds the lock file `path` for the body, with a heartbeat; `what` names the output in
    messages (a flag and its value). While another live process holds it: waits up to `wait`
    seconds, then refuses with LockedError."""
    path = os.fspath(path)
    directory = os.path.dirname(path)
    lease = lease_secs()
    holder = _holder(lease)
    deadline = time.monotonic() + wait
    empty_reads = takeovers = 0
    watched = None  # (heartbeat, token) of another machine's holder, and when its lease ends
    while True:
        try:
            if directory:
                tf.io.gfile.makedirs(directory)
            holder["heartbeat"] = time.time()
            if _create(path, json.dumps(holder, sort_keys=True)):
                break
        except (OSError, tf.errors.OpError) as e:
            message = io.one_line(e.message) if isinstance(e, tf.errors.OpError) else e
            raise OSError(f"{what} is not writable: {message}") from None
        other = _read(path)
        if not other and empty_reads < 4:  # being written by its creator this moment, or
            empty_reads += 1                 # empty (its creator killed between create and
            time.sleep(0.2)                  # write)
            continue
        stale = not other or _is_stale(other, lease)
        if not stale and not _on_this_machine(other):
            # Another machine's holder with a fresh heartbeat: alive if the heartbeat moves
            # before its lease runs out, else gone.
            seen = (other.get("heartbeat"), other.get("token"))
            if watched is None or watched[0] != seen:
                moved = watched is not None
                age = _heartbeat_age(other) or 0.0
                watched = (seen, time.monotonic() + max(lease - age, 0.0) + 1.0)
                if not moved:
                    logging.warning(
                        "%s: locked by pid %s on %s, whose last heartbeat was %.0f s ago; "
                        "watching it for up to %.0f s (the lease)", what, other.get("pid"),
                        other.get("host"), age, watched[1] - time.monotonic())
                if not moved or time.monotonic() < deadline:
                    time.sleep(1.0)
                    continue
            elif time.monotonic() > watched[1]:
                stale = True
            else:
                time.sleep(1.0)
                continue
        if not stale and time.monotonic() < deadline:
            time.sleep(1.0)
            continue
        if not stale:
            raise LockedError(
                f"{what} is being written by another process: pid {other.get('pid')} on "
                f"{other.get('host')}, since {other.get('started')} ({other.get('command')})"
                + ("" if _on_this_machine(other) else ", whose heartbeat is fresh") +
                f". Wait for it, or use another output; if that process is gone, its lock "
                f"{path} is taken over {lease:.0f} s after its last heartbeat")
        if other:
            logging.warning("%s: taking over a lock left by pid %s on %s, which has %s", what,
                            other.get("pid"), other.get("host"),
                            "exited" if _on_this_machine(other) else
                            f"sent no heartbeat for over {lease:.0f} s")
        io.remove_quietly(path)
        watched = None
        takeovers += 1
        if takeovers >= 8 and time.monotonic() >= deadline:  # others keep taking it first
            raise LockedError(f"{what}: could not take the lock {path}")
    heartbeat = _Heartbeat(path, holder, what)
    heartbeat.start()
    try:
        yield path
    finally:
        heartbeat.finish()
        if _read(path).get("token") == holder["token"]:
            io.remove_quietly(path)


class _Heartbeat(threading.Thread):
    """Rewrites the held lock's "heartbeat" every lease / 6 seconds, as long as the lock is
    still this holder's (a daemon thread: it never keeps a process alive)."""

    def __init__(self, path, holder, what):
        super().__init__(name=f"lock heartbeat {path}", daemon=True)
        self.path, self.holder, self.what = path, holder, what
        self.interval = holder["lease_secs"] / 6
        self.stopped = threading.Event()
        self.lost = False  # another process took the lock over

    def run(self):
        while not self.stopped.wait(self.interval):
            try:
                if _read(self.path).get("token") != self.holder["token"]:
                    self.lost = True
                    logging.error("%s: the lock %s was taken over by another process (this "
                                  "one sent no heartbeat for a lease?); two writers may now "
                                  "write the same output", self.what, self.path)
                    return
                self.holder["heartbeat"] = time.time()
                content = json.dumps(self.holder, sort_keys=True)
                io.write_file(self.path, content)  # renamed over it: never half a lock
            except (OSError, tf.errors.OpError) as e:  # a store's hiccup: try again next time
                logging.warning("%s: could not refresh the lock %s: %s", self.what, self.path,
                                e)

    def finish(self):
        self.stopped.set()
        self.join()


def run_lock(output_dir):
    """The lock of a run directory (training, finetuning)."""
    return output_lock(os.path.join(output_dir, ".bert_tf.lock"), f"--output_dir {output_dir}")


def sibling_lock(path, flag):
    """The lock of an output named by a path (a data set NAME, a converted model's directory):
    `.NAME.lock` beside it, which no glob of NAME-* matches."""
    directory, name = os.path.split(os.fspath(path).rstrip("/"))
    return output_lock(os.path.join(directory, f".{name}.lock"), f"{flag} {path}")

