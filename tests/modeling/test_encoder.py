import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from bert_tf import BertConfig, BertEncoder
from conftest import CONFIGS_DIR, random_inputs, tiny_config

NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def run(encoder, inputs, training=False):
    outputs = encoder(inputs, training=training)
    return keras.tree.map_structure(keras.ops.convert_to_numpy, outputs)


def pad_to(inputs, seq_length):
    """The same examples with more (or less) padding on the right."""
    def fit(x):
        out = np.zeros((x.shape[0], seq_length), x.dtype)
        n = min(seq_length, x.shape[1])
        out[:, :n] = x[:, :n]
        return out
    return {k: fit(v) for k, v in inputs.items()}


def test_shapes_and_dtypes():
    config = tiny_config()
    outputs = run(BertEncoder(config), random_inputs(config, batch=3, seq_length=16))
    assert outputs["sequence_output"].shape == (3, 16, 32)
    assert outputs["pooled_output"].shape == (3, 32)
    assert len(outputs["encoder_outputs"]) == config.num_hidden_layers
    for layer_output in outputs["encoder_outputs"]:
        assert layer_output.shape == (3, 16, 32) and layer_output.dtype == np.float32
    np.testing.assert_array_equal(outputs["encoder_outputs"][-1], outputs["sequence_output"])
    assert np.all(np.abs(outputs["pooled_output"]) <= 1.0)  # tanh


def test_accepts_a_config_dict_and_int64_inputs():
    config = tiny_config()
    encoder = BertEncoder(config.to_dict())
    assert encoder.config == config
    inputs = {k: v.astype("int64") for k, v in random_inputs(config).items()}
    assert run(encoder, inputs)["pooled_output"].dtype == np.float32


def test_padding_invariance():
    config = tiny_config(**NO_DROPOUT)
    encoder = BertEncoder(config)
    inputs = random_inputs(config, batch=3, seq_length=10, lengths=[10, 6, 3])
    short = run(encoder, inputs)
    long = run(encoder, pad_to(inputs, 24))
    for row, length in enumerate([10, 6, 3]):
        np.testing.assert_allclose(long["sequence_output"][row, :length],
                                   short["sequence_output"][row, :length], atol=1e-5)
    np.testing.assert_allclose(long["pooled_output"], short["pooled_output"], atol=1e-5)


def test_padded_token_ids_are_not_seen():
    config = tiny_config(**NO_DROPOUT)
    encoder = BertEncoder(config)
    inputs = random_inputs(config, batch=2, seq_length=12, lengths=[7, 12])
    changed = {k: v.copy() for k, v in inputs.items()}
    changed["input_word_ids"][0, 7:] = 42
    a, b = run(encoder, inputs), run(encoder, changed)
    np.testing.assert_allclose(a["sequence_output"][0, :7], b["sequence_output"][0, :7],
                               atol=1e-6)


def test_bidirectional():
    config = tiny_config(**NO_DROPOUT)
    encoder = BertEncoder(config)
    inputs = random_inputs(config, batch=1, seq_length=12, lengths=[12])
    changed = {k: v.copy() for k, v in inputs.items()}
    changed["input_word_ids"][0, 9] = (changed["input_word_ids"][0, 9] % 99) + 1
    a, b = run(encoder, inputs), run(encoder, changed)
    # An earlier position sees the later token: attention is not causal.
    assert np.abs(a["sequence_output"][0, 2] - b["sequence_output"][0, 2]).max() > 1e-4
    assert np.abs(a["pooled_output"] - b["pooled_output"]).max() > 1e-5


def test_dropout_only_in_training():
    config = tiny_config(hidden_dropout_prob=0.5)
    encoder = BertEncoder(config)
    inputs = random_inputs(config)
    eval_a, eval_b = run(encoder, inputs), run(encoder, inputs)
    np.testing.assert_array_equal(eval_a["sequence_output"], eval_b["sequence_output"])
    train = run(encoder, inputs, training=True)
    assert np.abs(train["sequence_output"] - eval_a["sequence_output"]).max() > 1e-3


def test_initializer_is_truncated_normal_with_initializer_range():
    config = tiny_config(vocab_size=2000, initializer_range=0.05)
    encoder = BertEncoder(config)
    table = keras.ops.convert_to_numpy(encoder.word_embeddings.embeddings)
    assert np.abs(table).max() <= 2 * 0.05 + 1e-6  # truncated at two stddevs
    # A normal truncated at +-2 sigma has std 0.88 sigma.
    assert table.std() == pytest.approx(0.88 * 0.05, rel=0.05)
    assert keras.ops.convert_to_numpy(encoder.pooler.dense.bias).max() == 0


@pytest.mark.slow
@pytest.mark.parametrize("name, expected", [("bert_base", 109_482_240),
                                            ("bert_large", 335_141_888)])
def test_parameter_counts(name, expected):
    encoder = BertEncoder(BertConfig.from_json_file(os.path.join(CONFIGS_DIR, f"{name}.json")))
    assert encoder.count_params() == expected


