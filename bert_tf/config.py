"""BertConfig: the model hyper-parameters, read from and written to google-research `bert_config.json`.

A google file such as

    {"attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
     "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
     "max_position_embeddings": 512, "num_attention_heads": 12, "num_hidden_layers": 12,
     "type_vocab_size": 2, "vocab_size": 30522}

loads with `BertConfig.from_json_file(path)` and writes back with `to_json_file(path)` unchanged.
`layer_norm_eps` is ours (google hard-codes 1e-12); it is written only when it differs from that.
Unknown keys and invalid values are errors that name them: a typo must never silently train a
different model.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

# `hidden_act` names follow Hugging Face: "gelu" is the exact (erf) GELU, "gelu_new", "gelu_tanh" and
# "gelu_pytorch_tanh" are the tanh approximation that google-research/bert's own code computes.
# "geglu" and "swiglu" make the feed-forward layer gated (Shazeer 2020, "GLU Variants Improve
# Transformer"): act(x W) * (x V), W and V each [H, intermediate_size], act GELU (exact) or SiLU.
GATED_ACTIVATIONS = {"geglu": "gelu", "swiglu": "silu"}
ACTIVATIONS = ("gelu", "gelu_new", "gelu_tanh", "gelu_pytorch_tanh", "relu", *GATED_ACTIVATIONS)

# The encoder options beyond google's BERT, and the value of each that gives google's model.
# They are written to bert_config.json only when they differ from it, so a classic config file
# stays google's.
CLASSIC = {"layer_norm": "post", "norm_type": "layer_norm", "use_bias": True,
           "position_embedding_type": "absolute", "rope_theta": 10000.0,
           "local_attention_window": 0, "global_attention_every_n_layers": 1,
           "local_rope_theta": None, "norm_bias": True, "first_block_attention_norm": True,
           "head_bias": True}
# Options that only refine another (the rotary base, the local/global period): not by themselves
# a model other than BERT.
_REFINEMENTS = ("rope_theta", "global_attention_every_n_layers", "local_rope_theta")
CHOICES = {"layer_norm": ("post", "pre"), "norm_type": ("layer_norm", "rms_norm"),
           "position_embedding_type": ("absolute", "rope")}

_DEFAULT_LAYER_NORM_EPS = 1e-12

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def configs_dir() -> str:
    """The shipped configs/ (bert_tiny ... bert_large): inside an installed package (the wheel carries
    them as bert_tf/configs), else at the top of the source checkout this package runs from."""
    installed = os.path.join(_PACKAGE_DIR, "configs")
    return installed if os.path.isdir(installed) else os.path.join(os.path.dirname(_PACKAGE_DIR),
                                                                   "configs")


# Keys that google's multilingual and Chinese releases carry in bert_config.json. They describe the
# standard first-token pooler and are not read by google's own modeling code; accepted when they
# agree with the model we build, and not written back.
_GOOGLE_POOLER_KEYS = {
    "directionality": lambda c, v: v == "bidi",
    "pooler_type": lambda c, v: v == "first_token_transform",
    "pooler_fc_size": lambda c, v: v == c["hidden_size"],
    "pooler_num_attention_heads": lambda c, v: v == c["num_attention_heads"],
    "pooler_num_fc_layers": lambda c, v: isinstance(v, int),
    "pooler_size_per_head": lambda c, v: isinstance(v, int),
}


class ConfigError(ValueError):
    """A bert_config.json (or dict) that does not describe a valid BERT."""


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Hyper-parameters of a BERT encoder, with google-research/bert field names.

    Args:
      vocab_size: rows of the word-embedding table.
      hidden_size: width H of every hidden state.
      num_hidden_layers: number L of transformer blocks.
      num_attention_heads: heads A per block; must divide `hidden_size`.
      intermediate_size: width of the feed-forward layer inside each block.
      hidden_act: activation of the feed-forward layer and the MLM transform (see ACTIVATIONS).
      hidden_dropout_prob: dropout on embeddings and on each sub-layer output.
      attention_probs_dropout_prob: dropout on the attention probabilities.
      max_position_embeddings: longest sequence the position table supports.
      type_vocab_size: number of segment (token type) ids; 0: no segment table (ModernBERT),
        `input_type_ids` accepted and not read.
      initializer_range: stddev of the truncated normal that initialises weights.
      layer_norm_eps: epsilon of every LayerNorm.
      layer_norm: "post" (BERT: normalise after each residual add) or "pre" (normalise each
        block's input, and the last block's output once more: Xiong et al. 2020, "On Layer
        Normalization in the Transformer Architecture").
      norm_type: "layer_norm", or "rms_norm" (scale only, no mean or bias: Zhang & Sennrich
        2019), for every norm of the encoder and the masked-LM head.
      use_bias: biases in the attention projections and the feed-forward layers (the heads keep
        theirs).
      position_embedding_type: "absolute" (a learned table added to the embeddings) or "rope"
        (no table; queries and keys rotated by their position: Su et al. 2021, RoFormer).
      rope_theta: the base of the rotary frequencies, theta^(-2i/d).
      local_attention_window: 0 (every layer attends globally), or W: a local layer's query
        attends only to keys at most W // 2 positions away (ModernBERT's sliding window).
      global_attention_every_n_layers: with a window, layers 0, n, 2n, ... stay global and the
        others are local (ModernBERT: n = 3, W = 128).
      local_rope_theta: the rotary base of the local layers (ModernBERT: 10000, its global
        layers 160000); None: `rope_theta`.
      norm_bias: the LayerNorms' bias (beta); false: scale only (ModernBERT's norms).
      first_block_attention_norm: with pre-norm, whether the first block normalises its
        attention input; ModernBERT does not (the embeddings' norm has just done it).
      head_bias: the bias of the masked-LM transform's dense layer (ModernBERT has none).
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = _DEFAULT_LAYER_NORM_EPS
    layer_norm: str = CLASSIC["layer_norm"]
    norm_type: str = CLASSIC["norm_type"]
    use_bias: bool = CLASSIC["use_bias"]
    position_embedding_type: str = CLASSIC["position_embedding_type"]
    rope_theta: float = CLASSIC["rope_theta"]
    local_attention_window: int = CLASSIC["local_attention_window"]
    global_attention_every_n_layers: int = CLASSIC["global_attention_every_n_layers"]
    local_rope_theta: float | None = CLASSIC["local_rope_theta"]
    norm_bias: bool = CLASSIC["norm_bias"]
    first_block_attention_norm: bool = CLASSIC["first_block_attention_norm"]
    head_bias: bool = CLASSIC["head_bias"]

    def __post_init__(self):
        problems = []
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings"):
            value = getattr(self, name)
            if not _is_int(value) or value <= 0:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if not _is_int(self.type_vocab_size) or self.type_vocab_size < 0:
            problems.append(f"type_vocab_size must be a positive integer (or 0: no segment "
                            f"table), got {self.type_vocab_size!r}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if not _is_number(value) or not 0.0 <= value < 1.0:
                problems.append(f"{name} must be a probability in [0, 1), got {value!r}")
        for name in ("initializer_range", "layer_norm_eps"):
            value = getattr(self, name)
            if not _is_number(value) or value <= 0:
                problems.append(f"{name} must be a positive number, got {value!r}")
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                problems.append(f"{name} must be one of {', '.join(allowed)}, got "
                                f"{getattr(self, name)!r}")
        for name in ("rope_theta", "local_rope_theta"):
            value = getattr(self, name)
            if (value is not None or name == "rope_theta") and (
                    not _is_number(value) or value <= 1):
                problems.append(f"{name} must be a number above 1, got {value!r}")
        if (self.position_embedding_type == "rope" and _is_int(self.hidden_size)
                and _is_int(self.num_attention_heads) and self.num_attention_heads > 0
                and (self.hidden_size // self.num_attention_heads) % 2):
            problems.append("rotary positions need an even head size (hidden_size / "
                            "num_attention_heads)")
        for name, least in (("local_attention_window", 0), ("global_attention_every_n_layers", 1)):
            value = getattr(self, name)
            if not _is_int(value) or value < least:
                problems.append(f"{name} must be an integer of at least {least}, got {value!r}")
        for name in ("use_bias", "norm_bias", "first_block_attention_norm", "head_bias"):
            if not isinstance(getattr(self, name), bool):
                problems.append(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.first_block_attention_norm is False and self.layer_norm != "pre":
            problems.append("first_block_attention_norm=false needs layer_norm='pre' (a "
                            "post-norm block normalises its output, not its input)")
        if self.hidden_act not in ACTIVATIONS:
            problems.append(f"hidden_act must be one of {', '.join(ACTIVATIONS)}, "
                            f"got {self.hidden_act!r}")
        if (_is_int(self.hidden_size) and _is_int(self.num_attention_heads)
                and self.num_attention_heads > 0 and self.hidden_size % self.num_attention_heads):
            problems.append(f"hidden_size ({self.hidden_size}) must be divisible by "
                            f"num_attention_heads ({self.num_attention_heads})")
        if problems:
            raise ConfigError("Invalid BERT config: " + "; ".join(problems))

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def gated(self) -> bool:
        return self.hidden_act in GATED_ACTIVATIONS

    def is_local_layer(self, index: int) -> bool:
        """Whether block `index` attends within `local_attention_window` only."""
        return bool(self.local_attention_window) and index % self.global_attention_every_n_layers

    def layer_rope_theta(self, index: int) -> float | None:
        """The rotary base of block `index`; None without rotary positions."""
        if self.position_embedding_type != "rope":
            return None
        if self.is_local_layer(index) and self.local_rope_theta is not None:
            return self.local_rope_theta
        return self.rope_theta

    def beyond_bert(self) -> list[str]:
        """The settings ("layer_norm='pre'", ...) by which this model is not google's BERT:
        formats that hold only BERT (google's, Hugging Face's BertModel, keras-hub's) refuse
        them."""
        differ = [f"{key}={getattr(self, key)!r}" for key, value in CLASSIC.items()
                  if getattr(self, key) != value and key not in _REFINEMENTS]
        return (differ + ([f"hidden_act={self.hidden_act!r}"] if self.gated else [])
                + (["type_vocab_size=0"] if self.type_vocab_size == 0 else []))

    # === dict / JSON ===

    def check_sequence_length(self, seq_length: int, flag: str = "--max_seq_length") -> None:
        """Refuses a sequence length the position embeddings cannot hold (the model would fail
        on every longer text, at serving time)."""
        if seq_length > self.max_position_embeddings:
            raise ValueError(f"{flag}={seq_length} exceeds max_position_embeddings="
                             f"{self.max_position_embeddings} of the encoder: use "
                             f"{flag}={self.max_position_embeddings} or less")

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "BertConfig":
        """Builds a config from google's keys; `source` names the origin in error messages."""
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: expected a JSON object of BERT settings, "
                              f"got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known - set(_GOOGLE_POOLER_KEYS))
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; "
                              f"expected only {', '.join(sorted(known))}")
        missing = sorted(known - {"layer_norm_eps"} - set(CLASSIC) - set(values))
        if missing:
            raise ConfigError(f"{source}: missing key(s) {', '.join(missing)}")
        try:
            config = cls(**{k: v for k, v in values.items() if k in known})
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
        bad = [f"{k}={values[k]!r}" for k, check in _GOOGLE_POOLER_KEYS.items()
               if k in values and not check(values, values[k])]
        if bad:
            raise ConfigError(f"{source}: {', '.join(bad)} describes a pooler other than the "
                              f"standard first-token tanh layer, which is all bert_tf builds")
        return config

    def to_dict(self) -> dict[str, Any]:
        """google's keys; `layer_norm_eps` only when it is not google's fixed 1e-12, and the
        options beyond BERT only when they differ from BERT."""
        values = dataclasses.asdict(self)
        if values["layer_norm_eps"] == _DEFAULT_LAYER_NORM_EPS:
            del values["layer_norm_eps"]
        for key, classic in CLASSIC.items():
            if values[key] == classic:
                del values[key]
        return values

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "BertConfig":
        import tensorflow as tf

        from bert_tf import io

        path = os.fspath(path)
        try:
            values = json.loads(io.read_text(path))
        except tf.errors.NotFoundError:
            raise ConfigError(f"{path}: no such bert_config.json file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not a valid JSON file ({e})") from None
        return cls.from_dict(values, source=path)

    def to_json_string(self) -> str:
        # The same layout as google's BertConfig.to_json_string.
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, path: str | os.PathLike) -> None:
        """Writes atomically: a temp file in the same directory, renamed when complete."""
        from bert_tf import io

        io.write_file(path, self.to_json_string())


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
