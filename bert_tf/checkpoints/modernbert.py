"""Hugging Face ModernBERT directories in and out: config.json and model.safetensors as
transformers' ModernBertModel or ModernBertForMaskedLM save them (safetensors' numpy API, no
torch).

ModernBERT (Warner et al. 2024) is, in BertConfig's terms, a pre-norm encoder without biases,
without a segment table and without an attention norm in its first block, with bias-free
LayerNorms, rotary positions (160000 for the global layers, 10000 for the local ones), GeGLU
and ModernBERT's local/global alternation: `config_from_modernbert` says so, and every
variable maps to one of ours by a rename, a transpose and a reshape (the fused Wqkv [3H, H]
splits into our query, key and value [H, N, d]):

    embeddings.tok_embeddings.weight  [V, H]    word_embeddings/embeddings
    embeddings.norm.weight            [H]       embeddings_layer_norm/gamma
    layers.i.attn_norm.weight         [H]       ..._i/self_attention_layer_norm/gamma (i > 0)
    layers.i.attn.Wqkv.weight         [3H, H]   ..._i/self_attention/{query,key,value}/kernel
    layers.i.attn.Wo.weight           [H, H]    ..._i/self_attention/attention_output/kernel
    layers.i.mlp_norm.weight          [H]       ..._i/output_layer_norm/gamma
    layers.i.mlp.Wi.weight            [2I, H]   ..._i/intermediate/kernel
    layers.i.mlp.Wo.weight            [H, I]    ..._i/output/kernel
    final_norm.weight                 [H]       final_layer_norm/gamma
    head.dense.weight                 [H, H]    masked_lm_transform/dense/kernel
    head.norm.weight                  [H]       masked_lm_transform/layer_norm/gamma
    decoder.bias                      [V]       masked_lm_output_bias/bias (decoder.weight: tied)

(`..._i` is transformer_layer_i; the encoder's names are under `model.` in
ModernBertForMaskedLM; biases, where the config has them, beside their weights). ModernBERT has
no pooler: ours is freshly initialised on the way in and left out on the way out.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf

from bert_tf import io
from bert_tf.checkpoints.huggingface import load_safetensors, write_tokenizer_config
from bert_tf.checkpoints.names import keras_weights
from bert_tf.config import GATED_ACTIVATIONS, BertConfig, ConfigError

MODEL_TYPE = "modernbert"
ARCHITECTURES = ("ModernBertModel", "ModernBertForMaskedLM")
# The BertConfig settings that make a ModernBERT; a config with all of them is written out as one.
MODERN = {"layer_norm": "pre", "norm_type": "layer_norm", "position_embedding_type": "rope",
          "type_vocab_size": 0, "first_block_attention_norm": False}
_GATES = {gate: name for name, gate in GATED_ACTIVATIONS.items()}  # "gelu" -> "geglu"


def is_modernbert(directory) -> bool:
    """Whether a Hugging Face directory's config.json says model_type "modernbert"."""
    path = os.path.join(directory, "config.json")
    return (tf.io.gfile.isdir(directory) and tf.io.gfile.exists(path)
            and io.read_json(path).get("model_type") == MODEL_TYPE)


def can_write(config: BertConfig) -> bool:
    """Whether a config is a ModernBERT (MODERN, a gated activation, a local window)."""
    return (all(getattr(config, key) == value for key, value in MODERN.items())
            and config.gated and config.local_attention_window > 0)


