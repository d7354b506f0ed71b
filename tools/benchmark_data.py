"""Data-creation benchmark: bert_tf.create_pretraining_data against the Model Garden's, same corpus.

    python tools/benchmark_data.py [--megabytes=11] [--output=results.json]

Builds a corpus of real English text (tools/corpus.py), learns a 30522-token vocab with
bert_tf.build_vocab, then runs, one after the other on this machine:
  * tf-models-official's `official.nlp.data.create_pretraining_data` (requirements-dev.txt);
  * ours with --num_workers=1 and with --num_workers=2;
  * ours again on a corpus three times larger, to show that memory does not grow with it.
All with the same flags (max_seq_length 128, 20 predictions, dupe_factor 1, seed 12345). Each
command's wall time and peak RSS are measured from outside; "MB/s" is input text over wall time
less the time the same interpreter needs just to import TensorFlow and tensorflow-text (measured
here too), so that start-up counts for neither side. Ratios are from this one run.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from tools.corpus import write_corpus  # noqa: E402

FLAGS = ["--max_seq_length=128", "--max_predictions_per_seq=20", "--masked_lm_prob=0.15",
         "--random_seed=12345", "--dupe_factor=1", "--short_seq_prob=0.1",
         "--do_lower_case=true"]


def measure(command, env=None):
    """Runs a command; returns (wall seconds, stdout, stderr)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env)
    out, err = process.communicate()
    wall = time.perf_counter() - start
    if process.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{err.decode()[-3000:]}")
    return wall, out.decode(), err.decode()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=11.0)
    parser.add_argument("--output", help="write the figures as JSON here")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO_ROOT}
    work = args.workdir or tempfile.mkdtemp(prefix="bert_tf_bench_")
    os.makedirs(work, exist_ok=True)
    corpus = os.path.join(work, "corpus.txt")
    size = write_corpus(corpus, int(args.megabytes * 1e6))
    big = os.path.join(work, "corpus_x3.txt")
    with open(big, "wb") as out, open(corpus, "rb") as f:
        data = f.read()
        out.write(data * 3)
    mb = size / 1e6
    py = sys.executable
    results = {"corpus_mb": mb, "cpu_count": os.cpu_count()}

    startup, _, _ = measure([py, "-c", "import tensorflow, tensorflow_text"], env)
    results["tensorflow_import_seconds"] = startup

    vocab = os.path.join(work, "vocab.txt")
    wall, _, _ = measure([py, "-m", "bert_tf.build_vocab", f"--input_file={corpus}",
                          f"--output_file={vocab}", "--vocab_size=30522"], env)
    results["build_vocab"] = {"seconds": wall, "mb_per_second": mb / max(wall - startup, 1e-9)}

    runs = {
        "model_garden": [py, "-m", "official.nlp.data.create_pretraining_data",
                         f"--input_file={corpus}", f"--output_file={work}/mg.tfrecord",
                         f"--vocab_file={vocab}"] + FLAGS,
    }
    for workers in (1, 2):
        runs[f"bert_tf_{workers}_worker"] = [
            py, "-m", "bert_tf.create_pretraining_data", f"--input_file={corpus}",
            f"--output_file={work}/ours{workers}", f"--vocab_file={vocab}",
            f"--num_workers={workers}", "--overwrite", "--noprogress"] + FLAGS
    runs["bert_tf_2_worker_x3_corpus"] = [
        py, "-m", "bert_tf.create_pretraining_data", f"--input_file={big}",
        f"--output_file={work}/ours_x3", f"--vocab_file={vocab}", "--num_workers=2",
        "--overwrite", "--noprogress"] + FLAGS

    for name, command in runs.items():
        wall, out, err = measure(command, env)
        corpus_mb = mb * (3 if name.endswith("x3_corpus") else 1)
        entry = {"wall_seconds": wall,
                 "mb_per_second": corpus_mb / max(wall - startup, 1e-9),
                 "mb_per_second_whole_command": corpus_mb / wall}
        for line in out.splitlines():
            if line.startswith("Peak RSS"):
                entry["peak_rss"] = line
            if line.startswith("Wrote"):
                entry["summary"] = line
        results[name] = entry
        print(f"{name}: {entry}", file=sys.stderr)

    base = results["model_garden"]["mb_per_second"]
    print(f"\ncorpus: {mb:.2f} MB of real English text, {os.cpu_count()} CPU cores; "
          f"TensorFlow import {startup:.1f}s (subtracted from every run)")
    print(f"build_vocab (30522 tokens): {results['build_vocab']['seconds']:.1f}s wall")
    print(f"{'run':30s} {'wall s':>8s} {'MB/s':>7s} {'x MG':>6s}  peak RSS")
    for name in runs:
        entry = results[name]
        print(f"{name:30s} {entry['wall_seconds']:8.1f} {entry['mb_per_second']:7.2f} "
              f"{entry['mb_per_second'] / base:6.1f}  {entry.get('peak_rss', '-')}")
    if args.output:
        with open(args.output, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
