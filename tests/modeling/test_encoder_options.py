"""The encoder options beyond google's BERT (`BertConfig.layer_norm`, `norm_type`, `use_bias`,
gated `hidden_act`), against a NumPy reference written from the papers' formulas:

  pre-norm   x + Attention(Norm(x)), then h + FFN(Norm(h)), a final Norm after the last block
             (Xiong et al. 2020, "On Layer Normalization in the Transformer Architecture", eq. of
             the Pre-LN Transformer)
  RMSNorm    x / sqrt(mean(x^2) + eps) * g (Zhang & Sennrich 2019, eq. 4)
  GEGLU      (GELU(x W) * x V) W2, SwiGLU with Swish_1 = SiLU (Shazeer 2020, eqs. 5-6)
  local      keys more than window // 2 positions from the query masked, in all layers but
             every n-th (ModernBERT's alternation, Warner et al. 2024)
  RoPE       q and k rotated pairwise by position * theta^(-2i/d) (Su et al. 2021, RoFormer,
             eq. 34), in the half-split pairing of GPT-NeoX / Llama / ModernBERT

and with every option at BERT's value, the model is BERT's, bit for bit, and so is its
bert_config.json.
"""

import json

import keras
import numpy as np
import pytest
from scipy.special import erf

from bert_tf.config import BertConfig, ConfigError
from bert_tf.modeling import BertEncoder
from conftest import MODERNBERT, random_inputs

BASE = dict(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=40, max_position_embeddings=32)
OPTIONS = {
    "pre_layer_norm": dict(layer_norm="pre"),
    "pre_rms_geglu_no_bias": dict(layer_norm="pre", norm_type="rms_norm", use_bias=False,
                                  hidden_act="geglu"),
    "post_rms_swiglu": dict(norm_type="rms_norm", hidden_act="swiglu"),
    "rope": dict(position_embedding_type="rope"),
    "rope_pre_geglu": dict(position_embedding_type="rope", rope_theta=160000.0,
                           layer_norm="pre", hidden_act="geglu", use_bias=False),
    "local_global": dict(local_attention_window=4, global_attention_every_n_layers=2,
                         num_hidden_layers=3, position_embedding_type="rope"),
    # ModernBERT's: bias-free norms, no segment table, no first attention norm, and a rotary
    # base of its own for the local layers
    "modernbert": dict(MODERNBERT, num_hidden_layers=3),
}


def randomized(config, seed=0):
    """An encoder with every weight random (norm scales near 1, biases not 0)."""
    keras.utils.set_random_seed(seed)
    encoder = BertEncoder(config)
    rng = np.random.default_rng(seed)
    for weight in encoder.weights:
        value = rng.normal(0, 0.1, weight.shape)
        if weight.path.endswith(("gamma", "scale")):
            value = 1 + value
        weight.assign(value.astype("float32"))
    return encoder


def norm(x, layer):
    if isinstance(layer, keras.layers.RMSNormalization):
        scale = np.asarray(layer.scale)
        return x / np.sqrt(np.mean(x ** 2, -1, keepdims=True) + layer.epsilon) * scale
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    beta = np.asarray(layer.beta) if layer.center else 0.0
    return (x - mean) / np.sqrt(var + layer.epsilon) * np.asarray(layer.gamma) + beta


def dense(x, layer):
    kernel = np.asarray(layer.kernel)
    out = np.tensordot(x, kernel, axes=[[x.ndim - 1], [0]]) if kernel.ndim == 2 else None
    return out + np.asarray(layer.bias) if layer.bias is not None else out


def gelu(x):
    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def silu(x):
    return x / (1 + np.exp(-x))


