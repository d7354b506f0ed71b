"""bert_tf.modeling.attention: which implementation a call takes, and the refusals.

The platform choice is tested on stand-ins (the JAX backend and the device platform patched);
the kernels themselves against the einsum path in tests/modeling/test_jax_backend.py.
"""

import keras
import numpy as np
import pytest

from bert_tf.modeling import BertEncoder, attention
from conftest import random_inputs, tiny_config


@pytest.fixture
def on_jax(monkeypatch):
    """Makes the choice believe it runs on the JAX backend on `platform`."""
    def set_platform(platform):
        monkeypatch.setattr(attention.keras.backend, "backend", lambda: "jax")
        monkeypatch.setattr(attention, "_platform", lambda: platform)
    yield set_platform
    keras.config.enable_flash_attention()


@pytest.mark.parametrize("platform, dtype, length, dropout, training, expected", [
    ("tpu", "bfloat16", 512, 0.0, True, "splash"),
    ("tpu", "float32", 128, 0.0, True, "splash"),
    ("tpu", "bfloat16", 100, 0.0, True, "einsum"),  # not a multiple of the kernel's block
    ("tpu", "bfloat16", None, 0.0, True, "einsum"),  # length unknown when traced
    ("gpu", "bfloat16", 100, 0.0, True, "cudnn"),
    ("gpu", "float16", 512, 0.0, True, "cudnn"),
    ("gpu", "float32", 512, 0.0, True, "einsum"),  # cuDNN's flash kernel is half precision
    ("gpu", "bfloat16", 512, 0.1, True, "einsum"),  # no attention dropout in the kernels
    ("gpu", "bfloat16", 512, 0.1, False, "cudnn"),  # ... which inference does not apply
    ("cpu", "bfloat16", 512, 0.0, True, "einsum"),
])
def test_auto_takes_the_platforms_kernel(on_jax, platform, dtype, length, dropout, training,
                                         expected):
    on_jax(platform)
    assert attention.choose("auto", dtype, length, dropout, training) == expected


def test_keras_switch_turns_the_kernels_off(on_jax):
    on_jax("gpu")
    keras.config.disable_flash_attention()
    assert attention.choose("auto", "bfloat16", 512, 0.0, True) == "einsum"


def test_auto_is_einsum_on_tensorflow():
    assert keras.backend.backend() == "tensorflow"
    for platform_dtype in ("bfloat16", "float32"):
        assert attention.choose("auto", platform_dtype, 512, 0.0, True) == "einsum"


def test_a_named_kernel_is_refused_where_it_cannot_run():
    with pytest.raises(ValueError, match="needs the JAX backend"):
        attention.check_implementation("splash")
    with pytest.raises(ValueError, match="must be one of auto, einsum, xla, cudnn, splash"):
        attention.check_implementation("flash")
    with pytest.raises(ValueError, match="attention_probs_dropout_prob=0.1"):
        attention.choose("cudnn", "bfloat16", 512, 0.1, training=True)
    assert attention.choose("cudnn", "bfloat16", 512, 0.1, training=False) == "cudnn"
    with pytest.raises(ValueError, match="multiple of 128, got 100"):
        attention.choose("splash", "bfloat16", 100, 0.0, training=True)
    encoder = BertEncoder(tiny_config())
    with pytest.raises(ValueError, match="needs the JAX backend"):
        encoder.set_attention("xla")


def test_einsum_and_auto_give_the_same_outputs_on_tensorflow():
    encoder = BertEncoder(tiny_config())
    inputs = random_inputs(encoder.config, batch=2, seq_length=12)
    auto = encoder(inputs)["sequence_output"]
    encoder.set_attention("einsum")
    np.testing.assert_array_equal(encoder(inputs)["sequence_output"], auto)


def test_allowed_keys_packing_padding_and_window():
    ids = np.array([[1, 1, 1, 2, 2, 0]], "int32")
    allowed = np.asarray(attention.allowed_keys(ids))[0]
    real = ids[0] > 0
    for q in range(6):
        for k in range(6):
            own = ids[0, q] == ids[0, k] if real[q] else True
            assert allowed[q, k] == (real[k] and own), (q, k)
    windowed = np.asarray(attention.allowed_keys(ids, window=2))[0]
    index = np.arange(6)
    np.testing.assert_array_equal(
        windowed, allowed & (np.abs(index[:, None] - index[None, :]) <= 1))


def test_auto_falls_back_to_einsum_where_a_kernel_refuses(monkeypatch):
    """Under "auto" a kernel that raises when traced (cuDNN's limits) leaves the call to the
    einsum path with a warning; a kernel asked for by name raises."""
    encoder = BertEncoder(tiny_config())
    inputs = random_inputs(encoder.config, batch=2, seq_length=12)
    expected = np.asarray(encoder(inputs)["sequence_output"])

    def refuse(*args):
        raise ValueError("head dimension not supported")
    monkeypatch.setattr(attention, "choose", lambda *args: "cudnn")
    monkeypatch.setattr(attention, "_fused", refuse)
    with pytest.warns(UserWarning, match="cudnn kernel refused these inputs .* einsum"):
        got = encoder(inputs)["sequence_output"]
    np.testing.assert_array_equal(np.asarray(got), expected)
    for block in encoder.transformer_layers:  # named: no fallback (set_attention would refuse
        block.self_attention.implementation = "cudnn"  # a kernel on TensorFlow)
    with pytest.raises(ValueError, match="head dimension not supported"):
        encoder(inputs)
