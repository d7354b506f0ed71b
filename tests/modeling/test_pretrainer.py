import keras
import numpy as np
import pytest
import tensorflow as tf

from bert_tf.modeling import INPUT_NAMES, BertEncoder, BertPretrainer, build_pretrainer
from bert_tf.modeling.objective import masked_lm_loss, next_sentence_loss, pretraining_losses
from conftest import random_inputs, tiny_config


def pretraining_batch(config, batch=4, seq_length=16, predictions=5, seed=0):
    """Features and labels like the google TFRecords: distinct positions, some padded (weight 0)."""
    rng = np.random.default_rng(seed)
    features = random_inputs(config, batch, seq_length, lengths=[seq_length] * batch, seed=seed)
    features["masked_lm_positions"] = np.stack(
        [rng.choice(np.arange(1, seq_length), predictions, replace=False)
         for _ in range(batch)]).astype("int32")
    weights = np.ones((batch, predictions), "float32")
    weights[:, -1] = 0.0
    labels = {"masked_lm_ids": rng.integers(1, config.vocab_size, (batch, predictions)).astype(
                  "int32") * weights.astype("int32"),
              "masked_lm_weights": weights,
              "next_sentence_labels": rng.integers(0, 2, (batch, 1)).astype("int32")}
    features["masked_lm_positions"] *= weights.astype("int32")
    return features, labels


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_output_shapes_and_dtypes():
    config = tiny_config()
    features, _ = pretraining_batch(config, batch=4, predictions=5)
    outputs = build_pretrainer(config)(features)
    assert tuple(outputs["masked_lm_logits"].shape) == (4, 5, config.vocab_size)
    assert tuple(outputs["next_sentence_logits"].shape) == (4, 2)
    assert outputs["masked_lm_logits"].dtype == "float32"


def test_mlm_logits_use_the_word_embedding_matrix_itself():
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    pretrainer = build_pretrainer(config)
    features, _ = pretraining_batch(config)
    table = pretrainer.encoder.word_embeddings.embeddings
    # One [V, H] variable in the whole model: tied, not copied.
    assert [w.path for w in pretrainer.weights if tuple(w.shape) == tuple(table.shape)] == [
        table.path]
    hidden = keras.ops.convert_to_numpy(pretrainer.masked_lm_transform(
        pretrainer.encoder({k: features[k] for k in INPUT_NAMES})["sequence_output"],
        features["masked_lm_positions"]))
    bias = keras.ops.convert_to_numpy(pretrainer.masked_lm_output_bias.bias)
    logits = keras.ops.convert_to_numpy(pretrainer(features)["masked_lm_logits"])
    np.testing.assert_allclose(logits, hidden @ keras.ops.convert_to_numpy(table).T + bias,
                               atol=1e-4)


def test_losses_follow_google():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 3, 7)).astype("float32")
    ids = rng.integers(0, 7, (2, 3))
    weights = np.array([[1, 1, 0], [1, 0, 0]], "float32")
    cross_entropy = -np.take_along_axis(log_softmax(logits), ids[..., None], -1)[..., 0]
    expected = (weights * cross_entropy).sum() / (weights.sum() + 1e-5)
    got = float(masked_lm_loss(ids, weights, logits))
    assert got == pytest.approx(expected, rel=1e-5)
    # Padded predictions (weight 0) do not count, whatever their logits.
    noisy = logits.copy()
    noisy[weights == 0] *= 100
    assert float(masked_lm_loss(ids, weights, noisy)) == pytest.approx(got, rel=1e-5)

    nsp_logits = rng.normal(size=(4, 2)).astype("float32")
    nsp_labels = np.array([[0], [1], [1], [0]])
    nsp_expected = -np.take_along_axis(log_softmax(nsp_logits), nsp_labels, -1).mean()
    assert float(next_sentence_loss(nsp_labels, nsp_logits)) == pytest.approx(nsp_expected,
                                                                              rel=1e-5)
    losses = pretraining_losses(
        {"masked_lm_ids": ids, "masked_lm_weights": weights, "next_sentence_labels": nsp_labels},
        {"masked_lm_logits": logits, "next_sentence_logits": nsp_logits})
    assert float(losses["loss"]) == pytest.approx(expected + nsp_expected, rel=1e-5)


