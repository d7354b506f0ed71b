"""What the command-line entry points share: their start, errors as one line, flags from job
settings."""

import functools
import os
import sys

from absl import app, logging

from bert_tf import console, io
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
    """A failed command ends now: its message printed, the process gone with its status. Left
    to the interpreter's shutdown, tf.data's iterator threads can keep a failed process alive."""
    @functools.wraps(main)
    def wrapped(argv):
        try:
            return main(argv)
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
    and exit status 1, not a traceback. The errors name the flag or file at fault."""
    def decorate(main):
        @functools.wraps(main)
        def wrapped(argv):
            try:
                return main(argv)
            except errors as e:
                sys.exit(f"{program}: error: {e}")
            except KeyboardInterrupt:
                print(f"{program}: interrupted", file=sys.stderr)
                sys.exit(130)
            except Exception as e:
                if type(e).__name__ not in FILE_ERRORS or "tensorflow" not in type(e).__module__:
                    raise
                sys.exit(f"{program}: error: {io.one_line(e.message)}")
        return wrapped
    return decorate

