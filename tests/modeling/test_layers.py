import keras
import numpy as np
import pytest

from bert_tf.modeling import layers

RNG = np.random.default_rng(0)


def hidden_states(batch=2, seq=6, hidden=8):
    return RNG.normal(size=(batch, seq, hidden)).astype("float32")


def round_trip(layer, *args):
    """Copies `layer` through get_config/from_config plus its weights; both give one output."""
    expected = keras.ops.convert_to_numpy(layer(*args))
    clone = type(layer).from_config(layer.get_config())
    clone(*args)
    clone.set_weights(layer.get_weights())
    assert clone.get_config() == layer.get_config()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(clone(*args)), expected, atol=1e-6)
    return expected


def test_tied_embedding_reverse_uses_the_same_table():
    layer = layers.TiedEmbedding(10, 8)
    ids = np.array([[1, 2, 3]], "int32")
    embedded = keras.ops.convert_to_numpy(layer(ids))
    table = keras.ops.convert_to_numpy(layer.embeddings)
    np.testing.assert_allclose(embedded[0], table[[1, 2, 3]])
    x = hidden_states()
    logits = keras.ops.convert_to_numpy(layer(x, reverse=True))
    assert logits.shape == (2, 6, 10)
    np.testing.assert_allclose(logits, x @ table.T, atol=1e-5)
    assert len(layer.weights) == 1
    round_trip(layer, ids)


def test_position_embedding_broadcasts_and_checks_length():
    layer = layers.PositionEmbedding(max_length=8)
    x = hidden_states(seq=6)
    out = round_trip(layer, x)
    assert out.shape == x.shape
    np.testing.assert_allclose(out[0], out[1])
    np.testing.assert_allclose(out[0], keras.ops.convert_to_numpy(layer.embeddings)[:6])
    with pytest.raises(ValueError, match="length 9 exceeds max_position_embeddings=8"):
        layer(hidden_states(seq=9))


@pytest.mark.parametrize("act", ["gelu", "gelu_new", "relu"])
def test_transformer_block_round_trip_and_shape(act):
    block = layers.TransformerBlock(num_attention_heads=2, intermediate_size=16, hidden_act=act)
    x = hidden_states()
    mask = np.ones((2, 6), "int32")
    out = round_trip(block, x, mask)
    assert out.shape == x.shape
    # post-LayerNorm: every output vector is normalised (gamma=1, beta=0 at init).
    np.testing.assert_allclose(out.mean(-1), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(-1), 1, atol=1e-3)


def test_transformer_block_ignores_padded_keys():
    block = layers.TransformerBlock(num_attention_heads=2, intermediate_size=16,
                                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    x = hidden_states(batch=1)
    mask = np.array([[1, 1, 1, 1, 0, 0]], "int32")
    changed = x.copy()
    changed[:, 4:] = RNG.normal(size=changed[:, 4:].shape)
    a = keras.ops.convert_to_numpy(block(x, mask))
    b = keras.ops.convert_to_numpy(block(changed, mask))
    np.testing.assert_allclose(a[:, :4], b[:, :4], atol=1e-6)


def test_transformer_block_rejects_indivisible_heads():
    block = layers.TransformerBlock(num_attention_heads=3, intermediate_size=16)
    with pytest.raises(ValueError, match="not divisible by num_attention_heads=3"):
        block(hidden_states(), np.ones((2, 6), "int32"))


def test_pooler_uses_first_token():
    pooler = layers.Pooler()
    x = hidden_states()
    out = round_trip(pooler, x)
    assert out.shape == (2, 8)
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in pooler.dense.weights)
    np.testing.assert_allclose(out, np.tanh(x[:, 0] @ kernel + bias), atol=1e-5)


def test_gather_positions():
    x = hidden_states(batch=2, seq=5, hidden=3)
    positions = np.array([[0, 4], [3, 3]], "int32")
    out = keras.ops.convert_to_numpy(layers.gather_positions(x, positions))
    np.testing.assert_allclose(out, np.stack([x[0, [0, 4]], x[1, [3, 3]]]))


def test_masked_lm_transform_and_bias():
    transform = layers.MaskedLMTransform("gelu")
    x = hidden_states()
    positions = np.array([[1, 2, 5], [0, 0, 3]], "int32")
    out = round_trip(transform, x, positions)
    assert out.shape == (2, 3, 8)
    bias = layers.MaskedLMOutputBias()
    logits = hidden_states(seq=3, hidden=11)
    np.testing.assert_allclose(round_trip(bias, logits), logits, atol=1e-6)  # zero init


