import dataclasses
import json
import os

import pytest

from bert_tf.config import BertConfig, ConfigError
from conftest import CONFIGS_DIR

# google-research/bert's uncased_L-12_H-768_A-12/bert_config.json, key for key.
GOOGLE_BASE = {
    "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
    "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
    "max_position_embeddings": 512, "num_attention_heads": 12, "num_hidden_layers": 12,
    "type_vocab_size": 2, "vocab_size": 30522,
}


def write_json(tmp_path, values, name="bert_config.json"):
    path = tmp_path / name
    path.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def test_google_file_round_trip_is_byte_identical(tmp_path):
    source = write_json(tmp_path, GOOGLE_BASE)
    config = BertConfig.from_json_file(source)
    assert config.hidden_size == 768 and config.layer_norm_eps == 1e-12
    out = tmp_path / "out.json"
    config.to_json_file(out)
    assert out.read_text(encoding="utf-8") == source.read_text(encoding="utf-8")
    assert BertConfig.from_json_file(out) == config


def test_non_default_layer_norm_eps_round_trips(tmp_path):
    config = BertConfig(**GOOGLE_BASE, layer_norm_eps=1e-5)
    path = tmp_path / "c.json"
    config.to_json_file(path)
    assert json.loads(path.read_text())["layer_norm_eps"] == 1e-5
    assert BertConfig.from_json_file(path) == config
    assert not list(tmp_path.glob("*.tmp-*")), "temp file left behind"


@pytest.mark.parametrize("name, layers, hidden, heads", [
    ("bert_tiny", 2, 128, 2), ("bert_mini", 4, 256, 4), ("bert_small", 4, 512, 8),
    ("bert_medium", 8, 512, 8), ("bert_base", 12, 768, 12), ("bert_large", 24, 1024, 16)])
def test_shipped_configs(name, layers, hidden, heads):
    config = BertConfig.from_json_file(os.path.join(CONFIGS_DIR, f"{name}.json"))
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (
        layers, hidden, heads)
    assert config.intermediate_size == 4 * hidden
    assert (config.vocab_size, config.max_position_embeddings, config.type_vocab_size) == (
        30522, 512, 2)


def test_shipped_modern_configs():
    """crammed_bert (Cramming's 16 pre-norm GeGLU blocks without biases) and ModernBERT's two
    shapes (answerdotai/ModernBERT-base and -large on the Hugging Face Hub)."""
    from bert_tf.checkpoints.modernbert import can_write, config_to_modernbert
    from bert_tf.text.tokenization import Vocab

    crammed = BertConfig.from_json_file(os.path.join(CONFIGS_DIR, "crammed_bert.json"))
    assert (crammed.num_hidden_layers, crammed.layer_norm, crammed.hidden_act,
            crammed.use_bias) == (16, "pre", "geglu", False)
    assert not can_write(crammed)
    vocab = Vocab(("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"))
    for name, shape in (("modernbert_base", (22, 768, 12, 1152)),
                        ("modernbert_large", (28, 1024, 16, 2624))):
        config = BertConfig.from_json_file(os.path.join(CONFIGS_DIR, f"{name}.json"))
        assert can_write(config)
        values = config_to_modernbert(config, vocab)
        assert (values["num_hidden_layers"], values["hidden_size"], values["num_attention_heads"],
                values["intermediate_size"]) == shape
        assert (values["vocab_size"], values["local_attention"], values["norm_bias"],
                values["layer_types"][:4]) == (50368, 128, False, ["full_attention"] + [
                    "sliding_attention"] * 2 + ["full_attention"])
        assert values["rope_parameters"]["sliding_attention"]["rope_theta"] == 10000.0


def test_config_is_frozen():
    config = BertConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.hidden_size = 1


def test_multilingual_pooler_keys_are_accepted(tmp_path):
    # google's multilingual_L-12_H-768_A-12/bert_config.json carries these extra keys.
    values = dict(GOOGLE_BASE, vocab_size=119547, directionality="bidi", pooler_fc_size=768,
                  pooler_num_attention_heads=12, pooler_num_fc_layers=3,
                  pooler_size_per_head=128, pooler_type="first_token_transform")
    config = BertConfig.from_json_file(write_json(tmp_path, values))
    assert config.vocab_size == 119547


@pytest.mark.parametrize("change, message", [
    ({"hiddn_size": 768}, "unknown key(s) hiddn_size"),
    ({"pooler_type": "mean"}, "pooler_type='mean'"),
    ({"hidden_size": 100}, "hidden_size (100) must be divisible by num_attention_heads (12)"),
    ({"num_hidden_layers": 0}, "num_hidden_layers must be a positive integer, got 0"),
    ({"vocab_size": -5}, "vocab_size must be a positive integer, got -5"),
    ({"intermediate_size": 3072.0}, "intermediate_size must be a positive integer"),
    ({"type_vocab_size": True}, "type_vocab_size must be a positive integer (or 0: no segment "
                                "table), got True"),
    ({"hidden_dropout_prob": 1.0}, "hidden_dropout_prob must be a probability in [0, 1)"),
    ({"attention_probs_dropout_prob": -0.1}, "attention_probs_dropout_prob must be a probability"),
    ({"initializer_range": 0}, "initializer_range must be a positive number"),
    ({"layer_norm_eps": -1e-12}, "layer_norm_eps must be a positive number"),
    ({"hidden_act": "swishy"}, "hidden_act must be one of gelu, gelu_new"),
])
def test_invalid_config_file_names_the_problem(tmp_path, change, message):
    path = write_json(tmp_path, {**GOOGLE_BASE, **change})
    with pytest.raises(ConfigError) as error:
        BertConfig.from_json_file(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_missing_key(tmp_path):
    values = dict(GOOGLE_BASE)
    del values["vocab_size"]
    with pytest.raises(ConfigError, match="missing key.s. vocab_size"):
        BertConfig.from_json_file(write_json(tmp_path, values))


def test_several_problems_are_reported_together():
    with pytest.raises(ConfigError) as error:
        BertConfig(hidden_size=-1, hidden_act="tanh")
    assert "hidden_size" in str(error.value) and "hidden_act" in str(error.value)


@pytest.mark.parametrize("text, message", [
    ("{not json", "not a valid JSON file"),
    ("[1, 2]", "expected a JSON object"),
])
def test_unreadable_files(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        BertConfig.from_json_file(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such bert_config.json"):
        BertConfig.from_json_file(tmp_path / "nope.json")


def test_head_size():
    assert BertConfig(hidden_size=768, num_attention_heads=12).head_size == 64