def config_from_modernbert(values: dict, source: str) -> BertConfig:
    """transformers' ModernBertConfig (config.json) -> BertConfig; settings bert_tf does not
    build (unequal attention and MLP biases, another head activation, no decoder tie) are
    errors that name them."""
    def need(condition, what):
        if not condition:
            raise ConfigError(f"{source}: {what}; bert_tf builds ModernBERT without it")

    act = values.get("hidden_activation", "gelu")
    need(act in _GATES, f"hidden_activation={act!r} (bert_tf gates gelu or silu)")
    need(values.get("classifier_activation", act) == act,
         f"classifier_activation={values.get('classifier_activation')!r} differs from "
         f"hidden_activation={act!r}")
    bias = values.get("attention_bias", False)
    need(values.get("mlp_bias", False) == bias, "attention_bias differs from mlp_bias")
    need(values.get("tie_word_embeddings", True), "tie_word_embeddings=false")
    layers = values.get("num_hidden_layers", 22)
    every = values.get("global_attn_every_n_layers", 3)
    types = values.get("layer_types") or [
        "sliding_attention" if i % every else "full_attention" for i in range(layers)]
    globals_ = [i for i, kind in enumerate(types) if kind == "full_attention"]
    every = globals_[1] if len(globals_) > 1 else layers
    need(types == ["full_attention" if i % every == 0 else "sliding_attention"
                   for i in range(layers)],
         f"layer_types {types} (bert_tf alternates one global layer every n, from the first)")
    rope = values.get("rope_parameters") or {}
    thetas = {kind: (rope.get(kind) or {}).get("rope_theta", values.get(key, default))
              for kind, key, default in (("full_attention", "global_rope_theta", 160000.0),
                                         ("sliding_attention", "local_rope_theta", 10000.0))}
    for kind in thetas:
        rope_type = (rope.get(kind) or {}).get("rope_type", "default")
        need(rope_type == "default", f"rope_type={rope_type!r} for {kind}")
    return BertConfig(
        vocab_size=values.get("vocab_size", 50368), hidden_size=values.get("hidden_size", 768),
        num_hidden_layers=layers, num_attention_heads=values.get("num_attention_heads", 12),
        intermediate_size=values.get("intermediate_size", 1152), hidden_act=_GATES[act],
        hidden_dropout_prob=float(values.get("mlp_dropout", 0.0)),
        attention_probs_dropout_prob=float(values.get("attention_dropout", 0.0)),
        max_position_embeddings=values.get("max_position_embeddings", 8192),
        initializer_range=values.get("initializer_range", 0.02),
        layer_norm_eps=values.get("norm_eps", 1e-5), use_bias=bias,
        norm_bias=values.get("norm_bias", False), head_bias=values.get("classifier_bias", False),
        rope_theta=float(thetas["full_attention"]),
        local_rope_theta=float(thetas["sliding_attention"]),
        local_attention_window=values.get("local_attention", 128),
        global_attention_every_n_layers=every, **MODERN)


def config_to_modernbert(config: BertConfig, vocab) -> dict:
    """BertConfig -> a config.json of transformers' ModernBertForMaskedLM."""
    every = config.global_attention_every_n_layers
    special = {"pad_token_id": vocab.pad_id, "cls_token_id": vocab.cls_id,
               "sep_token_id": vocab.sep_id}
    return {
        "architectures": ["ModernBertForMaskedLM"], "model_type": MODEL_TYPE,
        "vocab_size": config.vocab_size, "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads,
        "intermediate_size": config.intermediate_size,
        "hidden_activation": GATED_ACTIVATIONS[config.hidden_act],
        "classifier_activation": GATED_ACTIVATIONS[config.hidden_act],
        "max_position_embeddings": config.max_position_embeddings,
        "initializer_range": config.initializer_range, "norm_eps": config.layer_norm_eps,
        "norm_bias": config.norm_bias, "attention_bias": config.use_bias,
        "mlp_bias": config.use_bias, "classifier_bias": config.head_bias, "decoder_bias": True,
        "attention_dropout": config.attention_probs_dropout_prob,
        "mlp_dropout": config.hidden_dropout_prob,
        "embedding_dropout": config.hidden_dropout_prob,
        "local_attention": config.local_attention_window,
        "layer_types": ["sliding_attention" if i % every else "full_attention"
                        for i in range(config.num_hidden_layers)],
        "rope_parameters": {
            "full_attention": {"rope_type": "default", "rope_theta": config.rope_theta},
            "sliding_attention": {"rope_type": "default", "rope_theta":
                                  config.local_rope_theta or config.rope_theta}},
        "tie_word_embeddings": True, "dtype": "float32",
        **special, "bos_token_id": vocab.cls_id, "eos_token_id": vocab.sep_id}


# === names ===

@dataclasses.dataclass(frozen=True)
class Mapped:
    """One ModernBERT variable and the Keras weights it is: `parts` are our weight paths
    (the fused Wqkv is three, side by side on the output axis), `transposed` for torch's
    Linear [out, in]."""
    hf: str
    parts: tuple
    transposed: bool