def test_fit_logs_the_pretraining_metrics():
    config = tiny_config()
    features, labels = pretraining_batch(config)
    pretrainer = build_pretrainer(config)
    pretrainer.compile(optimizer="adam")
    history = pretrainer.fit(features, labels, epochs=1, verbose=0)
    assert {"loss", "masked_lm_loss", "masked_lm_accuracy", "next_sentence_loss",
            "next_sentence_accuracy"} <= set(history.history)
    logs = pretrainer.evaluate(features, labels, verbose=0, return_dict=True)
    assert logs["loss"] == pytest.approx(logs["masked_lm_loss"] + logs["next_sentence_loss"],
                                         rel=1e-4)


def test_masked_lm_accuracy_is_weighted():
    config = tiny_config()
    features, labels = pretraining_batch(config, batch=2, predictions=4)
    pretrainer = build_pretrainer(config)
    pretrainer.compile(optimizer="adam")
    logits = keras.ops.convert_to_numpy(pretrainer(features)["masked_lm_logits"])
    labels["masked_lm_ids"] = logits.argmax(-1).astype("int32")  # all predictions right ...
    labels["masked_lm_ids"][labels["masked_lm_weights"] == 0] += 1  # ... but padded ones
    logs = pretrainer.evaluate(features, labels, verbose=0, return_dict=True)
    assert logs["masked_lm_accuracy"] == 1.0


def test_bad_labels_are_named():
    config = tiny_config()
    features, labels = pretraining_batch(config)
    pretrainer = build_pretrainer(config)
    pretrainer.compile(optimizer="adam")
    del labels["next_sentence_labels"]
    with pytest.raises(ValueError, match="next_sentence_labels"):
        pretrainer.fit(features, labels, verbose=0)
    features.pop("masked_lm_positions")
    with pytest.raises(ValueError, match="missing: masked_lm_positions"):
        pretrainer(features)


@pytest.mark.slow
def test_overfits_one_batch():
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    features, labels = pretraining_batch(config, batch=8, seq_length=16, predictions=4)
    pretrainer = build_pretrainer(config)
    pretrainer.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = pretrainer.fit(features, labels, batch_size=8, epochs=150, verbose=0)
    assert history.history["loss"][0] > 2.0
    assert history.history["loss"][-1] < 0.05
    assert history.history["masked_lm_accuracy"][-1] == 1.0


@pytest.mark.parametrize("policy, compute_dtype", [("mixed_float16", "float16"),
                                                   ("mixed_bfloat16", "bfloat16")])
def test_mixed_precision_forward_and_backward(policy, compute_dtype):
    keras.mixed_precision.set_global_policy(policy)
    config = tiny_config()
    pretrainer = build_pretrainer(config)
    features, labels = pretraining_batch(config)
    with tf.GradientTape() as tape:
        outputs = pretrainer(features, training=True)
        losses = pretraining_losses(labels, outputs)
    encoded = pretrainer.encoder(random_inputs(config))
    assert encoded["sequence_output"].dtype == compute_dtype
    assert outputs["masked_lm_logits"].dtype == "float32"
    assert outputs["next_sentence_logits"].dtype == "float32"
    assert all(v.dtype == "float32" for v in losses.values())
    assert all(w.dtype == "float32" for w in pretrainer.trainable_weights)
    gradients = tape.gradient(losses["loss"], pretrainer.trainable_weights)
    assert all(g is not None for g in gradients)
    assert all(np.isfinite(keras.ops.convert_to_numpy(g)).all() for g in gradients)
    # A train step through fit (loss scaling for float16 is Keras's LossScaleOptimizer).
    pretrainer.compile(optimizer="adam")
    logs = pretrainer.fit(features, labels, epochs=1, verbose=0).history
    assert np.isfinite(logs["loss"][0])


