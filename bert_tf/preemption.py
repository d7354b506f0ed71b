"""Stopping on a signal: what a preemptible machine or a scheduler needs from a job.

Cloud platforms stop a machine with SIGTERM and kill it a grace period later (Compute Engine's
spot and preemptible VMs: 30 s; Kubernetes: `terminationGracePeriodSeconds`, 30 s by default);
a person stops a job with Ctrl-C (SIGINT). A job that gets either saves its work and exits with
a status that says what happened, so that a scheduler restarts what can go on and gives up on
what cannot:

    EXIT_STATUS["finished"] == 0        done
    EXIT_STATUS["error"] == 1           bad data, flags or files: a restart fails the same way
    EXIT_STATUS["SIGINT"] == 130        stopped by Ctrl-C after a save: a person decides
    EXIT_STATUS["SIGTERM"] == 143       stopped by SIGTERM after a save, or a multi-worker peer
                                        lost: start the same command again to resume

(128 + the signal's number is the shell's convention for a process a signal ended; Kubeflow's
`restartPolicy: ExitCode` retries 128-255 and fails on 1-127.) docs/failure-behaviour.md has the
table for users.

The pretraining loop sizes its host calls so that a stop fits in the grace period
(`HostCallSizer`); Keras `fit()` stops at the end of the batch in progress (`StopOnSignal` in
bert_tf.finetuning.resume).
"""

import math
import signal

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)  # save and stop

EXIT_STATUS = {"finished": 0, "error": 1, "SIGINT": 128 + signal.SIGINT,
               "SIGTERM": 128 + signal.SIGTERM}
# what the status means, for messages and docs
RETRYABLE = "SIGTERM"


class Preempted(Exception):
    """A job stopped by a signal after saving its work; `signal` is "SIGTERM" or "SIGINT". The
    commands exit with EXIT_STATUS[signal]."""

    def __init__(self, signal_name, message):
        super().__init__(message)
        self.signal = signal_name


class LostPeer(OSError):
    """A multi-worker run lost a worker; the last checkpoint stands (retryable, like SIGTERM)."""


def exit_status(error) -> int:
    """The status a command exits with for `error` (None: finished)."""
    if error is None:
        return EXIT_STATUS["finished"]
    if isinstance(error, Preempted):
        return EXIT_STATUS[error.signal]
    if isinstance(error, LostPeer):
        return EXIT_STATUS[RETRYABLE]
    return EXIT_STATUS["error"]


class SignalFlag:
    """Records SIGTERM and SIGINT instead of dying of them, while in use:

        with SignalFlag() as received:
            ...  # received.name: "SIGTERM", "SIGINT" or None

    A Python handler runs in the main thread between bytecodes: while TensorFlow runs a host
    call, the signal waits for it to return (which is why host calls are sized by time)."""

    def __init__(self):
        self.number = 0

    @property
    def name(self):
        return signal.Signals(self.number).name if self.number else None

    def install(self):
        """Records the stop signals from now on (forgetting any recorded before)."""
        self.number = 0
        self._previous = {number: signal.signal(number, self._on_signal)
                          for number in STOP_SIGNALS}

    def restore(self):
        """The handlers from before `install` again."""
        for number, handler in getattr(self, "_previous", {}).items():
            signal.signal(number, handler)
        self._previous = {}

    def __enter__(self):
        self.install()
        return self

    def __exit__(self, *exc):
        self.restore()

    def _on_signal(self, signum, frame):
        if self.number != signal.SIGTERM:  # a preemption notice beats a Ctrl-C
            self.number = signum


# Seconds kept back from the grace period for what follows the save: the agreement between
# workers, the log lines and the process's exit.
EXIT_RESERVE_SECS = 3.0
# Until the first save is timed, a save is assumed to write this many bytes a second (a local
# SSD writes several times more; a gs:// bucket from one VM, about this).
ASSUMED_SAVE_BYTES_PER_SEC = 100e6


class HostCallSizer:
    """How many steps the next host call may run so that a stop fits in `grace_secs`.

    SIGTERM can arrive just after a host call starts; the process then finishes that call, saves
    and exits. So a host call may last at most `grace_secs - save - EXIT_RESERVE_SECS` (and is
    planned for half of that: `budget`), where the
    save's time is the last save's as measured (before the first one: the checkpoint's bytes at
    ASSUMED_SAVE_BYTES_PER_SEC). A host call runs at most twice the steps of the one before
    (the first: 1 step, which also compiles), so a step time not measured yet cannot overshoot
by much,
    and the steps of one host call never exceed `budget / seconds per step` of the last
    measurement. Every worker of a multi-worker run must run the same steps: `agree` is given
    the timings averaged over the workers (see Trainer._agree) and all compute the same count.

    `grace_secs` 0: no time bound (host calls of --steps_per_loop steps).
    """

    def __init__(self, grace_secs, checkpoint_bytes=0):
        self.grace_secs = grace_secs
        self.save_secs = checkpoint_bytes / ASSUMED_SAVE_BYTES_PER_SEC
        self.save_timed = False  # save_secs is still the assumed one
        self.step_secs = None  # seconds per step of the last host call (all workers' mean)
        self.previous = 0  # steps of the last host call
        self.warned = False

    @property
    def budget(self) -> float:
        """Seconds one host call may last: half of what the save and the exit leave, so that a
        step twice as slow as measured (a busy host, a slower batch) still fits."""
        return (self.grace_secs - self.save_secs - EXIT_RESERVE_SECS) / 2

    def agree(self, step_secs, save_secs):
        """The timings every worker agreed on (None: not measured)."""
        if step_secs:
            self.step_secs = step_secs
        if save_secs:
            self.save_secs, self.save_timed = save_secs, True

    def steps(self, wanted, log=None) -> int:
        """At most `wanted` steps (the loop's own bound: steps_per_loop, the next log or save)."""
        if not self.grace_secs:
            return wanted
        allowed = max(2 * self.previous, 1)
        if self.step_secs:
            fit = math.floor(self.budget / self.step_secs)
            if fit < 1 and not self.warned and log is not None:
                log(f"warning: one step takes {self.step_secs:.1f} s and a save "
                    f"{self.save_secs:.1f} s" + ("" if self.save_timed else
                                                 " (assumed until the first save is timed)")
                    + f": a stop cannot fit in --preemption_grace_secs={self.grace_secs:g} "
                    f"(host calls of 1 step)")
                self.warned = True
            allowed = min(allowed, max(fit, 1))
        self.previous = allowed
        return min(wanted, allowed)
