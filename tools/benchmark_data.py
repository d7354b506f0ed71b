"""Data-creation benchmark: bert_tf.create_pretraining_data against the Model Garden's, same corpus.

    python tools/benchmark_data.py [--megabytes=11] [--output=results.json]

Builds a corpus of real English text (bert_tf/data/sample_corpus.py), learns a 30522-token vocab with
bert_tf.build_vocab, then runs, one after the other on this machine, each in its own process:
  * tf-models-official's `official.nlp.data.create_pretraining_data` (its tokenizer, then
    create_training_instances and write_instance_to_example_files, as its main() does);
  * ours (`python -m bert_tf.create_pretraining_data`) with --num_workers=1 and 2;
  * ours with 2 workers on a corpus three times larger, to show that memory does not grow;
  * ours as an Apache Beam pipeline on Beam's DirectRunner in multi-process mode, 2 workers (with
    the `beam` extra): the same examples, through Beam's local runner and its overheads; on the
    3x corpus; and once more with --dupe_factor=10, for the work per 1 MB buffer that a Dataflow estimate starts from.
All with the same flags: max_seq_length 128, 20 predictions, masked_lm_prob 0.15, dupe_factor 1,
short_seq_prob 0.1, seed 12345, lower-cased. "MB/s" is input text over the time from the start of
the work (after the imports) to the last shard written, measured inside each program; the whole
command's wall time is shown too. Ratios are from this one run.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from bert_tf.data.sample_corpus import write_corpus  # noqa: E402

MODEL_GARDEN = """
import json, random, resource, sys, time
from official.nlp.data import create_pretraining_data as c
from official.nlp.tools import tokenization
corpus, vocab, out = sys.argv[1:4]
start = time.perf_counter()
tokenizer = tokenization.FullTokenizer(vocab_file=vocab, do_lower_case=True)
instances = c.create_training_instances(
    [corpus], tokenizer, c.get_processor_text_fn(False, True), 128, 1, 0.1, 0.15, 20,
    random.Random(12345), False, None)
c.write_instance_to_example_files(instances, tokenizer, 128, 20, [out], False, False)
print(json.dumps({"seconds": time.perf_counter() - start, "examples": len(instances),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

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
    parser.add_argument("--parts", default="model_garden,local,beam",
                        help="comma list of model_garden, local, beam")
    args = parser.parse_args()
    parts = args.parts.split(",")

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

    vocab = os.path.join(work, "vocab.txt")
    wall, _, _ = measure([py, "-m", "bert_tf.build_vocab", f"--input_file={corpus}",
                          f"--output_file={vocab}", "--vocab_size=30522"], env)
    results["build_vocab_wall_seconds"] = wall

    if "model_garden" in parts:
        wall, out, _ = measure([py, "-c", MODEL_GARDEN, corpus, vocab, f"{work}/mg.tfrecord"], env)
        mg = json.loads(out.strip().splitlines()[-1])
        results["model_garden"] = {"wall_seconds": wall, "seconds": mg["seconds"],
                                   "examples": mg["examples"], "mb": mb,
                                   "peak_rss": f"{mg['peak_rss_mb']:,.0f} MB"}
    runs = {}
    if "local" in parts:
        runs.update({"bert_tf_1_worker": (corpus, ["--num_workers=1"], mb),
                     "bert_tf_2_workers": (corpus, ["--num_workers=2"], mb),
                     "bert_tf_2_workers_3x_corpus": (big, ["--num_workers=2"], 3 * mb)})
    if "beam" in parts:
        beam = ["--runner=DirectRunner", "--direct_num_workers=2",
                "--direct_running_mode=multi_processing"]
        runs.update({"beam_direct_2_workers": (corpus, beam, mb),
                     "beam_direct_2_workers_3x_corpus": (big, beam, 3 * mb),
                     "beam_direct_2_workers_dupe10": (corpus, beam + ["--dupe_factor=10"], mb)})
    for name, (path, extra, size_mb) in runs.items():
        wall, out, _ = measure([py, "-m", "bert_tf.create_pretraining_data", f"--input_file={path}",
                                f"--output_file={work}/{name}", f"--vocab_file={vocab}",
                                "--overwrite", "--noprogress"] + FLAGS + extra, env)
        wrote = next(line for line in out.splitlines() if line.startswith("Wrote"))
        entry = {"wall_seconds": wall, "mb": size_mb, "summary": wrote,
                 "seconds": float(re.search(r" in ([\d.]+)s:", wrote).group(1)),
                 "examples": int(re.search(r"Wrote ([\d,]+) examples", wrote).group(1)
                                 .replace(",", "")),
                 "peak_rss": next((line for line in out.splitlines()
                                   if line.startswith("Peak RSS")), "n/a")
                 .removeprefix("Peak RSS: ")}
        per_buffer = re.search(r"([\d,]+) buffer\(s\), ([\d.]+)s of work per buffer", out)
        if per_buffer:
            entry["buffers"] = int(per_buffer.group(1).replace(",", ""))
            entry["seconds_per_buffer"] = float(per_buffer.group(2))
        results[name] = entry

    base = mb / results["model_garden"]["seconds"] if "model_garden" in results else None
    print(f"\ncorpus: {mb:.2f} MB of real English text; {os.cpu_count()} CPU cores; "
          f"build_vocab (30522 tokens) {results['build_vocab_wall_seconds']:.1f}s wall")
    print(f"{'run':30s} {'corpus':>7s} {'examples':>9s} {'wall s':>7s} {'work s':>7s} "
          f"{'MB/s':>6s} {'x MG':>5s}  peak RSS")
    for name in [n for n in ["model_garden", *runs] if n in results]:
        e = results[name]
        e["mb_per_second"] = e["mb"] / e["seconds"]
        e["ratio_to_model_garden"] = e["mb_per_second"] / base if base else float("nan")
        print(f"{name:30s} {e['mb']:6.1f}M {e['examples']:9,d} {e['wall_seconds']:7.1f} "
              f"{e['seconds']:7.1f} {e['mb_per_second']:6.2f} {e['ratio_to_model_garden']:5.1f}"
              f"  {e['peak_rss']}")
    for name in [n for n in runs if "seconds_per_buffer" in results[n]]:
        e = results[name]
        print(f"{name}: {e['buffers']} buffers of ~1 MB, {e['seconds_per_buffer']:.2f} s of work "
              f"per buffer (one worker process)")
    if args.output:
        with open(args.output, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
