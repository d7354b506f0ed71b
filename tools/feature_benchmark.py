"""extract_features' speed, output size and memory: google's JSON lines against the compact
formats, on the same lines and encoder.

    python tools/feature_benchmark.py [--bert_config_file=configs/bert_mini.json] \
        [--lines=1000] [--max_seq_length=128] [--output=features.json]

The encoder has random weights of the config's shape (speed and size do not depend on the
weights); the lines are sentences of the sample corpus, one per line, every fourth a
`text_a ||| text_b` pair. Each format is written once (after one warm-up batch), timed, and its
size read back; peak RSS growth over the extraction (Linux: /proc/self/clear_refs) is measured
for the JSON and npz layouts per token at `--lines` and 4x as many lines (flat memory: alike).
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS
flags.DEFINE_string("bert_config_file", "configs/bert_mini.json", "Encoder shape.")
flags.DEFINE_integer("lines", 1000, "Lines of input.")
flags.DEFINE_integer("max_seq_length", 128, "Tokens per line.")
flags.DEFINE_integer("batch_size", 32, "Lines per batch.")
flags.DEFINE_string("output", None, "Write the figures as JSON here.")
flags.DEFINE_string("_rss_child", None, "(internal) one run's peak RSS growth: "
                    "LINES,FORMAT,WORK")

CASES = [("jsonl", "none", "-1,-2,-3,-4"), ("npz", "none", "-1,-2,-3,-4"),
         ("tfrecord", "none", "-1"), ("npz", "cls", "-1"), ("npz", "mean", "-1,-2,-3,-4")]


def make_inputs(work, lines):
    """A run directory (random weights) and a text file of `lines` lines."""
    import keras
    import tensorflow as tf

    from bert_tf.config import BertConfig
    from bert_tf.data.sample_corpus import write_corpus
    from bert_tf.modeling import build_pretrainer
    from bert_tf.text.tokenization import write_vocab
    from bert_tf.text.vocab_learning import learn_vocab

    corpus = os.path.join(work, "corpus.txt")
    write_corpus(corpus)
    run = os.path.join(work, "run")
    os.makedirs(run, exist_ok=True)
    config = BertConfig.from_json_file(FLAGS.bert_config_file)
    tokens = learn_vocab(corpus, vocab_size=min(config.vocab_size, 8000))
    write_vocab(tokens, os.path.join(run, "vocab.txt"))
    config = BertConfig.from_dict({**config.to_dict(), "vocab_size": len(tokens)})
    config.to_json_file(os.path.join(run, "bert_config.json"))
    with open(os.path.join(run, "run_config.json"), "w") as f:
        json.dump({"do_lower_case": True}, f)
    keras.utils.set_random_seed(0)
    tf.train.Checkpoint(model=build_pretrainer(config)).write(os.path.join(run, "ckpt-1"))
    with open(corpus, encoding="utf-8") as f:
        sentences = [s.strip() for s in f if len(s.split()) > 3]
    text = os.path.join(work, f"input_{lines}.txt")
    with open(text, "w", encoding="utf-8") as f:
        for i in range(lines):
            a = sentences[i % len(sentences)]
            f.write((f"{a} ||| {sentences[(i + 1) % len(sentences)]}" if i % 4 == 3 else a)
                    + "\n")
    return os.path.join(run, "ckpt-1"), text


def extract(checkpoint, text, output, output_format, pooling, layers):
    from bert_tf.extract_features import FeatureConfig, run

    return run(FeatureConfig(input_file=text, output_file=output, init_checkpoint=checkpoint,
                             layers=layers, max_seq_length=FLAGS.max_seq_length,
                             batch_size=FLAGS.batch_size, output_format=output_format,
                             pooling=pooling), log=lambda line: None)


def status(field):
    """A /proc/self/status field in MiB (VmRSS: now; VmHWM: the peak since the last reset)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024


def rss_child(spec):
    lines, output_format, work = spec.split(",")
    checkpoint, text = make_inputs(work, int(lines))
    with open("/proc/self/clear_refs", "w") as f:  # the peak counts from here
        f.write("5")
    before = status("VmRSS")
    extract(checkpoint, text, os.path.join(work, "rss.out"), output_format, "none",
            "-1,-2,-3,-4")
    print(json.dumps({"lines": int(lines), "format": output_format,
                      "peak_growth_mb": round(status("VmHWM") - before, 1)}))


def main(argv):
    del argv
    if FLAGS._rss_child:
        rss_child(FLAGS._rss_child)
        return
    results = {"config": FLAGS.bert_config_file, "lines": FLAGS.lines,
               "max_seq_length": FLAGS.max_seq_length, "formats": [], "memory": []}
    with tempfile.TemporaryDirectory() as work:
        checkpoint, text = make_inputs(work, FLAGS.lines)
        warm = os.path.join(work, "warm.txt")
        with open(text) as f, open(warm, "w") as w:
            w.writelines(f.readlines()[:FLAGS.batch_size])
        for output_format, pooling, layers in CASES:
            extract(checkpoint, warm, os.path.join(work, "warm.out"), output_format, pooling,
                    layers)
            output = os.path.join(work, f"features.{pooling}.{output_format}")
            start = time.perf_counter()
            extract(checkpoint, text, output, output_format, pooling, layers)
            seconds = time.perf_counter() - start
            row = {"format": output_format, "pooling": pooling, "layers": layers,
                   "seconds": round(seconds, 2), "lines_per_s": round(FLAGS.lines / seconds, 1),
                   "bytes": os.path.getsize(output)}
            print(json.dumps(row), flush=True)
            results["formats"].append(row)
            os.remove(output)
        for lines, output_format in ((FLAGS.lines, "jsonl"), (4 * FLAGS.lines, "jsonl"),
                                     (FLAGS.lines, "npz"), (4 * FLAGS.lines, "npz")):
            child = os.path.join(work, f"rss_{lines}_{output_format}")
            os.makedirs(child)
            out = subprocess.run([sys.executable, __file__,
                                  f"--_rss_child={lines},{output_format},{child}",
                                  f"--bert_config_file={FLAGS.bert_config_file}",
                                  f"--max_seq_length={FLAGS.max_seq_length}"],
                                 capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            print(json.dumps(row), flush=True)
            results["memory"].append(row)
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    app.run(main)
