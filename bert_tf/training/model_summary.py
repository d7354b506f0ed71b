"""A model's size and a first step: parameter counts, one forward pass and one gradient step on a
random batch, with the losses and the time each took (`python -m bert_tf.model_summary`).
"""

import time


def summarize(config, batch_size, seq_length, predictions, dtype="float32", seed=0):
    """Builds the pretrainer and times a forward and a gradient step; returns a dict of figures."""
    import keras
    import numpy as np
    import tensorflow as tf

    from bert_tf.modeling import build_pretrainer
    from bert_tf.modeling.objective import pretraining_losses

    config.check_sequence_length(seq_length)
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
