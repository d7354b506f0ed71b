"""Fault injection: every tool killed (SIGKILL) at seeded random moments, and run on a full disk.

After each kill the output holds nothing finished-looking that is partial, and a re-run recovers:
the same bytes as a clean run where the tool is deterministic (data creation, conversion), a
complete run or export where it is not. On a full disk (a small tmpfs) each tool ends with a
one-line error naming the file, no traceback, and leaves no temporary file or lock behind.

BERT_TF_FAULT_TRIALS sets the kills per tool: 2 in CI, 20 in the slow mode run before a release
(`BERT_TF_FAULT_TRIALS=20 pytest tests/test_fault_injection.py`). Each trial prints a line; the
summary line per tool gives the kill moments and what the kill found.
"""

import filecmp
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from bert_tf.text.tokenization import write_vocab
from bert_tf.text.vocab_learning import learn_vocab
from bert_tf.data.sample_corpus import write_corpus
from conftest import REPO_ROOT
from pretraining_fixtures import tiny_config_file

TRIALS = int(os.environ.get("BERT_TF_FAULT_TRIALS", "2"))
SEED = 1234
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}

pytestmark = pytest.mark.slow


def tool(name, *flags):
    return [sys.executable, "-m", f"bert_tf.{name}", *flags]


def run_to_end(command, expect_ok=True):
    result = subprocess.run(command, cwd=REPO_ROOT, env=ENV, capture_output=True, text=True,
                            timeout=600)
    if expect_ok:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def wait_for(process, started, timeout=300):
    """Polls until `started()` (or the process ended); the time it took."""
    begin = time.monotonic()
    while started is not None and not started() and process.poll() is None:
        if time.monotonic() - begin > timeout:
            break
        time.sleep(0.02)
    return time.monotonic() - begin


def kill_at(command, seconds, started=None):
    """Starts `command` and SIGKILLs it `seconds` after `started()` holds (after the start when
    None), if it has not ended; True if killed."""
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    wait_for(process, started)
    try:
        process.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        return True


def timed(command, window=None):
    """Seconds a clean run takes from its start to its end, or between the two conditions of
    `window` = (started(), finished())."""
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    wait_for(process, window and window[0])
    begin = time.monotonic()
    wait_for(process, window and window[1])
    seconds = time.monotonic() - begin
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    return seconds if window else time.monotonic() - begin


def training_window(out):
    """Pretraining's kills fall between its first and last checkpoints: TensorFlow's start-up,
    tracing and exit would otherwise take most of the moments, and few kills would meet a save
    (one every 2 steps)."""
    return (lambda: os.path.exists(os.path.join(out, "checkpoint")),
            lambda: os.path.exists(os.path.join(out, "ckpt-30.index")))


def files_under(directory):
    return sorted(os.path.relpath(os.path.join(d, f), directory)
                  for d, _, names in os.walk(directory) for f in names)


