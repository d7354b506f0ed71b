"""A command's console without TensorFlow's known noise lines.

TensorFlow's C++ runtime writes a few lines to stderr that look like failures and are not:
- `failed call to cuInit` (error level): the CUDA build of TensorFlow probing for a GPU driver on
  a machine that has none. Dropped only where no NVIDIA kernel driver is loaded
  (/proc/driver/nvidia absent); on a GPU machine the line means a real driver problem and stays.
- `oneDNN supports DT_INT64 only on platforms with AVX-512` (error level, also DT_BOOL, DT_HALF):
  grappler noting that an integer op keeps TensorFlow's own kernel; printed on AVX-512 machines
  too, and harmless.
- `Input of GeneratorDatasetOp::Dataset will not be optimized` (warning level): tf.distribute's
  per-device input iterators are built that way; nothing to act on.

`filter_stderr()` routes this process's file descriptor 2 (so the C++ runtime's lines, Python's
and those of child processes alike) through a small filter process that drops exactly those lines
and passes everything else through unchanged, line by line. The filter is a separate process so
that nothing is lost when this one dies: a fatal error's last lines are already in the pipe, and
the filter writes them out before it sees the end of its input. `TF_CPP_MIN_LOG_LEVEL=0` turns the
filter off (with TensorFlow's INFO lines on, every line shows), as does
`BERT_TF_CONSOLE_FILTER=0`.
"""

import atexit
import contextlib
import os
import subprocess
import sys
import tempfile

# Regular expressions of the dropped lines (matched anywhere in a line).
NOISE = [
    r"oneDNN supports DT_\w+ only on platforms with AVX-512",
    r"Input of GeneratorDatasetOp::Dataset will not be optimized",
]
NO_GPU_DRIVER_NOISE = [r"failed call to cuInit"]

# The filter process: reads its stdin as lines, writes all but the noise to its stdout (this
# process's stderr). It ignores SIGINT/SIGTERM, so Ctrl-C reaches the command, not the filter,
# and it ends when every writer (this process and its children) has closed the pipe.
_FILTER = r"""
import re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
noise = re.compile(b"|".join(a.encode() for a in sys.argv[1:]))
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    if not noise.search(line):
        out.write(line)
        out.flush()
"""


def noise_patterns() -> list:
    """The patterns dropped on this machine."""
    patterns = list(NOISE)
    if not os.path.exists("/proc/driver/nvidia"):
        patterns += NO_GPU_DRIVER_NOISE
    return patterns


def enabled() -> bool:
    return (os.environ.get("TF_CPP_MIN_LOG_LEVEL") != "0"
            and os.environ.get("BERT_TF_CONSOLE_FILTER", "1") != "0")


def filter_stderr() -> bool:
    """Sends file descriptor 2 through the noise filter until this process exits. Call it once,
    at the start of a command, before TensorFlow's runtime starts. Returns whether it is on."""
    if not enabled():
        return False
    try:
        sys.stderr.flush()
        original = os.dup(2)
        read_end, write_end = os.pipe()
        filter_process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _FILTER, *noise_patterns()],
            stdin=read_end, stdout=original, stderr=original, start_new_session=True)
    except OSError:
        return False  # no filter: the console keeps every line
    os.close(read_end)
    os.dup2(write_end, 2)
    os.close(write_end)

    def restore():
        # Back to the real stderr; the filter then reads to the end of what was written and
        # exits. Waiting for it keeps its last lines before the shell's next prompt.
        _restore(original)
        try:
            filter_process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass  # a child process still holds the pipe; the filter ends with it

    atexit.register(restore)
    return True


@contextlib.contextmanager
def held_stderr():
    """File descriptor 2 (the C++ runtime's lines too) kept in a temporary file inside the block:
    dropped when the block succeeds, written out when it raises. For steps whose library
    narrates every success (TensorFlow's LiteRT converter: ~20 lines per model)."""
    try:
        sys.stderr.flush()
        original = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            _restore(original)
            held.seek(0)
            os.write(2, held.read())
            raise
        else:
            _restore(original)


def _restore(original):
    """File descriptor 2 back to `original` (a dup of it), Python's buffer flushed first."""
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os.dup2(original, 2)
    os.close(original)
