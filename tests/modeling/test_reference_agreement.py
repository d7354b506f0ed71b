"""Agreement with an implementation we did not write: the TF Model Garden's BERT.

tf-models-official (requirements-dev.txt) builds its `BertEncoder` and `MaskedLM` head with tf-keras
(Keras 2). We copy its randomly initialised weights into our encoder by name and require the same
outputs, with padding in the inputs.
"""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from official.nlp.modeling import layers as mg_layers
from official.nlp.modeling import networks as mg_networks

from bert_tf.modeling.encoder import BertEncoder
from bert_tf.modeling.pretrainer import build_pretrainer
from conftest import random_inputs, tiny_config

MG_ACTIVATIONS = {
    "gelu": lambda x: tf_keras.activations.gelu(x, approximate=False),
    "gelu_new": lambda x: tf_keras.activations.gelu(x, approximate=True),
    "relu": tf_keras.activations.relu,
}

# Model Garden variable name -> our variable path.
NAME_MAP = [
    (r"^transformer/layer_(\d+)/", r"transformer_layer_\1/"),
    (r"^embeddings/layer_norm/", "embeddings_layer_norm/"),
    (r"^pooler_transform/", "pooler/dense/"),
    (r"^masked_lm/transform/dense/", "masked_lm_transform/dense/"),
    (r"^masked_lm/transform/LayerNorm/", "masked_lm_transform/layer_norm/"),
    (r"^masked_lm/output_bias/bias", "masked_lm_output_bias/bias"),
]


def our_path(mg_name):
    name = mg_name.removesuffix(":0")
    for pattern, replacement in NAME_MAP:
        name = re.sub(pattern, replacement, name)
    return name


def copy_weights(mg_variables, ours):
    """Assigns every Model Garden variable to ours with the mapped path; all must be used."""
    targets = {w.path: w for w in ours.weights}
    for variable in mg_variables:
        target = targets.pop(our_path(variable.name))
        assert tuple(target.shape) == tuple(variable.shape), variable.name
        target.assign(variable.numpy())
    return targets  # ours that Model Garden does not have


def model_garden_encoder(config, activation):
    return mg_networks.BertEncoder(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size,
        num_layers=config.num_hidden_layers, num_attention_heads=config.num_attention_heads,
        max_sequence_length=config.max_position_embeddings,
        type_vocab_size=config.type_vocab_size, inner_dim=config.intermediate_size,
        inner_activation=MG_ACTIVATIONS[activation], output_dropout=0.1, attention_dropout=0.1,
        initializer=tf_keras.initializers.TruncatedNormal(stddev=0.5), dict_outputs=True)


@pytest.mark.parametrize("activation", ["gelu", "gelu_new", "relu"])
def test_encoder_agrees_with_model_garden(activation):
    config = tiny_config(hidden_act=activation)
    reference = model_garden_encoder(config, activation)
    inputs = random_inputs(config, batch=4, seq_length=20, lengths=[20, 13, 5, 1])
    expected = reference({k: tf.constant(v) for k, v in inputs.items()}, training=False)

    encoder = BertEncoder(config)
    assert copy_weights(reference.weights, encoder) == {}
    got = encoder(inputs, training=False)

    for name in ("sequence_output", "pooled_output"):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(got[name]),
                                   expected[name].numpy(), atol=1e-5, rtol=0, err_msg=name)
    for ours, theirs in zip(got["encoder_outputs"], expected["encoder_outputs"], strict=True):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(ours), theirs.numpy(), atol=1e-5)


def test_masked_lm_head_agrees_with_model_garden():
    config = tiny_config()
    reference = model_garden_encoder(config, "gelu")
    reference_mlm = mg_layers.MaskedLM(
        embedding_table=reference.get_embedding_table(), activation=MG_ACTIVATIONS["gelu"],
        initializer=tf_keras.initializers.TruncatedNormal(stddev=0.5))
    inputs = random_inputs(config, batch=3, seq_length=12, lengths=[12, 8, 4])
    positions = np.array([[1, 5, 11], [0, 2, 7], [3, 1, 0]], "int32")
    sequence = reference({k: tf.constant(v) for k, v in inputs.items()})["sequence_output"]
    expected = reference_mlm(sequence, tf.constant(positions)).numpy()

    pretrainer = build_pretrainer(config)
    mlm_variables = [w for w in reference_mlm.weights if w.name.startswith("masked_lm/")]
    leftover = copy_weights(reference.weights + mlm_variables, pretrainer)
    assert sorted(leftover) == ["next_sentence/bias", "next_sentence/kernel"]
    got = pretrainer({**inputs, "masked_lm_positions": positions})["masked_lm_logits"]
    # Our GELU takes the erf form (PyTorch's, JAX's), TensorFlow's the erfc form: they differ by
    # float32 round-off, which the head's LayerNorm right after it scales up (to ~2e-5 here).
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got), expected, atol=1e-5, rtol=1e-4)
