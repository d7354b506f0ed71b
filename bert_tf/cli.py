"""What the command-line entry points share: errors as one line, flags from job settings."""

import functools
import sys

from bert_tf.settings import define_flags, from_flags  # noqa: F401  (the CLIs' flag plumbing)


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
        return wrapped
    return decorate
