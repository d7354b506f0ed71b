"""CLI: build the pretraining model from a bert_config.json and check it end to end.

    python -m bert_tf.model_summary --bert_config_file=configs/bert_base.json --max_seq_length=128

Prints the parameter counts, then runs one forward pass and one gradient step on a random batch
and reports the losses and the time each took.
"""

import math
import os
import time

from absl import app, flags

from bert_tf.config import configs_dir

FLAGS = flags.FLAGS


def define_flags():
    """The command-line flags; defined only when run as a program, so importing is free."""
    flags.DEFINE_string("bert_config_file", os.path.join(configs_dir(), "bert_tiny.json"),
                        "google-format bert_config.json.")
    flags.DEFINE_integer("max_seq_length", 128, "Sequence length of the random batch.")
    flags.DEFINE_integer("max_predictions_per_seq", 20, "Masked positions per sequence.")
    flags.DEFINE_integer("batch_size", 8, "Sequences in the random batch.")
    flags.DEFINE_enum("mixed_precision", "float32", ["float32", "mixed_float16", "mixed_bfloat16"],
                      "Keras dtype policy.")


def summarize(config, batch_size, seq_length, predictions, dtype="float32", seed=0):
    """Builds the pretrainer and times a forward and a gradient step; returns a dict of figures."""
    import keras
    import numpy as np
    import tensorflow as tf

    from bert_tf.pretraining_model import build_pretrainer, pretraining_losses

    if seq_length > config.max_position_embeddings:
        raise ValueError(f"--max_seq_length={seq_length} exceeds max_position_embeddings="
                         f"{config.max_position_embeddings} of the config")
    if not 0 < predictions <= seq_length:
        raise ValueError(f"--max_predictions_per_seq={predictions} must be in [1, "
                         f"--max_seq_length={seq_length}]")
    pretrainer = build_pretrainer(config, dtype=dtype)
    rng = np.random.default_rng(seed)
    shape = (batch_size, seq_length)
    features = {
        "input_word_ids": rng.integers(0, config.vocab_size, shape).astype("int32"),
        "input_mask": np.ones(shape, "int32"),
        "input_type_ids": (np.arange(seq_length) >= seq_length // 2).astype("int32")[None]
        .repeat(batch_size, 0),
        "masked_lm_positions": rng.integers(1, seq_length, (batch_size, predictions)).astype(
            "int32")}
    labels = {"masked_lm_ids": rng.integers(0, config.vocab_size, (batch_size, predictions)),
              "masked_lm_weights": np.ones((batch_size, predictions), "float32"),
              "next_sentence_labels": rng.integers(0, 2, (batch_size, 1))}

    start = time.perf_counter()
    losses = pretraining_losses(labels, pretrainer(features))
    forward_s = time.perf_counter() - start
    start = time.perf_counter()
    with tf.GradientTape() as tape:
        loss = pretraining_losses(labels, pretrainer(features, training=True))["loss"]
    gradients = tape.gradient(loss, pretrainer.trainable_weights)
    backward_s = time.perf_counter() - start
    finite = all(bool(np.isfinite(keras.ops.convert_to_numpy(g)).all()) for g in gradients)
    return {"encoder_params": pretrainer.encoder.count_params(),
            "pretrainer_params": pretrainer.count_params(),
            "masked_lm_loss": float(losses["masked_lm_loss"]),
            "next_sentence_loss": float(losses["next_sentence_loss"]),
            "forward_seconds": forward_s, "gradient_seconds": backward_s,
            "gradients_finite": finite}


def main(argv):
    del argv
    from bert_tf.config import BertConfig

    config = BertConfig.from_json_file(FLAGS.bert_config_file)
    print(f"{FLAGS.bert_config_file}: L={config.num_hidden_layers} H={config.hidden_size} "
          f"A={config.num_attention_heads} I={config.intermediate_size} "
          f"vocab={config.vocab_size} act={config.hidden_act}")
    figures = summarize(config, FLAGS.batch_size, FLAGS.max_seq_length,
                        FLAGS.max_predictions_per_seq, FLAGS.mixed_precision)
    print(f"encoder parameters (with pooler): {figures['encoder_params']:,}")
    print(f"pretraining model parameters:     {figures['pretrainer_params']:,}")
    print(f"random batch [{FLAGS.batch_size}, {FLAGS.max_seq_length}]: "
          f"masked_lm_loss={figures['masked_lm_loss']:.4f} "
          f"next_sentence_loss={figures['next_sentence_loss']:.4f} "
          f"(untrained: expect about ln(vocab)={math.log(config.vocab_size):.2f} "
          f"and ln 2=0.69)")
    print(f"forward {figures['forward_seconds']:.2f}s, forward+backward "
          f"{figures['gradient_seconds']:.2f}s (first calls, eager), "
          f"gradients finite: {figures['gradients_finite']}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
