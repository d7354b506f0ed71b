"""TF Hub / Kaggle BERT encoder SavedModels, read by their variables (TensorFlow Hub and Keras
are not needed to load them):

- TF2 layout, as the Model Garden's export_tfhub writes it (bert_en_uncased_L-12_H-768_A-12/3
  and later, the small BERTs, bert_multi_cased): `input_word_ids`, `input_mask`,
  `input_type_ids` -> `pooled_output`, `sequence_output`, `encoder_outputs`; an `mlm`
  sub-model in the "with MLM" exports; `assets/vocab.txt` and a `do_lower_case` variable. Its
  variables carry the Model Garden's names (bert_tf.checkpoints.model_garden); the encoder's
  settings are read from the Keras metadata the export stores.
- TF1 Hub layout (bert_uncased_L-12_H-768_A-12/1, hub.Module): a `tokens` signature
  (`input_ids`, `input_mask`, `segment_ids` -> `pooled_output`, `sequence_output`), `mlm` and
  `tokenization_info`; variables under google-research/bert's own names, `assets/vocab.txt`.
  Its settings are read from the variables' shapes; the number of heads is not among them and
  is taken as hidden_size / 64, as in every BERT google released (give --bert_config_file
  otherwise).

The vocab may come from the companion preprocessor instead: --vocab_file=PREPROCESSOR_DIR.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import tensorflow as tf

from bert_tf import io
from bert_tf.checkpoints import model_garden
from bert_tf.checkpoints.names import Weights, google_shapes, vocab_and_case
from bert_tf.config import BertConfig

VARIABLES = os.path.join("variables", "variables")
VOCAB_ASSET = os.path.join("assets", "vocab.txt")
METADATA_FILES = ("keras_metadata.pb", "saved_model.pb")  # Keras >= 2.5 writes the former
DO_LOWER_CASE_KEY = "do_lower_case/.ATTRIBUTES/VARIABLE_VALUE"
HEAD_SIZE = 64  # hidden_size / num_attention_heads of every BERT google released

_ENCODER_CLASS = re.compile(r'"class_name": "(Text>\w*(?:Encoder|BERT)\w*)", "config": ')


def read_tf_hub(path, bert_config_file=None, vocab_file=None, do_lower_case=None) -> Weights:
    prefix = os.path.join(path, VARIABLES)
    if not tf.io.gfile.exists(prefix + ".index"):
        raise ValueError(f"--input {path}: not a SavedModel directory (no {VARIABLES}.index); "
                         f"expected a TF Hub BERT encoder, e.g. bert_en_uncased_L-12_H-768_A-12")
    source = f"--input {path}"
    variables = model_garden.object_graph_variables(prefix)  # none in a TF1 Hub module
    if variables:
        weights = _read_tf2(path, prefix, variables, bert_config_file, source)
    else:
        weights = _read_tf1(prefix, bert_config_file, source)
    vocab_file, recorded = _vocab(path, prefix, vocab_file, source)
    if do_lower_case is None and recorded is not None:
        do_lower_case = recorded
        weights.notes.append(f"do_lower_case={recorded}, as the SavedModel records it")
    weights.vocab_file, weights.do_lower_case = vocab_and_case(
        vocab_file, do_lower_case, weights.notes, path)
    return weights


# === TF2 layout: the Model Garden's names ===

def _read_tf2(path, prefix, variables, bert_config_file, source):
    if bert_config_file:
        config, notes = model_garden.config_from_bert_config(bert_config_file)
    else:
        config, notes = _config_from_metadata(path, prefix, variables, source)
    tensors, names, skipped, more, task, labels = model_garden.read_model_garden_variables(
        prefix, variables, config, source)
    return Weights(config, tensors, skipped, None, None, [n for n in notes + more if n], names,
                   task=task, labels=labels)


def _metadata_texts(path):
    """The text of each Keras metadata file the SavedModel at `path` has (its layers' configs
    are JSON inside the protos' bytes)."""
    for name in METADATA_FILES:
        file = os.path.join(path, name)
        if tf.io.gfile.exists(file):
            yield io.read_bytes(file).decode("utf-8", errors="replace")


def encoder_metadata(path) -> tuple[str, dict] | None:
    """(class name, config) of the Keras encoder layer the SavedModel's metadata describes."""
    for text in _metadata_texts(path):
        match = _ENCODER_CLASS.search(text)
        if match:
            config, _ = json.JSONDecoder().raw_decode(text, match.end())
            return match.group(1), config
    return None


def _config_from_metadata(path, prefix, variables, source):
    found = encoder_metadata(path)
    if found is None:
        config = _config_from_shapes(prefix, variables, source)
        return config, ["the SavedModel has no Keras metadata: settings read from the "
                        "variables' shapes, activation taken as the Model Garden's gelu (the "
                        "tanh approximation); give --bert_config_file if it is not"]
    kind, values = found
    if kind not in ("Text>BertEncoder", "Text>BertEncoderV2"):
        raise ValueError(f"{source}: its encoder is a {kind.removeprefix('Text>')}; bert_tf "
                         f"converts BERT encoders (BertEncoder, BertEncoderV2). If it is a BERT "
                         f"under another class name, give --bert_config_file: its weights are "
                         f"then read as a BERT's, and any that are not are named")
    model_garden.refuse_unsupported(values, source)
    initializer = (values.get("initializer") or {}).get("config", {})
    act = values.get("inner_activation", values.get("activation"))
    config = BertConfig(
        vocab_size=values["vocab_size"], hidden_size=values["hidden_size"],
        num_hidden_layers=values["num_layers"],
        num_attention_heads=values["num_attention_heads"],
        intermediate_size=values.get("inner_dim", values.get("intermediate_size")),
        hidden_act=model_garden.activation(act if isinstance(act, str) else json.dumps(act),
                                           source),
        hidden_dropout_prob=values.get("output_dropout", 0.1),
        attention_probs_dropout_prob=values.get("attention_dropout", 0.1),
        max_position_embeddings=values.get("max_sequence_length", 512),
        type_vocab_size=values.get("type_vocab_size", 2),
        initializer_range=initializer.get("stddev", 0.02))
    return config, [model_garden.gelu_note(config.hidden_act)]


def _config_from_shapes(prefix, variables, source):
    """A TF2 SavedModel's settings from its variables' shapes (the query kernel is
    [H, heads, head size])."""
    stored = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    shapes = {}
    for name, key in variables.items():
        mapped = model_garden.google_name(name)
        if mapped:
            shapes[mapped[0]] = stored[key]
    query = shapes.get("bert/encoder/layer_0/attention/self/query/kernel")
    if query is None or len(query) != 3:
        raise ValueError(f"{source}: no Model Garden BERT variables (such as "
                         f"transformer/layer_0/self_attention/query/kernel) in its variables")
    return _shape_config(shapes, heads=query[1], act="gelu_new")


def _shape_config(shapes, heads, act):
    V, H = shapes["bert/embeddings/word_embeddings"]  # noqa: N806
    layers = {int(m.group(1)) for n in shapes
              if (m := re.match(r"bert/encoder/layer_(\d+)/", n))}
    return BertConfig(
        vocab_size=V, hidden_size=H, num_hidden_layers=len(layers), num_attention_heads=heads,
        intermediate_size=shapes["bert/encoder/layer_0/intermediate/dense/kernel"][-1],
        hidden_act=act,
        max_position_embeddings=shapes["bert/embeddings/position_embeddings"][0],
        type_vocab_size=shapes["bert/embeddings/token_type_embeddings"][0])


# === TF1 Hub layout: google's names ===

def _read_tf1(prefix, bert_config_file, source):
    reader = tf.train.load_checkpoint(prefix)
    shapes = reader.get_variable_to_shape_map()
    if "bert/embeddings/word_embeddings" not in shapes:
        raise ValueError(f"{source}: neither a TF2 SavedModel with the Model Garden's BERT "
                         f"variables nor a TF1 Hub module with google-research/bert's (such as "
                         f"bert/embeddings/word_embeddings); found e.g. {sorted(shapes)[:3]}")
    if bert_config_file:
        config, notes = model_garden.config_from_bert_config(bert_config_file)
    else:
        H = shapes["bert/embeddings/word_embeddings"][1]  # noqa: N806
        if H % HEAD_SIZE:
            raise ValueError(f"{source}: hidden size {H} is not a multiple of {HEAD_SIZE}, so "
                             f"the number of attention heads cannot be inferred; give "
                             f"--bert_config_file")
        config = _shape_config(shapes, heads=H // HEAD_SIZE, act="gelu_new")
        notes = [f"settings read from the variables' shapes; num_attention_heads="
                 f"{config.num_attention_heads} taken as hidden_size / {HEAD_SIZE} (google's "
                 f"BERTs); activation: google-research/bert's gelu (the tanh approximation); "
                 f"give --bert_config_file if either is not so"]
    expected = google_shapes(config)
    names = sorted(shapes)
    tensors = {n: np.asarray(reader.get_tensor(n), np.float32) for n in names if n in expected}
    return Weights(config, tensors, [n for n in names if n not in expected], None, None,
                   [n for n in notes if n])


# === Vocab and casing ===

def _vocab(path, prefix, vocab_file, source):
    """(vocab file, do_lower_case recorded by the SavedModel or None). --vocab_file may name
    a vocab file or a preprocessor SavedModel directory."""
    recorded = None
    if vocab_file and tf.io.gfile.isdir(vocab_file):  # the companion preprocessor
        found = encoder_metadata_lower_case(vocab_file)
        vocab_file = _asset_vocab(vocab_file, f"--vocab_file {vocab_file}")
        return vocab_file, found
    reader = tf.train.load_checkpoint(prefix)
    if reader.has_tensor(DO_LOWER_CASE_KEY):
        recorded = bool(reader.get_tensor(DO_LOWER_CASE_KEY))
    return vocab_file or _asset_vocab(path, source), recorded


def _asset_vocab(path, source):
    vocab = os.path.join(path, VOCAB_ASSET)
    if not tf.io.gfile.exists(vocab):
        raise ValueError(f"{source}: no {VOCAB_ASSET} in the SavedModel; give --vocab_file "
                         f"(a vocab.txt, or the directory of its preprocessor SavedModel)")
    return vocab


def encoder_metadata_lower_case(path):
    """The `lower_case` a preprocessor SavedModel's BertTokenizer layer records, or None."""
    for text in _metadata_texts(path):
        match = re.search(r'"lower_case": (true|false)', text)
        if match:
            return match.group(1) == "true"
    return None