def leftovers(directory):
    """Temporary files/directories and locks: what a finished or failed run must not leave."""
    found = []
    for d, dirs, names in os.walk(directory):
        for name in dirs + names:
            if ".tmp-" in name or name.endswith(".lock") or name.endswith("_temp"):
                found.append(os.path.relpath(os.path.join(d, name), directory))
    return found


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Corpus, vocab, config; a clean data set, run, export and conversion, and their times."""
    root = tmp_path_factory.mktemp("faults")
    corpus, vocab = root / "corpus.txt", root / "vocab.txt"
    write_corpus(str(corpus), max_bytes=150_000)
    write_vocab(learn_vocab(str(corpus), vocab_size=2000), str(vocab))
    config = tiny_config_file(str(root))
    windows = {"pretraining": training_window}
    commands = {
        "data": lambda out: tool(
            "create_pretraining_data", f"--input_file={corpus}", f"--vocab_file={vocab}",
            f"--output_file={out}/d", "--max_seq_length=32", "--max_predictions_per_seq=5",
            "--num_shards=4", "--dupe_factor=3", "--num_workers=1", "--noprogress"),
        "pretraining": lambda out, data=None: tool(
            "run_pretraining", f"--input_file={data or root / 'clean_data' / 'd-*.tfrecord'}",
            f"--bert_config_file={config}", f"--output_dir={out}", "--max_seq_length=32",
            "--max_predictions_per_seq=5", "--train_batch_size=8", "--num_train_steps=30",
            "--num_warmup_steps=0", "--save_checkpoints_steps=2", "--steps_per_loop=2",
            "--log_steps=2", "--nodo_eval", "--mixed_precision=float32"),
        "export": lambda out: tool(
            "export", f"--output_dir={root / 'clean_run'}", f"--export_dir={out}",
            "--max_seq_length=32"),
        "convert": lambda out: tool(
            "convert_checkpoint", "--input_format=bert_tf", f"--input={root / 'clean_run'}",
            "--output_format=huggingface", f"--output={out}/hf", "--overwrite"),
    }
    seconds = {name: timed(commands[name](root / f"clean_{suffix}"), windows.get(name) and
                           windows[name](root / f"clean_{suffix}"))
               for name, suffix in (("data", "data"), ("pretraining", "run"),
                                    ("export", "export"), ("convert", "hf"))}
    return {"root": root, "commands": commands, "seconds": seconds, "windows": windows}


def trials(work, name, check_after_kill, check_recovered, tmp_path):
    """TRIALS kills of tool `name` at seeded moments in [0.5 s, its clean time] (pretraining's
    in the time from its first to its last checkpoint, counted from the first), each followed
    by a check of what the kill left and a re-run of the same command to the end (which a data
    set finished before the kill refuses: it is kept, not remade), then a check of the result."""
    rng = random.Random(f"{SEED}-{name}")
    command = work["commands"][name]
    report = []
    for trial in range(TRIALS):
        out = tmp_path / f"trial{trial}"
        out.mkdir()
        window = work["windows"].get(name)
        moment = rng.uniform(0.0 if window else 0.5, work["seconds"][name])
        killed = kill_at(command(out), moment, window and window(out)[0])
        state = check_after_kill(out)
        result = run_to_end(command(out), expect_ok=False)
        if result.returncode:  # only a finished data set may refuse to be made again
            assert state == "finished" and "pass --overwrite" in result.stderr, result.stderr
        check_recovered(out)
        assert not leftovers(out), leftovers(out)
        report.append(f"{moment:.1f}s{'' if killed else ' (ended first)'}: {state}")
    print(f"\n{name}: {TRIALS} kills, clean run {work['seconds'][name]:.1f}s"
          f"{' between its first and last checkpoints' if name in work['windows'] else ''}; "
          + "; ".join(report))


# === kill -9 ===

def test_data_creation_killed_and_rerun_gives_the_same_bytes(work, tmp_path):
    clean = work["root"] / "clean_data"
    names = [n for n in files_under(clean) if n.endswith((".tfrecord", ".vocab.txt"))]

    def after_kill(out):
        if (out / "d.manifest.json").exists():  # finished-looking: then complete
            assert all(filecmp.cmp(clean / n, out / n, shallow=False) for n in names)
            return "finished"
        shards = [n for n in os.listdir(out) if n.endswith(".tfrecord")]
        return f"{len(shards)} of 4 shards renamed, no manifest" if shards else "nothing final"

    def recovered(out):
        assert all(filecmp.cmp(clean / n, out / n, shallow=False) for n in names)

    trials(work, "data", after_kill, recovered, tmp_path)


def readable_checkpoints(run_dir, while_sweeping=False):
    """Every checkpoint the run's `checkpoint` file lists reads in full. `while_sweeping`: right
    after a kill, an old one may be half deleted (TensorFlow's CheckpointManager removes the
    oldest before it rewrites the list); the latest must read all the same."""
    state = tf.train.get_checkpoint_state(str(run_dir))
    paths = list(state.all_model_checkpoint_paths) if state else []
    for path in paths:
        if while_sweeping and path != paths[-1] and not os.path.exists(path + ".index"):
            continue
        reader = tf.train.load_checkpoint(path)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    return paths


def test_pretraining_killed_and_rerun_finishes_from_a_complete_checkpoint(work, tmp_path):
    def after_kill(out):
        paths = readable_checkpoints(out, while_sweeping=True)
        saving = [n for n in os.listdir(out) if n.endswith("_temp")]
        sweeping = [p for p in paths if not os.path.exists(p + ".index")]
        return (f"latest {os.path.basename(paths[-1])}" if paths else "no checkpoint") + (
            f", killed while saving {saving[0][:-5]}" if saving else "") + (
            f", killed while deleting {os.path.basename(sweeping[0])}" if sweeping else "")

    def recovered(out):
        assert os.path.basename(readable_checkpoints(out)[-1]) == "ckpt-30"

    trials(work, "pretraining", after_kill, recovered, tmp_path)


def test_export_killed_and_rerun_leaves_only_complete_versions(work, tmp_path):
    clean = work["root"] / "clean_export"
    models = sorted(os.listdir(clean))

    def complete_versions(out):
        versions = []
        for model in models:
            for version in (os.listdir(out / model) if (out / model).exists() else []):
                if version.isdigit():
                    assert files_under(out / model / version) == files_under(clean / model / "1")
                    versions.append(f"{model}/{version}")
        return versions

    def after_kill(out):
        return f"{len(complete_versions(out))} complete version(s)"

    def recovered(out):
        assert {v.split("/")[0] for v in complete_versions(out)} == set(models)
        model = tf.saved_model.load(str(out / models[-1] / max(
            os.listdir(out / models[-1]), key=lambda v: int(v) if v.isdigit() else -1)))
        assert "serving_default" in model.signatures

    trials(work, "export", after_kill, recovered, tmp_path)


def test_conversion_killed_and_rerun_gives_the_same_bytes(work, tmp_path):
    clean = work["root"] / "clean_hf" / "hf"
    names = files_under(clean)

    def after_kill(out):
        if (out / "hf").exists():
            assert files_under(out / "hf") == names
            assert all(filecmp.cmp(clean / n, out / "hf" / n, shallow=False) for n in names)
            return "finished"
        return "no output"

    def recovered(out):
        assert all(filecmp.cmp(clean / n, out / "hf" / n, shallow=False) for n in names)

    trials(work, "convert", after_kill, recovered, tmp_path)


# === A full disk ===

@pytest.fixture
def small_disk(tmp_path):
    """Mounts tmpfs of a given size (KiB) at a fresh directory; unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mounts = []

    def mount(kib):
        path = tmp_path / f"disk{len(mounts)}"
        path.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(path)],
                       check=True)
        mounts.append(path)
        return path
    yield mount
    for path in mounts:
        subprocess.run(["umount", str(path)], check=False)


