"""What the benchmarks share, with numpy and bert_tf.config only (so the JAX-only GPU benchmark
can use it too): the model FLOPs of a training step and synthetic pretraining batches; and, for
the tools that measure recipes by running the CLIs (domain_adaptation.py, equal_time.py), a CLI
run that is skipped when done, a finetuning's dev accuracy and the working directory."""

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from bert_tf.config import GATED_ACTIVATIONS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train_flops_per_sequence(config, seq, predictions):
    """Forward + backward FLOPs of one sequence: 6 * non-embedding params * seq, attention's
    12 * layers * hidden * seq^2, and the MLM head on `predictions` positions. A gated
    feed-forward layer (GeGLU, SwiGLU) has two input projections of [H, I]."""
    H, L, I, V = (config.hidden_size, config.num_hidden_layers, config.intermediate_size,  # noqa
                  config.vocab_size)
    inputs = 2 if config.hidden_act in GATED_ACTIVATIONS else 1
    block_params = 4 * H * H + 4 * H + (inputs + 1) * H * I + inputs * I + H + 4 * H
    return (6 * L * block_params * seq + 12 * L * H * seq * seq
            + 6 * predictions * (H * H + H * V))


def synthetic_batch(config, batch, seq, predictions, seed=0):
    """(features, labels) of full-length random sequences, as the pretrainer takes them."""
    rng = np.random.default_rng(seed)
    features = {
        "input_word_ids": rng.integers(5, config.vocab_size, (batch, seq)).astype("int32"),
        "input_mask": np.ones((batch, seq), "int32"),
        "input_type_ids": (np.arange(seq)[None, :] >= seq // 2).repeat(batch, 0).astype("int32"),
        "masked_lm_positions": np.sort(rng.choice(seq - 1, (batch, predictions)) + 1, 1
                                       ).astype("int32")}
    labels = {"masked_lm_ids": rng.integers(5, config.vocab_size, (batch, predictions)
                                            ).astype("int32"),
              "masked_lm_weights": np.ones((batch, predictions), "float32"),
              "next_sentence_labels": rng.integers(0, 2, (batch, 1)).astype("int32")}
    return features, labels


def command(*args, done=None):
    """Runs `python -m bert_tf.<args>` (on the CPU) unless `done` (a path) exists from an
    earlier run of the tool in the same working directory; returns its seconds."""
    if done and os.path.exists(done):
        return 0.0
    start = time.time()
    result = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True,
                            text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    if result.returncode:
        raise RuntimeError(f"{' '.join(args[:1])} failed:\n{result.stderr[-3000:]}")
    return time.time() - start


def finetune_accuracy(init_checkpoint, files, output, seed, epochs):
    """run_classifier from `init_checkpoint` on a task's {"train", "dev"} files (seq 64, batch
    32, lr 5e-5); its dev accuracy. Skipped when `output` has its results already."""
    results = os.path.join(output, "eval_results.json")
    command("bert_tf.run_classifier", f"--init_checkpoint={init_checkpoint}",
            f"--train_file={files['train']}", f"--eval_file={files['dev']}",
            f"--output_dir={output}", "--max_seq_length=64", "--train_batch_size=32",
            "--learning_rate=5e-5", f"--num_train_epochs={epochs}", f"--random_seed={seed}",
            done=results)
    with open(results, encoding="utf-8") as f:
        return json.load(f)["accuracy"]


def run_in_work_dir(run, work=None, output=None):
    """`run(work_dir)` in `work` (kept, so a rerun skips what is done) or a temporary
    directory; its figures written to `output` as JSON if given."""
    if work:
        os.makedirs(work, exist_ok=True)
        figures = run(work)
    else:
        with tempfile.TemporaryDirectory() as temporary:
            figures = run(temporary)
    if output:
        with open(output, "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=1)
    return figures