def names(config: BertConfig) -> list[Mapped]:
    """Every ModernBERT variable of `config` (ModernBertForMaskedLM, less its `model.` prefix
    on the encoder's names and less the tied decoder weight)."""
    out = [Mapped("embeddings.tok_embeddings.weight", ("word_embeddings/embeddings",), False)]

    def norm(hf, ours):
        out.append(Mapped(f"{hf}.weight", (f"{ours}/gamma",), False))
        if config.norm_bias:
            out.append(Mapped(f"{hf}.bias", (f"{ours}/beta",), False))

    def dense(hf, ours, bias):
        out.append(Mapped(f"{hf}.weight", tuple(f"{p}/kernel" for p in ours), True))
        if bias:
            out.append(Mapped(f"{hf}.bias", tuple(f"{p}/bias" for p in ours), False))

    norm("embeddings.norm", "embeddings_layer_norm")
    for i in range(config.num_hidden_layers):
        hf, ours = f"layers.{i}", f"transformer_layer_{i}"
        if i or config.first_block_attention_norm:
            norm(f"{hf}.attn_norm", f"{ours}/self_attention_layer_norm")
        dense(f"{hf}.attn.Wqkv", [f"{ours}/self_attention/{p}" for p in
                                  ("query", "key", "value")], config.use_bias)
        dense(f"{hf}.attn.Wo", [f"{ours}/self_attention/attention_output"], config.use_bias)
        norm(f"{hf}.mlp_norm", f"{ours}/output_layer_norm")
        dense(f"{hf}.mlp.Wi", [f"{ours}/intermediate"], config.use_bias)
        dense(f"{hf}.mlp.Wo", [f"{ours}/output"], config.use_bias)
    norm("final_norm", "final_layer_norm")
    dense("head.dense", ["masked_lm_transform/dense"], config.head_bias)
    norm("head.norm", "masked_lm_transform/layer_norm")
    out.append(Mapped("decoder.bias", ("masked_lm_output_bias/bias",), False))
    return out


ENCODER_PREFIX = "model."  # ModernBertForMaskedLM's name for its ModernBertModel
HEAD = ("head.", "decoder.")
TIED = "decoder.weight"


def assign(model, arrays: dict, source: str) -> list[str]:
    """Copies ModernBERT arrays (names without the `model.` prefix) into a masked-LM-only
    BertPretrainer; every shape is checked. Returns what the source lacks: the head, where the
    directory holds a ModernBertModel only."""
    weights, absent = keras_weights(model), []
    for mapped in names(model.encoder.config):
        if mapped.hf not in arrays:
            if mapped.hf.startswith(HEAD):
                absent.append(mapped.hf)
                continue
            raise ValueError(f"{source}: no {mapped.hf} in the checkpoint")
        value = np.asarray(arrays[mapped.hf], np.float32)
        value = value.T if mapped.transposed else value
        targets = [weights[p] for p in mapped.parts]
        pieces = np.split(value, len(targets), axis=-1)
        for target, piece in zip(targets, pieces):
            size = int(np.prod(target.shape))
            if piece.size != size:
                raise ValueError(f"{source}: {mapped.hf} has shape {tuple(arrays[mapped.hf].shape)}"
                                 f", which does not fit the config (it needs "
                                 f"{len(targets)} x {tuple(target.shape)})")
            target.assign(np.reshape(piece, target.shape))
    return absent


def arrays_of(model) -> dict:
    """A masked-LM-only BertPretrainer's weights as ModernBertForMaskedLM arrays."""
    weights, arrays = keras_weights(model), {}
    for mapped in names(model.encoder.config):
        pieces = [np.asarray(weights[p].numpy(), np.float32) for p in mapped.parts]
        if "attention_output/kernel" in mapped.parts[0]:  # [N, d, H] -> [H_in, H]
            pieces = [np.reshape(p, (-1, p.shape[-1])) for p in pieces]
        elif mapped.transposed:  # query/key/value [H, N, d] -> [H, H_out]
            pieces = [np.reshape(p, (p.shape[0], -1)) for p in pieces]
        elif mapped.parts[0].endswith("/bias"):  # a query bias [N, d] -> [H]
            pieces = [np.reshape(p, (-1,)) for p in pieces]
        value = np.concatenate(pieces, axis=-1)
        name = mapped.hf if mapped.hf.startswith(HEAD) else ENCODER_PREFIX + mapped.hf
        arrays[name] = np.ascontiguousarray(value.T if mapped.transposed else value)
    return arrays  # decoder.weight is tied: transformers leaves it out too


def read_arrays(directory) -> tuple[dict, list]:
    """(arrays by name less the `model.` prefix, skipped names) of a ModernBERT directory;
    the tied decoder weight must equal the embeddings."""
    arrays = load_safetensors(directory)
    prefixed = any(n.startswith(ENCODER_PREFIX) for n in arrays)
    out, skipped = {}, []
    for name, value in arrays.items():
        if name == TIED:
            continue
        short = name.removeprefix(ENCODER_PREFIX) if prefixed else name
        out[short] = value
    if TIED in arrays:
        embeddings = out.get("embeddings.tok_embeddings.weight")
        if embeddings is not None and not np.array_equal(arrays[TIED], embeddings):
            raise ValueError(f"--input {directory}: decoder.weight differs from the token "
                             f"embeddings; bert_tf ties the masked-LM decoder to them")
        skipped.append(f"{TIED} (tied)")
    return out, skipped


