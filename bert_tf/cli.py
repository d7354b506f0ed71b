"""What the command-line entry points share: their start, errors as one line, flags from job
settings."""

import functools
import os
import sys

from absl import app, logging

from bert_tf import console, io, preemption
from bert_tf.settings import define_flags, from_flags  # noqa: F401  (from_flags: the CLIs')


def start(main, settings, **kwargs):
    """A command's `__main__`: its flags from `settings` (settings classes), then `run`."""
    for config_class in settings:
        define_flags(config_class)
    run(main, **kwargs)


# TensorFlow's errors about files and resources (a full disk, a file gone, a corrupt record),
# whose message names the file: reported as one line like the errors bert_tf raises itself.
FILE_ERRORS = ("NotFoundError", "PermissionDeniedError", "ResourceExhaustedError",
               "DataLossError", "AlreadyExistsError", "FailedPreconditionError")


def run(main, **kwargs):
    """Starts a command: Python's log at WARNING (TensorFlow's INFO lines about saving and
    loading drown a command's own output; `--verbosity=0` brings them back), TensorFlow's noise
    lines off its console (`console.filter_stderr`), then absl's `app.run(main, **kwargs)`."""
    logging.set_verbosity(logging.WARNING)  # before the flags are parsed: --verbosity wins
    console.filter_stderr()
    app.run(_exits_on_failure(main), **kwargs)


def _exits_on_failure(main):
    """A failed or stopped command ends now: its message printed, the process gone with its
    status. Left to the interpreter's shutdown, tf.data's iterator threads can keep a failed
    process alive, and took 17 s to let a preempted run go after its save (bert_tiny, 2 cores):
    time the platform's grace period does not have."""
    @functools.wraps(main)
    def wrapped(argv):
        try:
            status = main(argv)
            if status not in (None, 0):  # a job stopped by a signal, its work saved
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
            return status
        except SystemExit as e:
            if e.code in (None, 0):
                raise
            if not isinstance(e.code, int):
                print(e.code, file=sys.stderr)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(e.code if isinstance(e.code, int) else 1)
    return wrapped


def reports_errors(program, errors=(ValueError, OSError)):
    """Wraps an absl `main`: bad input ends the program with `program: error: ...` on stderr
    and exit status 1, not a traceback. The errors name the flag or file at fault. A job
    stopped by a signal after saving (`preemption.Preempted`) and a lost multi-worker peer exit
    with the statuses of `preemption.EXIT_STATUS`."""
    def decorate(main):
        @functools.wraps(main)
        def wrapped(argv):
            try:
                return main(argv)
            except preemption.Preempted as e:  # saved: a status that says to resume or not
                print(f"{program}: {e}", file=sys.stderr)
                sys.exit(preemption.exit_status(e))
            except errors as e:
                print(f"{program}: error: {e}", file=sys.stderr)
                sys.exit(preemption.exit_status(e))  # 1, or retryable for a lost peer
            except KeyboardInterrupt:
                print(f"{program}: interrupted", file=sys.stderr)
                sys.exit(130)
            except Exception as e:
                if type(e).__name__ not in FILE_ERRORS or "tensorflow" not in type(e).__module__:
                    raise
                sys.exit(f"{program}: error: {io.one_line(e.message)}")
        return wrapped
    return decorate

