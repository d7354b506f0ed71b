import keras
import numpy as np
import pytest

from bert_tf.training import optimization
from bert_tf.training.optimization import WarmupLinearDecay, create_optimizer
from bert_tf.modeling.pretrainer import build_pretrainer
from conftest import tiny_config


def test_schedule_warmup_peak_and_end():
    schedule = WarmupLinearDecay(1e-3, num_train_steps=100, num_warmup_steps=10,
                                 end_learning_rate=1e-5)
    values = {step: float(schedule(step)) for step in (0, 5, 10, 55, 100, 150)}
    assert values[0] == 0.0
    assert values[5] == pytest.approx(5e-4)
    assert values[10] == pytest.approx(1e-3)
    assert values[55] == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5)
    assert values[100] == pytest.approx(1e-5) and values[150] == pytest.approx(1e-5)
    restored = WarmupLinearDecay.from_config(schedule.get_config())
    assert float(restored(55)) == pytest.approx(values[55])


def test_weight_decay_skips_layer_norm_and_biases():
    model = build_pretrainer(tiny_config())
    optimizer = create_optimizer("adamw", learning_rate=0.1, num_train_steps=10,
                                 weight_decay_rate=0.1, clip_norm=0)
    variables = model.trainable_variables
    before = [np.array(v) for v in variables]
    # Zero gradients: Adam moves nothing, so only weight decay can change a variable.
    optimizer.apply_gradients(zip([np.zeros(v.shape, "float32") for v in variables], variables))
    optimizer.apply_gradients(zip([np.zeros(v.shape, "float32") for v in variables], variables))
    for variable, old in zip(variables, before):
        changed = not np.allclose(np.array(variable), old)
        excluded = variable.name in ("gamma", "beta", "bias")
        if np.any(old != 0):  # zeros stay zeros under decay
            assert changed != excluded, variable.path


def test_optimizer_choices():
    assert isinstance(create_optimizer("lamb", learning_rate=1e-3, num_train_steps=10), keras.optimizers.Lamb)
    assert isinstance(create_optimizer("adamw", learning_rate=1e-3, num_train_steps=10,
                                             mixed_precision="mixed_float16"),
                      keras.optimizers.LossScaleOptimizer)
    with pytest.raises(ValueError, match="--optimizer must be adamw or lamb"):
        create_optimizer("sgd", learning_rate=1e-3, num_train_steps=10)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "tf.function"])
def test_fused_adamw_equals_keras_adamw(compiled):
    """bert_tf's AdamW (TensorFlow's fused Adam kernel) takes the steps Keras's AdamW takes
    (but for where epsilon is added), weight decay and its exclusions included. A sparse gradient (IndexedSlices, as an embedding
    lookup's arrives in fit()) counts as its dense sum, repeated rows added before squaring,
    as the Trainer's dense gradients do (Keras's own AdamW squares repeated rows apart)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    start = {"kernel": rng.normal(size=(6, 4)), "bias": rng.normal(size=4),
             "embeddings": rng.normal(size=(10, 4))}
    results = {}
    for name, cls in [("ours", optimization.AdamW), ("keras", keras.optimizers.AdamW)]:
        variables = [keras.Variable(value.astype("float32"), name=key)
                     for key, value in start.items()]
        # epsilon too small to matter: where it is added is test_epsilon_is_added_...'s
        optimizer = cls(learning_rate=WarmupLinearDecay(0.05, 10, 2), beta_1=0.9, beta_2=0.999,
                        epsilon=1e-10, weight_decay=0.1)
        optimizer.exclude_from_weight_decay(var_names=optimization.NO_DECAY_NAMES)
        grads = np.random.default_rng(1)

        def step(dense, rows, values):
            sparse = tf.IndexedSlices(values, rows, dense_shape=tf.constant([10, 4]))
            if name == "keras":
                sparse = tf.convert_to_tensor(sparse)
            optimizer.apply_gradients(zip(dense + [sparse], variables))

        if compiled:
            step = tf.function(step)
        for _ in range(4):
            step([tf.constant(grads.normal(size=v.shape), "float32") for v in variables[:2]],
                 tf.constant([1, 3, 3]), tf.constant(grads.normal(size=(3, 4)), "float32"))
        results[name] = [np.array(v) for v in variables]
        if compiled and name == "ours":
            ops = {op.type for op in step.get_concrete_function(
                [tf.TensorSpec(v.shape) for v in variables[:2]], tf.TensorSpec([3], tf.int32),
                tf.TensorSpec([3, 4])).graph.get_operations()}
            assert "ResourceApplyAdam" in ops
    for ours, reference, value in zip(results["ours"], results["keras"], start.values()):
        assert not np.allclose(ours, value)
        np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6)


def test_epsilon_is_added_to_the_bias_corrected_root():
    """The Adam paper's (and PyTorch's) update: a first step of lr * g / (|g| + eps), which for
    a gradient of the size of epsilon is half a step (Keras's own update, eps on the
    uncorrected root, would take about 0.03 of one)."""
    import tensorflow as tf

    variable = keras.Variable(np.zeros(3, "float32"), name="kernel")
    optimizer = optimization.AdamW(learning_rate=0.1, epsilon=1e-6, weight_decay=0.0)
    gradient = np.array([1e-6, -1e-6, 1.0], "float32")
    optimizer.apply_gradients([(tf.constant(gradient), variable)])
    expected = -0.1 * gradient / (np.abs(gradient) + 1e-6)
    np.testing.assert_allclose(np.array(variable), expected, rtol=1e-4)


def test_clipping_uses_the_dense_norm_of_an_embedding_gradient():
    """An embedding's gradient on TensorFlow is an IndexedSlices with a row per occurrence of a
    token: the clipping norm is that of the dense gradient (the rows of one token summed), as
    transformers' clip_grad_norm_ sees it; Keras's own norm squares the rows apart."""
    import tensorflow as tf
    from keras.src.optimizers.base_optimizer import global_norm as keras_norm

    embedding = keras.Variable(np.zeros((5, 2), "float32"))
    dense = keras.Variable(np.zeros((2,), "float32"))
    sliced = tf.IndexedSlices(tf.constant([[3., 0.], [3., 0.], [0., 4.]]),
                              tf.constant([1, 1, 3]), tf.constant([5, 2]))
    as_dense = tf.convert_to_tensor(sliced)  # row 1 = [6, 0]
    expected = np.sqrt(36 + 16 + 1 + 1)
    assert float(optimization.global_norm([sliced, tf.ones(2)])) == pytest.approx(expected)
    assert float(keras_norm([sliced, tf.ones(2)])) != pytest.approx(expected)  # Keras's
    for gradient in (sliced, as_dense):  # one step: the same update from either form
        optimizer = create_optimizer("adamw", learning_rate=1.0, num_train_steps=10,
                                     weight_decay_rate=0.0, clip_norm=1.0)
        embedding.assign(np.zeros((5, 2), "float32"))
        dense.assign(np.zeros((2,), "float32"))
        clipped = optimization.clip_by_global_norm([gradient, tf.ones(2)], 1.0)
        assert float(optimization.global_norm(clipped)) == pytest.approx(1.0, rel=1e-6)
        optimizer.apply([gradient, tf.ones(2)], [embedding, dense])
        if gradient is sliced:
            first = embedding.numpy().copy()
    np.testing.assert_allclose(first, embedding.numpy(), rtol=1e-6)