# === reading and writing ===

@dataclasses.dataclass
class Modern:
    """A ModernBERT read into our model: a masked-LM-only BertPretrainer (or one with a
    next-sentence head, from a bert_tf run, which ModernBERT leaves out)."""
    model: object
    converted: int  # ModernBERT variables read or written
    vocab_file: str
    do_lower_case: bool
    skipped: list
    absent: list
    notes: list


def read_modern(input_format, path, given) -> Modern | None:
    """A ModernBERT from a Hugging Face directory or a bert_tf run whose config is one
    (`can_write`); None for any other input (google's BERT, read by the BERT readers)."""
    if input_format == "huggingface" and is_modernbert(path):
        return _from_huggingface(path, given)
    if input_format == "bert_tf":
        from bert_tf import run_dir

        path = path.removesuffix(".index")
        directory = None if run_dir.is_checkpoint(path) else path
        if directory and not (tf.io.gfile.isdir(directory)
                              and tf.train.latest_checkpoint(directory)):
            return None  # the BERT reader says what is missing
        try:
            files = run_dir.resolve(None if directory else path, directory,
                                    given.bert_config_file, given.vocab_file,
                                    given.do_lower_case, flag="--input")
            config = BertConfig.from_json_file(files.bert_config_file)
        except (ValueError, tf.errors.OpError):
            return None  # likewise
        if can_write(config):
            return _from_bert_tf(files, path)
    return None


def _from_huggingface(path, given) -> Modern:
    from bert_tf.checkpoints.names import vocab_and_case
    from bert_tf.modeling import build_pretrainer

    config_path = given.bert_config_file or os.path.join(path, "config.json")
    config = config_from_modernbert(io.read_json(config_path), config_path)
    notes = []
    vocab_file = given.vocab_file or os.path.join(path, "vocab.txt")
    if not tf.io.gfile.exists(vocab_file):
        raise ValueError(f"--input {path}: no vocab.txt; ModernBERT's own tokenizer "
                         f"(tokenizer.json, byte-level BPE) is not one bert_tf's text "
                         f"pipeline reads: give --vocab_file, a WordPiece vocab.txt of the "
                         f"model's ids")
    vocab_file, do_lower_case = vocab_and_case(vocab_file, given.do_lower_case, notes, path)
    arrays, skipped = read_arrays(path)
    model = build_pretrainer(config, next_sentence=False)
    absent = assign(model, arrays, f"--input {path}")
    used = {mapped.hf for mapped in names(config)}
    skipped += sorted(set(arrays) - used)
    notes.append("ModernBERT has no pooler: pooled_output's layer is freshly initialised")
    return Modern(model, len(used) - len(absent), vocab_file, do_lower_case, skipped,
                  ["masked-LM head"] if absent else [], notes)


def _from_bert_tf(files, path) -> Modern:
    from bert_tf import run_dir
    from bert_tf.checkpoints.names import vocab_and_case
    from bert_tf.modeling import BertPretrainer

    if files.record.get("task"):
        raise ValueError(f"--input {path}: a finetuned model ({files.record['task']}); "
                         f"ModernBERT's format holds the pretrained encoder and masked-LM head: "
                         f"export the task model with python -m bert_tf.export")
    notes = []
    vocab_file, do_lower_case = vocab_and_case(files.vocab_file, files.do_lower_case, notes,
                                               files.checkpoint)
    model, _ = run_dir.load_model(files, flag="--input")
    assert isinstance(model, BertPretrainer)
    skipped = []
    if model.next_sentence is not None:
        skipped.append("next_sentence (ModernBERT has no next-sentence head)")
    skipped.append("pooler (ModernBERT has none)")
    return Modern(model, len(names(model.encoder.config)), vocab_file, do_lower_case, skipped,
                  [], notes)


def write_modernbert(model, vocab, do_lower_case, directory) -> None:
    """config.json, model.safetensors and tokenizer_config.json (a BertTokenizer of the run's
    WordPiece vocab.txt, which the caller copies) for transformers' ModernBertForMaskedLM
    (ModernBertModel loads it too)."""
    from safetensors.numpy import save

    io.write_file(os.path.join(directory, "model.safetensors"),
                  save(arrays_of(model), metadata={"format": "pt"}))
    config = model.encoder.config
    io.write_json(os.path.join(directory, "config.json"), config_to_modernbert(config, vocab))
    write_tokenizer_config(directory, do_lower_case, config.max_position_embeddings)