def test_parameter_count_formula_tiny():
    config = tiny_config()
    h, i, v = config.hidden_size, config.intermediate_size, config.vocab_size
    embeddings = (v + config.max_position_embeddings + config.type_vocab_size) * h + 2 * h
    block = 4 * (h * h + h) + 2 * h + (h * i + i) + (i * h + h) + 2 * h
    assert BertEncoder(config).count_params() == (
        embeddings + config.num_hidden_layers * block + h * h + h)


def test_keras_file_round_trip(tmp_path):
    config = tiny_config(hidden_act="gelu_new", layer_norm_eps=1e-6)
    encoder = BertEncoder(config)
    inputs = random_inputs(config)
    expected = run(encoder, inputs)
    path = str(tmp_path / "encoder.keras")
    encoder.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, BertEncoder) and loaded.config == config
    got = run(loaded, inputs)
    np.testing.assert_array_equal(got["sequence_output"], expected["sequence_output"])
    np.testing.assert_array_equal(got["pooled_output"], expected["pooled_output"])


def test_tf_checkpoint_restores_identical_outputs(tmp_path):
    config = tiny_config()
    inputs = random_inputs(config)
    encoder = BertEncoder(config)
    expected = run(encoder, inputs)
    path = tf.train.Checkpoint(encoder=encoder).write(str(tmp_path / "ckpt"))
    keras.utils.set_random_seed(99)
    fresh = BertEncoder(config)
    assert np.abs(run(fresh, inputs)["pooled_output"] - expected["pooled_output"]).max() > 1e-4
    tf.train.Checkpoint(encoder=fresh).read(path).assert_consumed()
    got = run(fresh, inputs)
    np.testing.assert_array_equal(got["sequence_output"], expected["sequence_output"])
    np.testing.assert_array_equal(got["pooled_output"], expected["pooled_output"])


def test_works_inside_tf_function_with_unknown_length():
    config = tiny_config()
    encoder = BertEncoder(config)
    spec = {k: tf.TensorSpec([None, None], tf.int32) for k in random_inputs(config)}
    fn = tf.function(lambda x: encoder(x)["pooled_output"], input_signature=[spec])
    inputs = random_inputs(config)
    np.testing.assert_allclose(fn(inputs).numpy(), run(encoder, inputs)["pooled_output"],
                               atol=1e-6)


# === Bad input ===

def test_too_long_sequence():
    config = tiny_config(max_position_embeddings=16)
    encoder = BertEncoder(config)
    with pytest.raises(ValueError, match="length 20 exceeds max_position_embeddings=16"):
        encoder(random_inputs(config, seq_length=20))


def test_missing_input():
    config = tiny_config()
    inputs = random_inputs(config)
    del inputs["input_mask"]
    with pytest.raises(ValueError, match="missing: input_mask"):
        BertEncoder(config)(inputs)


def test_misnamed_input_points_at_google_name():
    config = tiny_config()
    inputs = random_inputs(config)
    inputs["segment_ids"] = inputs.pop("input_type_ids")
    with pytest.raises(ValueError) as error:
        BertEncoder(config)(inputs)
    message = str(error.value)
    assert "missing: input_type_ids" in message and "unexpected: segment_ids" in message
    assert "google-research's name for 'input_type_ids'" in message


def test_non_integer_input():
    config = tiny_config()
    inputs = random_inputs(config)
    inputs["input_word_ids"] = inputs["input_word_ids"].astype("float32")
    with pytest.raises(TypeError, match="'input_word_ids' must be an integer tensor, got dtype "
                                        "float32"):
        BertEncoder(config)(inputs)


def test_wrong_rank_and_mismatched_shapes():
    config = tiny_config()
    encoder = BertEncoder(config)
    inputs = random_inputs(config)
    with pytest.raises(ValueError, match=r"'input_mask' must have shape \[batch, seq_length\]"):
        encoder({**inputs, "input_mask": inputs["input_mask"][0]})
    with pytest.raises(ValueError, match="'input_type_ids' has shape"):
        encoder({**inputs, "input_type_ids": inputs["input_type_ids"][:, :5]})
    with pytest.raises(TypeError, match="must be a dict"):
        encoder(inputs["input_word_ids"])


def test_keras_file_keeps_mixed_precision_policy(tmp_path):
    config = tiny_config()
    encoder = BertEncoder(config, dtype="mixed_bfloat16")
    inputs = random_inputs(config)
    expected = keras.ops.convert_to_numpy(
        keras.ops.cast(encoder(inputs)["pooled_output"], "float32"))
    path = str(tmp_path / "encoder.keras")
    encoder.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.dtype_policy.name == "mixed_bfloat16"
    got = loaded(inputs)["pooled_output"]
    assert got.dtype == "bfloat16"
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(keras.ops.cast(got, "float32")),
                                  expected)