def rotate(x, theta):
    """x [B,T,N,d] at positions 0..T-1: pairs (i, i + d/2) turned by t * theta^(-2i/d)."""
    d = x.shape[-1]
    angle = np.arange(x.shape[1])[:, None] * theta ** (-2.0 * np.arange(d // 2) / d)  # [T,d/2]
    cos, sin = np.cos(angle)[None, :, None], np.sin(angle)[None, :, None]
    a, b = x[..., :d // 2], x[..., d // 2:]
    return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)


def reference(encoder, inputs):
    """sequence_output and pooled_output, in NumPy float64."""
    config = encoder.config
    ids, mask, types = (np.asarray(inputs[k]) for k in ("input_word_ids", "input_mask",
                                                        "input_type_ids"))
    T, N, d = ids.shape[1], config.num_attention_heads, config.head_size  # noqa: N806
    x = np.asarray(encoder.word_embeddings.embeddings)[ids].astype(np.float64)
    if config.type_vocab_size:
        x = x + np.asarray(encoder.type_embeddings.embeddings)[types]
    rope = config.position_embedding_type == "rope"
    if not rope:
        x = x + np.asarray(encoder.position_embedding.embeddings)[:T]
    x = norm(x, encoder.embeddings_layer_norm)
    pre = config.layer_norm == "pre"
    distance = np.abs(np.arange(T)[:, None] - np.arange(T)[None, :])
    for index, block in enumerate(encoder.transformer_layers):
        allowed = np.broadcast_to(mask[:, None, None, :], (len(ids), 1, T, T))
        local = config.local_attention_window and index % config.global_attention_every_n_layers
        if local:
            allowed = allowed * (distance <= config.local_attention_window // 2)
        adder = (1.0 - allowed) * -10000.0
        attention = block.self_attention
        first_unnormed = index == 0 and not config.first_block_attention_norm
        h = norm(x, block.self_attention_layer_norm) if pre and not first_unnormed else x

        def heads(layer):
            out = np.einsum("btc,cnd->btnd", h, np.asarray(layer.kernel))
            return out + np.asarray(layer.bias) if config.use_bias else out
        q, k, v = heads(attention.query), heads(attention.key), heads(attention.value)
        if rope:
            theta = config.local_rope_theta if local and config.local_rope_theta else \
                config.rope_theta
            q, k = rotate(q, theta), rotate(k, theta)
        scores = np.einsum("btnd,bsnd->bnts", q, k) / np.sqrt(d) + adder
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = np.einsum("bnts,bsnd->btnd", probs, v)
        out = np.einsum("btnd,ndc->btc", context, np.asarray(attention.attention_output.kernel))
        if config.use_bias:
            out = out + np.asarray(attention.attention_output.bias)
        x = x + out if pre else norm(x + out, block.self_attention_layer_norm)
        h = norm(x, block.output_layer_norm) if pre else x
        inner = dense(h, block.intermediate)
        if config.gated:
            value, gate = np.split(inner, 2, axis=-1)
            inner = (gelu if config.hidden_act == "geglu" else silu)(value) * gate
        else:
            inner = gelu(inner)
        out = dense(inner, block.output_dense)
        x = x + out if pre else norm(x + out, block.output_layer_norm)
    if pre:
        x = norm(x, encoder.final_layer_norm)
    pooled = np.tanh(dense(x[:, 0], encoder.pooler.dense))
    return x, pooled


@pytest.mark.parametrize("name", list(OPTIONS))
def test_options_agree_with_the_papers_formulas(name):
    config = BertConfig(**{**BASE, **OPTIONS[name]})
    encoder = randomized(config)
    inputs = random_inputs(config, batch=3, seq_length=12, lengths=[12, 7, 3], seed=1)
    got = encoder(inputs, training=False)
    sequence, pooled = reference(encoder, inputs)
    # real tokens (a padding query whose window holds no real key has only masked scores,
    # where float32's -10000 offset rounds: those rows are never read)
    real = inputs["input_mask"].astype(bool)
    np.testing.assert_allclose(np.asarray(got["sequence_output"])[real], sequence[real],
                               atol=1e-5, rtol=0)
    np.testing.assert_allclose(got["pooled_output"], pooled, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(got["encoder_outputs"][-1], got["sequence_output"])


def test_gated_and_biasless_shapes():
    config = BertConfig(**BASE, **OPTIONS["pre_rms_geglu_no_bias"])
    encoder = randomized(config)
    block = encoder.transformer_layers[0]
    assert tuple(block.intermediate.kernel.shape) == (32, 2 * 40)  # W and V, one kernel
    assert block.intermediate.bias is None and block.self_attention.query.bias is None
    assert not [w.path for w in encoder.weights if w.path.endswith("beta")]  # RMSNorm
    assert encoder.final_layer_norm is not None


def test_every_option_at_berts_value_is_berts_model_and_file():
    classic = dict(layer_norm="post", norm_type="layer_norm", use_bias=True)
    explicit, default = BertConfig(**BASE, **classic), BertConfig(**BASE)
    assert explicit == default and explicit.beyond_bert() == []
    assert json.loads(explicit.to_json_string()) == {**BASE, **{
        k: v for k, v in BertConfig().to_dict().items() if k not in BASE}}
    assert not set(classic) & set(json.loads(default.to_json_string()))
    ours, theirs = randomized(default), BertEncoder(explicit)
    assert [w.path for w in ours.weights] == [w.path for w in theirs.weights]
    for a, b in zip(ours.weights, theirs.weights):
        b.assign(a)
    inputs = random_inputs(default, batch=2, seq_length=10, seed=2)
    for name in ("sequence_output", "pooled_output"):
        np.testing.assert_array_equal(ours(inputs)[name], theirs(inputs)[name])


def test_modernbert_options_drop_what_modernbert_lacks():
    config = BertConfig(**{**BASE, **OPTIONS["modernbert"]})
    encoder = randomized(config)
    paths = [w.path for w in encoder.weights]
    assert encoder.type_embeddings is None and not [p for p in paths if "type_emb" in p]
    assert not [p for p in paths if p.endswith("beta")]  # bias-free norms
    assert encoder.transformer_layers[0].self_attention_layer_norm is None
    assert encoder.transformer_layers[1].self_attention_layer_norm is not None
    assert [block.rope_theta for block in encoder.transformer_layers] == [160000.0, 10000.0,
                                                                          160000.0]
    inputs = random_inputs(config, batch=2, seq_length=8, seed=4)
    other_types = dict(inputs, input_type_ids=1 - inputs["input_type_ids"])
    np.testing.assert_array_equal(encoder(inputs)["sequence_output"],
                                  encoder(other_types)["sequence_output"])  # not read
    assert config.beyond_bert()[-1] == "type_vocab_size=0"


def test_options_round_trip_through_bert_config_json(tmp_path):
    config = BertConfig(**BASE, **OPTIONS["pre_rms_geglu_no_bias"])
    config.to_json_file(tmp_path / "bert_config.json")
    assert BertConfig.from_json_file(tmp_path / "bert_config.json") == config
    assert config.beyond_bert() == ["layer_norm='pre'", "norm_type='rms_norm'",
                                    "use_bias=False", "hidden_act='geglu'"]


@pytest.mark.parametrize("values,named", [
    ({"layer_norm": "sandwich"}, "layer_norm must be one of post, pre"),
    ({"norm_type": "scale_norm"}, "norm_type must be one of layer_norm, rms_norm"),
    ({"use_bias": "no"}, "use_bias must be true or false"),
    ({"hidden_act": "reglu"}, "hidden_act must be one of .*geglu, swiglu"),
    ({"first_block_attention_norm": False}, "first_block_attention_norm=false needs "
                                            "layer_norm='pre'"),
    ({"norm_bias": 0}, "norm_bias must be true or false"),
    ({"local_rope_theta": 0.5}, "local_rope_theta must be a number above 1"),
    ({"type_vocab_size": -1}, "type_vocab_size must be a positive integer .or 0")])
def test_bad_options_are_named(values, named):
    with pytest.raises(ConfigError, match=named):
        BertConfig(**BASE, **values)


def test_rotary_positions_restart_in_each_packed_sequence():
    """A packed row's second sequence gets the outputs it has alone: its positions restart."""
    config = BertConfig(**BASE, **OPTIONS["rope_pre_geglu"])
    encoder = randomized(config)
    rng = np.random.default_rng(4)
    first, second = rng.integers(5, 60, 5), rng.integers(5, 60, 4)
    packed = {"input_word_ids": np.concatenate([first, second, [0, 0, 0]])[None].astype("int32"),
              "input_mask": np.array([[1] * 5 + [2] * 4 + [0] * 3], "int32"),
              "input_type_ids": np.zeros((1, 12), "int32")}
    alone = {"input_word_ids": np.concatenate([second, [0] * 8])[None].astype("int32"),
             "input_mask": np.array([[1] * 4 + [0] * 8], "int32"),
             "input_type_ids": np.zeros((1, 12), "int32")}
    together = encoder(packed, training=False)["sequence_output"][0, 5:9]
    np.testing.assert_allclose(together, encoder(alone, training=False)["sequence_output"][0, :4],
                               atol=1e-5)
    assert not hasattr(encoder.position_embedding, "embeddings")  # no table


def test_rotary_scores_depend_on_relative_position_only():
    from bert_tf.modeling.layers import rotary

    rng = np.random.default_rng(5)
    q, k = rng.normal(size=(1, 1, 1, 8)), rng.normal(size=(1, 1, 1, 8))
    def score(i, j):
        turned_q = rotary(q.astype("float32"), np.array([[i]]), 10000.0)
        turned_k = rotary(k.astype("float32"), np.array([[j]]), 10000.0)
        return float(np.sum(np.asarray(turned_q) * np.asarray(turned_k)))
    assert score(3, 1) == pytest.approx(score(10, 8), abs=1e-5)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)


def test_local_layers_see_only_their_window():
    """Changing a token far outside every window changes nothing near the start when all
    layers are local; with one global layer it does."""
    local = BertConfig(**{**BASE, "local_attention_window": 2,
                          "global_attention_every_n_layers": 99, "num_hidden_layers": 2})
    encoder = randomized(local)
    inputs = random_inputs(local, batch=1, seq_length=12, lengths=[12], seed=6)
    changed = {**inputs, "input_word_ids": inputs["input_word_ids"].copy()}
    changed["input_word_ids"][0, 11] = (changed["input_word_ids"][0, 11] % 50) + 5
    first = encoder(inputs, training=False)["encoder_outputs"]
    second = encoder(changed, training=False)["encoder_outputs"]
    # layer 0 is global (0 % n == 0); layer 1 is local (window 2: one position each side)
    assert not np.allclose(first[0][0, 0], second[0][0, 0])
    assert local.is_local_layer(1) and not local.is_local_layer(0)
    all_local = BertConfig(**{**BASE, "local_attention_window": 2, "num_hidden_layers": 2,
                              "global_attention_every_n_layers": 99})
    assert all_local.beyond_bert() == ["local_attention_window=2"]