def test_output_bias_is_float32_under_mixed_precision():
    bias = layers.MaskedLMOutputBias(dtype="mixed_float16")
    out = bias(keras.ops.cast(hidden_states(), "float16"))
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    assert bias.bias.dtype == "float32"


def test_activations():
    x = np.linspace(-3, 3, 13).astype("float32")
    exact = keras.ops.convert_to_numpy(layers.get_activation("gelu")(x))
    approx = keras.ops.convert_to_numpy(layers.get_activation("gelu_new")(x))
    from math import erf, sqrt
    np.testing.assert_allclose(exact, [v * 0.5 * (1 + erf(v / sqrt(2))) for v in x], atol=1e-6)
    assert 1e-5 < np.abs(exact - approx).max() < 1e-2
    with pytest.raises(ValueError, match="hidden_act must be one of"):
        layers.get_activation("tanh")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_dropout_drops_at_the_rate_and_keeps_the_expectation(dtype):
    layer = layers.Dropout(0.25, seed=1, dtype="mixed_bfloat16" if dtype == "bfloat16" else None)
    x = keras.ops.cast(np.ones((200, 500), "float32"), dtype)
    first = layer(x, training=True)
    assert keras.backend.standardize_dtype(first.dtype) == dtype
    out = keras.ops.convert_to_numpy(keras.ops.cast(first, "float32"))
    kept = out != 0
    assert abs(kept.mean() - 0.75) < 0.01  # 100,000 draws: 0.0014 standard deviation
    np.testing.assert_allclose(out[kept], 1 / 0.75, rtol=1e-2 if dtype == "bfloat16" else 1e-6)
    again = keras.ops.convert_to_numpy(keras.ops.cast(layer(x, training=True), "float32"))
    assert (again != out).mean() > 0.2  # a new mask each call
    inference = keras.ops.convert_to_numpy(keras.ops.cast(layer(x, training=False), "float32"))
    np.testing.assert_array_equal(inference, np.ones((200, 500), "float32"))
    clone = layers.Dropout.from_config(layer.get_config())
    assert clone.rate == 0.25


def test_exact_gelu_in_bfloat16_rounds_the_float32_result():
    from math import erf, sqrt
    x = keras.ops.cast(np.linspace(-4, 4, 101).astype("float32"), "bfloat16")
    out = layers.get_activation("gelu")(x)
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    values = keras.ops.convert_to_numpy(keras.ops.cast(x, "float32")).astype("float64")
    expected = np.array([v * 0.5 * (1 + erf(v / sqrt(2))) for v in values])
    got = keras.ops.convert_to_numpy(keras.ops.cast(out, "float32"))
    # One bfloat16 rounding of the float32 value: within 2^-8 relative (or tiny absolute).
    np.testing.assert_allclose(got, expected, rtol=2 ** -8, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_exact_gelu_gradient_is_phi_plus_x_times_density(dtype):
    """gelu_exact's gradient (through its erf form) against the calculus (float64) and against
    TensorFlow's gradient of its own (erfc-form) GELU."""
    import tensorflow as tf
    from math import erf, exp, pi, sqrt

    values = np.linspace(-6, 6, 241).astype("float32")
    x = tf.cast(tf.constant(values), dtype)
    upstream = tf.cast(tf.constant(np.linspace(-2, 2, 241).astype("float32")), dtype)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours = layers.get_activation("gelu")(x)
        reference = tf.nn.gelu(tf.cast(x, "float32"), approximate=False)
    grad = tape.gradient(ours, x, output_gradients=upstream)
    assert grad.dtype == x.dtype
    exact_x = tf.cast(x, "float64").numpy()
    expected = tf.cast(upstream, "float64").numpy() * np.array(
        [0.5 * (1 + erf(v / sqrt(2))) + v * exp(-v * v / 2) / sqrt(2 * pi) for v in exact_x])
    got = tf.cast(grad, "float64").numpy()
    if dtype == "float32":
        np.testing.assert_allclose(got, expected, atol=1e-6)
        autodiff = tape.gradient(reference, x, output_gradients=upstream).numpy()
        np.testing.assert_allclose(got, autodiff, atol=1e-6)
    else:  # one bfloat16 rounding of the float32 product
        np.testing.assert_allclose(got, expected, rtol=2 ** -8, atol=1e-6)
