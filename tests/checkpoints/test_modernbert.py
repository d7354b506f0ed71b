"""ModernBERT in and out: transformers' own ModernBertForMaskedLM, made with random weights by
transformers itself, converts into bert_tf with its outputs (sequence output and masked-LM
logits within 1e-5 in float32, on padded rows longer than the local window), and back to a
directory transformers loads, bit for bit."""

import json
import os

import numpy as np
import pytest
from safetensors.numpy import load_file

from bert_tf import run_dir as run_files
from bert_tf.checkpoints.convert import Given, convert
from bert_tf.checkpoints.modernbert import config_from_modernbert
from bert_tf.config import ConfigError
from bert_tf.export.runs import export_run
from bert_tf.text.tokenization import SPECIAL_TOKENS, write_vocab
from conftest import random_inputs
from test_checkpoints import hf_reference

VOCAB = list(SPECIAL_TOKENS) + [f"w{i}" for i in range(60)]
# 4 layers, global every 2nd (0 and 2), a local window of 4 (keys at most 2 away), rows of 20
HF_CONFIG = dict(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=4,
                 num_attention_heads=4, intermediate_size=24, max_position_embeddings=64,
                 local_attention=4, global_attn_every_n_layers=2, pad_token_id=0,
                 bos_token_id=2, eos_token_id=3, cls_token_id=2, sep_token_id=3)
VARIANTS = {"modernbert": {},  # ModernBERT's own settings: no biases, bias-free norms
            "with_biases": dict(attention_bias=True, mlp_bias=True, norm_bias=True,
                                classifier_bias=True, hidden_activation="silu",
                                classifier_activation="silu")}


def inputs_for(config):
    inputs = random_inputs(config, batch=3, seq_length=20, lengths=[20, 13, 6], seed=5)
    inputs["masked_lm_positions"] = np.array([[0, 7, 19], [1, 5, 12], [2, 4, 0]], np.int32)
    return inputs


def ours(run_dir, inputs):
    pretrainer, _ = run_files.load_pretrainer(run_files.resolve(directory=str(run_dir)))
    encoder_inputs = {k: v for k, v in inputs.items() if k != "masked_lm_positions"}
    return {"sequence_output": pretrainer.encoder(encoder_inputs)["sequence_output"].numpy(),
            "masked_lm_logits": pretrainer(inputs)["masked_lm_logits"].numpy()}


def assert_close(got, expected, mask):
    real = mask.astype(bool)  # padding's outputs are nobody's business
    np.testing.assert_allclose(got["sequence_output"][real], expected["sequence_output"][real],
                               atol=1e-5, rtol=0)
    np.testing.assert_allclose(got["masked_lm_logits"], expected["masked_lm_logits"],
                               atol=1e-5, rtol=0)


@pytest.fixture(scope="module", params=list(VARIANTS))
def converted(request, tmp_path_factory):
    """A ModernBertForMaskedLM by transformers, converted in and back out; transformers' outputs
    on both directories."""
    tmp = tmp_path_factory.mktemp(request.param)
    source, inputs_file = tmp / "hf", tmp / "inputs.npz"
    hf_reference([{"op": "create", "dir": str(source), "model": "ModernBertForMaskedLM",
                   "config": {**HF_CONFIG, **VARIANTS[request.param]}, "perturb": 0.1}], tmp)
    write_vocab(VOCAB, source / "vocab.txt")
    config = config_from_modernbert(json.loads((source / "config.json").read_text()), "hf")
    inputs = inputs_for(config)
    np.savez(inputs_file, **inputs)
    reports = {"in": convert("huggingface", str(source), "bert_tf", str(tmp / "ours"),
                             log=lambda _: None)}
    reports["out"] = convert("bert_tf", str(tmp / "ours"), "huggingface", str(tmp / "back"),
                             log=lambda _: None)
    hf_reference([{"op": "run", "dir": str(directory), "model": model, "inputs": str(inputs_file),
                   "outputs": str(tmp / f"{name}.npz")}
                  for directory, model, name in (
                      (source, "ModernBertForMaskedLM", "source"),
                      (tmp / "back", "ModernBertForMaskedLM", "back"),
                      (tmp / "back", "ModernBertModel", "back_model"))], tmp)
    return dict(tmp=tmp, config=config, inputs=inputs, reports=reports,
                **{name: dict(np.load(tmp / f"{name}.npz"))
                   for name in ("source", "back", "back_model")})


def test_modernbert_converts_in_with_transformers_outputs(converted):
    config = converted["config"]
    assert [config.is_local_layer(i) for i in range(4)] == [False, True, False, True]
    assert assert_close(ours(converted["tmp"] / "ours", converted["inputs"]),
                        converted["source"], converted["inputs"]["input_mask"]) is None
    report = converted["reports"]["in"]
    assert report["freshly_initialized"] == [] and report["converted"] > 0
    assert any("no pooler" in note for note in report["notes"])


