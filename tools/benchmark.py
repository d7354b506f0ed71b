"""Side-by-side speed figures: bert_tf against the Model Garden and keras-hub, in one run.

    python tools/benchmark.py [--parts=train,input,data,serving,serving_overhead,finetune,
                                       tasks,packing,time_to_accuracy]
        [--configs=tiny,mini,small,base] [--jit=off,on] [--output=benchmark.json]

Peers (requirements-bench.txt): tf-models-official's BertEncoder + BertPretrainerV2 with its NSP
head, and keras-hub's BertMaskedLM (MLM only); each is timed when installed, interleaved with ours
under the same settings (oneDNN, threads, XLA), so only the ratios measured here count.

  train     sequences/s of a full training step (forward, backward, global-norm clip, AdamW),
            many steps per host call for every implementation, in each of --precisions (Keras
            dtype policies; every implementation, peers included, timed in each, interleaved);
            the bf16 step / fp32 step ratio beside the matmul's. MFU = model FLOPs / the peak
            of a large matmul in the step's dtype, measured in this process. FLOPs per sequence:
            6 * non_embedding_params * seq + 12 * layers * hidden * seq^2 + the MLM head
            (6 * predictions * (hidden^2 + hidden * vocab)).
  input     examples/s of our tf.data pipeline over real TFRecord shards, against bert_tiny's
            train-step consumption.
  data      create_pretraining_data input MB/s against the Model Garden's (tools/benchmark_data.py).
  serving   a text-in classifier on raw strings, per --serving_configs: p50/p99 latency at batch
            1 and sentences/s at batch 32 of our SavedModel, our LiteRT float32 and int8 models,
            our ONNX model (ONNX Runtime) behind Hugging Face's Rust WordPiece tokenizer, and
            transformers' pipeline("text-classification") on torch CPU (the same weights,
            converted); and each one's accuracy on a held-out set. The classifier is finetuned
            here on a synthetic task over the sample corpus's sentences (a sentence holds "good"
            or "bad"), from random weights, so accuracies compare formats, not models.
  serving_overhead
            p50/p99 latency of the text-in export against the encoder alone, batch 1 and 32.
  export    seconds to write a text-in pair classifier SavedModel, the tokenizer traced once
            (a graph function) against inline at every use.
  finetune  examples/s of classifier training on short texts, length-bucketed vs padded.
  tasks     rows/s of question-answering (seq 384 windows) and tagging (seq 128) training on
            rows made from real text, batches by length vs padded to max_seq_length.
  packing   effective throughput on the embedded default's real shards (seq 128): real
            (non-padding) tokens/s and sequences/s of bert_tf packed (4 per row) and unpacked,
            and of the Model Garden's model on the same unpacked batches (tiny, mini, small).

Warm-up calls (tracing, XLA compilation) are excluded; each figure is the median of --repeats.
Each part is a module of tools/benchmarks/ (its flags: benchmarks/settings.py); `PARTS` below
names them.
"""

import json
import os
import sys

from absl import app

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import bert_tf  # noqa: E402,F401  (the project's environment defaults, for every implementation)
from bench_common import train_flops_per_sequence  # noqa: E402,F401  (tests read it here)
from benchmarks.data import bench_data, bench_input  # noqa: E402
from benchmarks.export import bench_export  # noqa: E402
from benchmarks.finetune import bench_finetune, bench_tasks  # noqa: E402
from benchmarks.implementations import environment  # noqa: E402
from benchmarks.packing import bench_packing, bench_time_to_accuracy  # noqa: E402
from benchmarks.remat import remat_child, bench_remat  # noqa: E402
from benchmarks.serving import bench_serving, bench_serving_overhead  # noqa: E402
from benchmarks.settings import FLAGS  # noqa: E402
from benchmarks.train import bench_train  # noqa: E402

# --parts name -> (log, results so far) -> its figures
PARTS = {"train": lambda log, results: bench_train(log),
         "input": lambda log, results: bench_input(log, results.get("train")),
         "data": lambda log, results: bench_data(log),
         "serving": lambda log, results: bench_serving(log),
         "serving_overhead": lambda log, results: bench_serving_overhead(log),
         "finetune": lambda log, results: bench_finetune(log),
         "tasks": lambda log, results: bench_tasks(log),
         "packing": lambda log, results: bench_packing(log),
         "time_to_accuracy": lambda log, results: bench_time_to_accuracy(log),
         "remat": lambda log, results: bench_remat(log),
         "export": lambda log, results: bench_export(log)}


def main(argv):
    del argv
    if FLAGS.remat_child:
        return remat_child(FLAGS.remat_child)
    results = {"environment": environment()}
    print(json.dumps(results["environment"]))
    for part in FLAGS.parts:
        if part in PARTS:
            results[part] = PARTS[part](print, results)
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    app.run(main)
