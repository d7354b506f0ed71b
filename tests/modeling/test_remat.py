"""Rematerialization (--remat): the same losses and gradients as without it, dropout included."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from bert_tf.config import BertConfig
from bert_tf.modeling import build_pretrainer
from bert_tf.modeling.objective import pretraining_losses

CONFIG = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=64, max_position_embeddings=32, hidden_dropout_prob=0.1,
                    attention_probs_dropout_prob=0.1)


def batch(seed=0, batch_size=4, length=16, predictions=3):
    rng = np.random.default_rng(seed)
    features = {"input_word_ids": rng.integers(5, 100, (batch_size, length), dtype=np.int32),
                "input_mask": np.ones((batch_size, length), np.int32),
                "input_type_ids": (np.arange(length) >= length // 2).astype(np.int32)[None]
                .repeat(batch_size, 0),
                "masked_lm_positions": rng.integers(1, length, (batch_size, predictions),
                                                    dtype=np.int32)}
    labels = {"masked_lm_ids": rng.integers(5, 100, (batch_size, predictions), dtype=np.int32),
              "masked_lm_weights": np.ones((batch_size, predictions), np.float32),
              "next_sentence_labels": rng.integers(0, 2, (batch_size, 1), dtype=np.int32)}
    return features, labels


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "tf_function"])
def test_remat_gives_the_same_losses_and_gradients_with_dropout(compiled):
    keras.utils.set_random_seed(3)
    model = build_pretrainer(CONFIG)
    features, labels = batch()
    model(features)  # built
    seeds = [v.numpy() for v in model.non_trainable_variables]  # the dropout seeds' states
    assert seeds, "dropout seed states are expected among the non-trainable variables"

    def step(features, labels):
        with tf.GradientTape() as tape:
            loss = pretraining_losses(labels, model(features, training=True))["loss"]
        return loss, tape.gradient(loss, model.trainable_variables)

    results = {}
    for mode in ("none", "layers", "full"):
        for variable, value in zip(model.non_trainable_variables, seeds):
            variable.assign(value)  # the same dropout masks in each mode
        model.encoder.set_remat(mode)
        run = tf.function(step) if compiled else step
        loss, gradients = run(features, labels)
        results[mode] = (float(loss), [tf.convert_to_tensor(g).numpy() for g in gradients])
    loss, gradients = results["none"]
    without_dropout = pretraining_losses(labels, model(features, training=False))["loss"]
    assert abs(loss - float(without_dropout)) > 1e-4  # dropout did act
    for mode in ("layers", "full"):
        assert results[mode][0] == pytest.approx(loss, abs=1e-5), mode
        for got, expected in zip(results[mode][1], gradients):
            np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=mode)


def test_remat_mode_is_checked():
    model = build_pretrainer(CONFIG)
    with pytest.raises(ValueError, match="--remat must be one of none, layers, full"):
        model.encoder.set_remat("blocks")