def test_modernbert_converts_out_bit_for_bit_and_loads_in_transformers(converted):
    tmp = converted["tmp"]
    source, back = load_file(tmp / "hf" / "model.safetensors"), load_file(
        tmp / "back" / "model.safetensors")
    source.pop("decoder.weight", None)  # tied; transformers may or may not write it
    assert sorted(source) == sorted(back)
    for name in source:
        np.testing.assert_array_equal(back[name], source[name], err_msg=name)
    for name in ("back", "back_model"):
        expected = converted["source"]
        np.testing.assert_array_equal(converted[name]["sequence_output"],
                                      expected["sequence_output"])
    np.testing.assert_array_equal(converted["back"]["masked_lm_logits"],
                                  converted["source"]["masked_lm_logits"])
    values = json.loads((tmp / "back" / "config.json").read_text())
    assert values["model_type"] == "modernbert"
    assert config_from_modernbert(values, "back") == converted["config"]


@pytest.mark.slow
@pytest.mark.parametrize("converted", ["modernbert"], indirect=True)
def test_converted_modernbert_exports_an_encoder_with_its_outputs(converted, tmp_path):
    import tensorflow as tf

    paths = export_run(run_files.resolve(directory=str(converted["tmp"] / "ours")),
                       str(tmp_path / "exports"), max_seq_length=20)
    encoder = tf.saved_model.load(paths["bert_encoder"])
    inputs = converted["inputs"]
    served = encoder.signatures["serving_default"](
        **{k: tf.constant(inputs[k]) for k in ("input_word_ids", "input_mask",
                                                  "input_type_ids")})
    real = inputs["input_mask"].astype(bool)
    np.testing.assert_allclose(served["sequence_output"].numpy()[real],
                               converted["source"]["sequence_output"][real], atol=1e-5, rtol=0)


@pytest.mark.parametrize("converted", ["modernbert"], indirect=True)
def test_modernbert_goes_to_bert_tf_and_huggingface_only(converted, tmp_path):
    with pytest.raises(ValueError, match="is a ModernBERT, which converts to "
                                         "--output_format=bert_tf or huggingface only"):
        convert("huggingface", str(converted["tmp"] / "hf"), "google_tf1", str(tmp_path / "g"),
                log=lambda _: None)
    assert not (tmp_path / "g").exists()


@pytest.mark.parametrize("converted", ["modernbert"], indirect=True)
def test_modernbert_without_a_wordpiece_vocab_says_what_to_give(converted, tmp_path):
    source = tmp_path / "hf"
    source.mkdir()
    for name in ("config.json", "model.safetensors"):
        (source / name).write_bytes((converted["tmp"] / "hf" / name).read_bytes())
    with pytest.raises(ValueError, match="no vocab.txt; ModernBERT's own tokenizer .* give "
                                         "--vocab_file"):
        convert("huggingface", str(source), "bert_tf", str(tmp_path / "out"),
                log=lambda _: None)
    convert("huggingface", str(source), "bert_tf", str(tmp_path / "out"),
            Given(vocab_file=str(converted["tmp"] / "hf" / "vocab.txt")), log=lambda _: None)
    assert os.path.exists(tmp_path / "out" / "ckpt-0.index")


@pytest.mark.parametrize("change, message", [
    ({"hidden_activation": "relu"}, "hidden_activation='relu'"),
    ({"attention_bias": True}, "attention_bias differs from mlp_bias"),
    ({"layer_types": ["full_attention", "full_attention", "sliding_attention",
                      "full_attention"]}, "layer_types"),
    ({"rope_parameters": {"full_attention": {"rope_type": "linear", "factor": 2.0}}},
     "rope_type='linear'"),
    ({"tie_word_embeddings": False}, "tie_word_embeddings=false"),
])
def test_modernbert_settings_bert_tf_does_not_build_are_named(change, message):
    with pytest.raises(ConfigError, match=message):
        config_from_modernbert({**HF_CONFIG, "num_hidden_layers": 4, **change}, "config.json")


@pytest.mark.parametrize("converted", ["modernbert"], indirect=True)
def test_a_wrong_shape_names_the_variable(converted, tmp_path):
    from safetensors.numpy import save_file

    source = tmp_path / "hf"
    source.mkdir()
    for name in ("config.json", "vocab.txt"):
        (source / name).write_bytes((converted["tmp"] / "hf" / name).read_bytes())
    arrays = load_file(converted["tmp"] / "hf" / "model.safetensors")
    arrays["model.layers.1.mlp.Wi.weight"] = arrays["model.layers.1.mlp.Wi.weight"][:-2]
    save_file(arrays, source / "model.safetensors")
    with pytest.raises(ValueError, match=r"layers.1.mlp.Wi.weight has shape \(46, 32\)"):
        convert("huggingface", str(source), "bert_tf", str(tmp_path / "out"),
                log=lambda _: None)