def size_kib(directory):
    return sum(os.path.getsize(os.path.join(d, f))
               for d, _, names in os.walk(directory) for f in names) // 1024


def expect_one_line_error(command, program):
    result = run_to_end(command, expect_ok=False)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{program}: error: ") and "No space left on device" in last, last
    return last


def test_full_disk_gives_one_line_errors_and_leaves_nothing_behind(work, small_disk):
    root, commands = work["root"], work["commands"]
    lines = {}
    # data creation: a third of the data set's size
    disk = small_disk(max(size_kib(root / "clean_data") // 3, 16))
    lines["data"] = expect_one_line_error(commands["data"](disk), "create_pretraining_data")
    assert os.listdir(disk) == [], os.listdir(disk)

    # pretraining: room for the run's files and one checkpoint, not two
    one = sum(os.path.getsize(p) for p in tf.io.gfile.glob(str(root / "clean_run" / "ckpt-30.*")))
    disk = small_disk((one * 3 // 2) // 1024 + 64)
    lines["pretraining"] = expect_one_line_error(commands["pretraining"](disk),
                                                 "run_pretraining")
    assert "--output_dir: saving checkpoint" in lines["pretraining"]
    assert "The last complete checkpoint is" in lines["pretraining"]
    readable_checkpoints(disk)
    assert not leftovers(disk), leftovers(disk)

    # export and conversion: half of what they write
    disk = small_disk(max(size_kib(root / "clean_export") // 2, 16))
    lines["export"] = expect_one_line_error(commands["export"](disk), "export")
    assert not leftovers(disk), leftovers(disk)
    disk = small_disk(max(size_kib(root / "clean_hf") // 2, 16))
    lines["convert"] = expect_one_line_error(commands["convert"](disk), "convert_checkpoint")
    assert os.listdir(disk) == [], os.listdir(disk)
    print("\n" + "\n".join(f"{k}: {v}" for k, v in lines.items()))
