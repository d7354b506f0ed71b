"""What the benchmarks share, with numpy only (so the JAX-only GPU benchmark can use it too):
the model FLOPs of a training step and synthetic pretraining batches."""

import numpy as np


def train_flops_per_sequence(config, seq, predictions):
    """Forward + backward FLOPs of one sequence: 6 * non-embedding params * seq, attention's
    12 * layers * hidden * seq^2, and the MLM head on `predictions` positions."""
    H, L, I, V = (config.hidden_size, config.num_hidden_layers, config.intermediate_size,  # noqa
                  config.vocab_size)
    block_params = 4 * H * H + 4 * H + 2 * H * I + I + H + 4 * H
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