def test_keras_file_round_trip_keeps_tying(tmp_path):
    config = tiny_config()
    pretrainer = build_pretrainer(config)
    features, _ = pretraining_batch(config)
    expected = keras.tree.map_structure(keras.ops.convert_to_numpy, pretrainer(features))
    path = str(tmp_path / "pretrainer.keras")
    pretrainer.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, BertPretrainer) and isinstance(loaded.encoder, BertEncoder)
    got = keras.tree.map_structure(keras.ops.convert_to_numpy, loaded(features))
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])
    assert len(loaded.weights) == len(pretrainer.weights)
    # Still tied after loading: moving the table moves the logits.
    table = loaded.encoder.word_embeddings.embeddings
    table.assign(table * 2.0)
    moved = keras.ops.convert_to_numpy(loaded(features)["masked_lm_logits"])
    assert np.abs(moved - expected["masked_lm_logits"]).max() > 1e-3


def test_checkpoint_of_pretrainer_restores_encoder(tmp_path):
    config = tiny_config()
    pretrainer = build_pretrainer(config)
    features, _ = pretraining_batch(config)
    expected = keras.ops.convert_to_numpy(pretrainer(features)["masked_lm_logits"])
    path = tf.train.Checkpoint(model=pretrainer).write(str(tmp_path / "ckpt"))
    keras.utils.set_random_seed(7)
    fresh = build_pretrainer(config)
    tf.train.Checkpoint(model=fresh).read(path).assert_consumed()
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(fresh(features)["masked_lm_logits"]), expected)


def test_sparse_cross_entropy_and_its_gradient_equal_keras():
    from bert_tf.modeling.objective import sparse_cross_entropy

    rng = np.random.default_rng(3)
    logits = tf.constant(rng.normal(size=(3, 5, 40)) * 4, tf.float32)  # [B, P, V]
    labels = tf.constant(rng.integers(0, 40, (3, 5)), tf.int32)
    upstream = tf.constant(rng.normal(size=(3, 5)), tf.float32)  # a weighted sum, as the loss

    def loss_and_gradient(function):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            loss = function(labels, logits)
            total = tf.reduce_sum(loss * upstream)
        return loss.numpy(), tape.gradient(total, logits).numpy()

    ours = loss_and_gradient(sparse_cross_entropy)
    expected = loss_and_gradient(lambda y, x: keras.losses.sparse_categorical_crossentropy(
        y, x, from_logits=True))
    assert ours[0].shape == (3, 5)
    np.testing.assert_allclose(ours[0], expected[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours[1], expected[1], rtol=1e-5, atol=1e-6)


def test_masked_lm_only_pretrainer(tmp_path):
    """next_sentence=False: the same masked-LM logits as the full model's with the same
    weights, no next-sentence head or output, loss = masked-LM loss, fit() metrics without
    next-sentence figures, a pooler listed as untrained, and a .keras round trip."""
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    features, labels = pretraining_batch(config)
    full = build_pretrainer(config)
    mlm_only = build_pretrainer(config, next_sentence=False)
    assert mlm_only.next_sentence is None
    for source in (full.encoder, full.masked_lm_transform, full.masked_lm_output_bias):
        target = getattr(mlm_only, source.name) if source is not full.encoder else \
            mlm_only.encoder
        target.set_weights(source.get_weights())
    outputs = mlm_only(features)
    assert list(outputs) == ["masked_lm_logits"]
    np.testing.assert_allclose(outputs["masked_lm_logits"], full(features)["masked_lm_logits"],
                               atol=1e-6)
    losses = pretraining_losses(labels, outputs)
    assert float(losses["loss"]) == float(losses["masked_lm_loss"]) > 0
    assert float(losses["next_sentence_loss"]) == 0.0
    assert {id(v) for v in mlm_only.untrained_variables} == {
        id(v) for v in mlm_only.encoder.pooler.weights}
    assert full.untrained_variables == []
    mlm_only.compile(optimizer="adam")
    history = mlm_only.fit(features, labels, epochs=1, verbose=0).history
    assert "masked_lm_accuracy" in history
    assert not any(name.startswith("next_sentence") for name in history), history
    path = str(tmp_path / "mlm_only.keras")
    mlm_only.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.next_sentence is None
    np.testing.assert_array_equal(loaded(features)["masked_lm_logits"],
                                  mlm_only(features)["masked_lm_logits"])
