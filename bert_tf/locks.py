"""One writer per output: a lock file that names its holder.

    with output_lock("runs/x/.bert_tf.lock", "--output_dir runs/x"):
        ...  # a second process asking for the same lock is refused, naming the first

The lock file holds {"host", "pid", "process_start", "started", "command"}. A lock whose holder
ran on this host and is gone (no such process, or another process now under its pid) was left by
a killed run: it is taken over, with a warning. A holder on another host cannot be checked from
here; the error says whose lock it is and how to remove it.

On a local disk the lock is created atomically (O_CREAT | O_EXCL), so two processes can never both
hold it. Object stores (gs://) have no exclusive create through tf.io.gfile: there the lock is
written, then read back to see who won, which catches a second writer except within a second of
the first (a race between two starts at the same moment).
"""

import contextlib
import functools
import json
import os
import socket
import sys
import time

import tensorflow as tf
from absl import logging

from bert_tf import io


class LockedError(OSError):
    """The output is being written by another process."""


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


def _holder():
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "process_start": _proc_stat(os.getpid())[1],
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv)}


def _is_stale(holder) -> bool:
    """The holder ran on this host and has exited."""
    if holder.get("host") != socket.gethostname():
        return False
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
    """Holds the lock file `path` for the body; `what` names the output in messages (a flag and
    its value). While another live process holds it: waits up to `wait` seconds, then refuses
    with LockedError."""
    path = os.fspath(path)
    directory = os.path.dirname(path)
    content = json.dumps(_holder(), sort_keys=True)
    deadline = time.monotonic() + wait
    attempts = 0
    while True:
        attempts += 1
        try:
            if directory:
                tf.io.gfile.makedirs(directory)
            if _create(path, content):
                break
        except (OSError, tf.errors.OpError) as e:
            message = io.one_line(e.message) if isinstance(e, tf.errors.OpError) else e
            raise OSError(f"{what} is not writable: {message}") from None
        holder = _read(path)
        if not holder and attempts < 5:  # being written by its creator this moment, or empty
            time.sleep(0.2)                # (its creator killed between create and write)
            continue
        if holder and not _is_stale(holder) and time.monotonic() < deadline:
            time.sleep(1.0)
            continue
        if holder and not _is_stale(holder):
            raise LockedError(
                f"{what} is being written by another process: pid {holder.get('pid')} on "
                f"{holder.get('host')}, since {holder.get('started')} ({holder.get('command')}). "
                f"Wait for it, or use another output; if that process is gone, remove {path}")
        if holder:
            logging.warning("%s: taking over a lock left by pid %s on %s, which has exited",
                            what, holder.get("pid"), holder.get("host"))
        io.remove_quietly(path)
        if attempts >= 8 and time.monotonic() >= deadline:
            raise LockedError(f"{what}: could not take the lock {path}")
    try:
        yield path
    finally:
        if _read(path).get("pid") == os.getpid():
            io.remove_quietly(path)


def run_lock(output_dir):
    """The lock of a run directory (training, finetuning)."""
    return output_lock(os.path.join(output_dir, ".bert_tf.lock"), f"--output_dir {output_dir}")


def sibling_lock(path, flag):
    """The lock of an output named by a path (a data set NAME, a converted model's directory):
    `.NAME.lock` beside it, which no glob of NAME-* matches."""
    directory, name = os.path.split(os.fspath(path).rstrip("/"))
    return output_lock(os.path.join(directory, f".{name}.lock"), f"{flag} {path}")


def holds_run_lock(run):
    """Decorates a job's `run(config, ...)`: it runs holding config.output_dir's lock."""
    @functools.wraps(run)
    def locked(config, *args, **kwargs):
        with run_lock(config.output_dir):
            return run(config, *args, **kwargs)
    return locked
