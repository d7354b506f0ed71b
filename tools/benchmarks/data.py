"""input and data: our tf.data pipeline over real shards, and data creation against the
Model Garden's."""

import json
import os
import sys
import tempfile

from benchmarks.settings import FLAGS, REPO
from benchmarks.train import median_rate


def bench_input(log, train_results=None):
    """Our tf.data pipeline over the embedded default's real shards, batch 32, seq 128."""
    import tensorflow as tf

    from bert_tf.data import input_pipeline
    from bert_tf.data.sample_data import make_sample_data

    pattern = make_sample_data(FLAGS.seq_length, FLAGS.predictions, log=log)
    files = tf.io.gfile.glob(pattern)
    batches = 200
    iterator = iter(input_pipeline.make_dataset(files, FLAGS.batch_size, FLAGS.seq_length,
                                                FLAGS.predictions,
                                                input_pipeline.PipelineOptions(seed=0)))

    def take():
        for _ in range(batches):
            next(iterator)
    rate = median_rate(take, batches * FLAGS.batch_size, FLAGS.repeats)
    consumed = None
    for row in (train_results or {}).get("rows", []):
        if row["config"] == "tiny" and row["implementation"] == "bert_tf":
            consumed = max(consumed or 0, row["sequences_per_second"])
    result = {"examples_per_second": rate, "files": len(files),
              "bert_tiny_train_sequences_per_second": consumed,
              "ratio": rate / consumed if consumed else None}
    log(f"input pipeline: {rate:,.0f} examples/s from {len(files)} shards"
        + (f"; bert_tiny's train step consumes {consumed:.1f}/s: {rate / consumed:,.0f}x"
           if consumed else ""))
    return result


def bench_data(log):
    """tools/benchmark_data.py: create_pretraining_data against the Model Garden's."""
    import subprocess

    with tempfile.TemporaryDirectory() as work:
        output = os.path.join(work, "data.json")
        subprocess.run([sys.executable, os.path.join(REPO, "tools", "benchmark_data.py"),
                        f"--megabytes={FLAGS.data_megabytes}", f"--output={output}",
                        f"--workdir={work}"], check=True)
        with open(output) as f:
            results = json.load(f)
    log("data creation: " + ", ".join(
        f"{name} {results[name]['mb_per_second']:.2f} MB/s "
        f"({results[name]['ratio_to_model_garden']:.1f}x)"
        for name in results if isinstance(results[name], dict)))
    return results
