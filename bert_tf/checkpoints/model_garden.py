"""TensorFlow Model Garden (tf-models-official) BERTs: TF2 object-based checkpoints of
`BertEncoder` / `BertEncoderV2`, `BertPretrainerV2` with its heads and a finetuned
`BertClassifier`, with their bert_config.json or the experiment's params.yaml beside them.

A TF2 checkpoint keys its variables by object path (`model/layer_with_weights-0/...`), which
changes with how the model was wrapped; the object graph stored in the checkpoint also records
each variable's own name (`transformer/layer_3/self_attention/query/kernel`), which does not.
Those names are read here and mapped to google's by `MODEL_GARDEN_NAMES`; the Model Garden
is not needed to read them. The same names are inside a TF Hub SavedModel exported from the
Model Garden (bert_tf.checkpoints.tf_hub).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

import numpy as np
import tensorflow as tf

from bert_tf import io
from bert_tf.checkpoints.google_tf1 import find_checkpoint_prefix
from bert_tf.checkpoints.names import Weights, vocab_and_case
from bert_tf.config import BertConfig, ConfigError
from bert_tf.tasks import CLASSIFICATION

_LAYER = r"(?:^|/)transformer/layer_(\d+)/"
_HEAD_POOLER, _ENCODER_POOLER = "head pooler", "encoder pooler"

# A Model Garden variable's own name (matched at its end) -> google's name, and how the value
# changes: "in" [H, N, d] -> [H, N*d] (and bias [N, d] -> [N*d]), "out" [N, d, H] -> [N*d, H],
# "T" transposed. First match wins.
MODEL_GARDEN_NAMES = [
    (r"(?:^|/)word_embeddings/embeddings$", "bert/embeddings/word_embeddings", None),
    (r"(?:^|/)position_embedding/embeddings$", "bert/embeddings/position_embeddings", None),
    (r"(?:^|/)type_embeddings/embeddings$", "bert/embeddings/token_type_embeddings", None),
    (r"(?:^|/)embeddings/layer_norm/(gamma|beta)$", r"bert/embeddings/LayerNorm/\1", None),
    (_LAYER + r"self_attention/(query|key|value)/(kernel|bias)$",
     r"bert/encoder/layer_\1/attention/self/\2/\3", "in"),
    (_LAYER + r"self_attention/attention_output/(kernel|bias)$",
     r"bert/encoder/layer_\1/attention/output/dense/\2", "out"),
    (_LAYER + r"self_attention_layer_norm/(gamma|beta)$",
     r"bert/encoder/layer_\1/attention/output/LayerNorm/\2", None),
    (_LAYER + r"intermediate/(kernel|bias)$", r"bert/encoder/layer_\1/intermediate/dense/\2",
     None),
    (_LAYER + r"output/(kernel|bias)$", r"bert/encoder/layer_\1/output/dense/\2", None),
    (_LAYER + r"output_layer_norm/(gamma|beta)$", r"bert/encoder/layer_\1/output/LayerNorm/\2",
     None),
    (r"(?:^|/)pooler_transform/(kernel|bias)$", _ENCODER_POOLER + r"/\1", None),
    (r"(?:^|/)cls/predictions/transform/dense/(kernel|bias)$",
     r"cls/predictions/transform/dense/\1", None),
    (r"(?:^|/)cls/predictions/transform/LayerNorm/(gamma|beta)$",
     r"cls/predictions/transform/LayerNorm/\1", None),
    (r"(?:^|/)cls/predictions/output_bias/bias$", "cls/predictions/output_bias", None),
    # BertPretrainerV2's next-sentence ClassificationHead, then a BertClassifier's head
    (r"(?:^|/)next_sentence/pooler_dense/(kernel|bias)$", _HEAD_POOLER + r"/\1", None),
    (r"(?:^|/)next_sentence/logits/kernel$", "cls/seq_relationship/output_weights", "T"),
    (r"(?:^|/)next_sentence/logits/bias$", "cls/seq_relationship/output_bias", None),
    (r"(?:^|/)sentence_prediction/pooler_dense/(kernel|bias)$", _HEAD_POOLER + r"/\1", None),
    (r"(?:^|/)sentence_prediction/logits/kernel$", "output_weights", "T"),
    (r"(?:^|/)sentence_prediction/logits/bias$", "output_bias", None),
]

# Object-graph entries that are not the model: training state and TF Hub's do_lower_case.
_NOT_MODEL = re.compile(r"^(optimizer|save_counter|global_step|do_lower_case)(/|$)"
                        r"|\.OPTIMIZER_SLOT")


def google_name(name: str):
    """(google name, reshape kind) of a Model Garden variable name, or None."""
    for pattern, replacement, kind in MODEL_GARDEN_NAMES:
        if re.search(pattern, name):
            return re.sub(r".*?" + pattern, replacement, name, count=1), kind
    return None


def object_graph_variables(prefix: str) -> dict:
    """A TF2 checkpoint's variables: own name -> checkpoint key (the first key of a variable
    reached by several paths, such as an embedding tied to an output layer). Empty for a
    name-based (TF1) checkpoint."""
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    reader = tf.train.load_checkpoint(prefix)
    if not reader.has_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"):
        return {}
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    found = {}
    for node in graph.nodes:
        for attribute in node.attributes:
            if not _NOT_MODEL.search(attribute.checkpoint_key):
                found.setdefault(attribute.full_name, attribute.checkpoint_key)
    return found


def read_model_garden_variables(prefix, variables, config: BertConfig, source: str):
    """The google-named tensors of a Model Garden checkpoint (or a SavedModel's variables;
    `variables`: its `object_graph_variables`), its task and labels, the source names,
    skipped names and notes. A variable that is not
    part of a BERT bert_tf holds (another encoder's, another head's) is an error naming it."""
    reader = tf.train.load_checkpoint(prefix)
    H = config.hidden_size  # noqa: N806
    tensors, names, notes = {}, {}, []
    for name, key in sorted(variables.items()):
        mapped = google_name(name)
        if mapped is None:
            raise ValueError(f"{source}: variable {name} ({key}) is not part of a Model Garden "
                             f"BertEncoder, BertPretrainerV2 or BertClassifier that bert_tf "
                             f"can hold; it cannot be converted")
        target, kind = mapped
        if target in tensors:
            raise ValueError(f"{source}: variables {names[target]} and {name} both map to "
                             f"{target}: more than one head of a kind is not supported")
        value = np.asarray(reader.get_tensor(key), np.float32)
        if kind == "in":  # [H, N, d] -> [H, N*d]; its bias [N, d] -> [N*d]
            value = value.reshape(-1) if target.endswith("bias") else value.reshape(H, -1)
        elif kind == "out" and target.endswith("kernel"):  # [N, d, H] -> [N*d, H]
            value = value.reshape(-1, H)
        elif kind == "T":
            value = value.T
        tensors[target], names[target] = value, name
    skipped = _choose_pooler(tensors, names, notes)
    task, labels = None, []
    if "output_weights" in tensors:
        task = CLASSIFICATION
        labels = [f"LABEL_{i}" for i in range(tensors["output_weights"].shape[0])]
        if len(labels) < 2:
            raise ValueError(f"{source}: the classifier head {names['output_weights']} has "
                             f"{len(labels)} output; a Model Garden regression head is not "
                             f"converted")
    return tensors, names, skipped, notes, task, labels


def _choose_pooler(tensors, names, notes):
    """Our pooler from the encoder's pooler_transform, or from a head's own pooler_dense where
    there is one: BertPretrainerV2's next-sentence head (and a BertClassifier with an inner
    layer) trains its own dense layer on [CLS] and leaves the encoder's pooler untouched.
    Returns the skipped source names."""
    def take(kind):
        return {part: (tensors.pop(f"{kind}/{part}"), names.pop(f"{kind}/{part}"))
                for part in ("kernel", "bias") if f"{kind}/{part}" in tensors}

    head, encoder = take(_HEAD_POOLER), take(_ENCODER_POOLER)
    for part, (value, name) in (head or encoder).items():
        tensors[f"bert/pooler/dense/{part}"], names[f"bert/pooler/dense/{part}"] = value, name
    if not (head and encoder):
        return []
    if not all(np.array_equal(head[p][0], encoder[p][0]) for p in encoder):
        notes.append(f"pooler: taken from the head's {head['kernel'][1]} (the layer the Model "
                     f"Garden trains on [CLS]); the encoder's own pooler_transform, which that "
                     f"training leaves as initialised, is skipped (as the Model Garden's TF Hub "
                     f"export with --copy_pooler_dense_to_encoder)")
    return [name for _, name in encoder.values()]


# === Configs ===

# The Model Garden's "gelu" is the tanh approximation (official/modeling/activations/gelu.py).
_ACTIVATIONS = {"gelu": "gelu_new", "Text>gelu": "gelu_new", "relu": "relu"}


def activation(name, source):
    if name not in _ACTIVATIONS:
        raise ValueError(f"{source}: activation {name!r} is not one bert_tf has (it has the "
                         f"Model Garden's {', '.join(_ACTIVATIONS)})")
    return _ACTIVATIONS[name]


def refuse_unsupported(values: dict, source: str):
    """Model Garden encoder settings that give a model bert_tf does not have."""
    for key, fine in (("norm_first", (False, None)), ("output_range", (None,)),
                      ("embedding_layer", (None,))):
        if values.get(key) not in fine:
            raise ValueError(f"{source}: {key}={values[key]!r} is not supported by bert_tf's "
                             f"encoder (it needs {fine[0]!r})")
    width = values.get("embedding_size", values.get("embedding_width"))
    if width not in (None, values.get("hidden_size")):
        raise ValueError(f"{source}: embedding_size={width} differs from hidden_size="
                         f"{values.get('hidden_size')}: factorised embeddings are not supported "
                         f"by bert_tf's encoder")


def config_from_bert_config(path) -> tuple[BertConfig, list]:
    """The Model Garden's legacy bert_config.json: google's keys, plus `embedding_size` and
    `backward_compatible`; its "gelu" is the tanh approximation."""
    try:
        values = json.loads(io.read_text(path))
    except tf.errors.NotFoundError:
        raise ConfigError(f"{path}: no such bert_config.json file") from None
    refuse_unsupported(values, path)
    for key in ("embedding_size", "backward_compatible"):
        values.pop(key, None)
    values["hidden_act"] = activation(values.get("hidden_act"), path)
    return BertConfig.from_dict(values, source=path), [gelu_note(values["hidden_act"])]


def config_from_experiment(path) -> tuple[BertConfig, list]:
    """An experiment's params.yaml (`task.model.encoder`, type bert or bert_v2)."""
    import yaml

    params = yaml.safe_load(io.read_text(path)) or {}
    encoder = (params.get("task") or {}).get("model", {}).get("encoder") or {}
    kind = encoder.get("type", "bert")
    if kind not in ("bert", "bert_v2"):
        raise ValueError(f"{path}: task.model.encoder.type={kind!r}; bert_tf converts the "
                         f"Model Garden's BERT encoders (bert, bert_v2)")
    values = encoder.get(kind) or encoder.get("bert") or {}
    refuse_unsupported(values, path)
    act = activation(values.get("hidden_activation", "gelu"), path)
    mlm = params["task"]["model"].get("mlm_activation", "gelu")
    if activation(mlm, path) != act:
        raise ValueError(f"{path}: task.model.mlm_activation={mlm!r} differs from the "
                         f"encoder's hidden_activation; bert_tf's masked-LM transform uses the "
                         f"encoder's")
    fields = {"vocab_size": "vocab_size", "hidden_size": "hidden_size",
              "num_hidden_layers": "num_layers", "num_attention_heads": "num_attention_heads",
              "intermediate_size": "intermediate_size", "hidden_dropout_prob": "dropout_rate",
              "attention_probs_dropout_prob": "attention_dropout_rate",
              "max_position_embeddings": "max_position_embeddings",
              "type_vocab_size": "type_vocab_size", "initializer_range": "initializer_range"}
    defaults = BertConfig()
    config = dataclasses.replace(defaults, hidden_act=act, **{
        ours: values.get(theirs, getattr(defaults, ours)) for ours, theirs in fields.items()})
    return config, [gelu_note(act)]


def gelu_note(act):
    return ("hidden_act: the Model Garden's 'gelu' is the tanh approximation; the converted "
            f"config says '{act}' (the same function)" if act == "gelu_new" else "")


def read_tf_models(path, bert_config_file=None, vocab_file=None, do_lower_case=None) -> Weights:
    """A Model Garden TF2 checkpoint with bert_config.json or params.yaml and vocab.txt beside
    it (or given)."""
    prefix = find_checkpoint_prefix(path)
    directory = path if tf.io.gfile.isdir(path) else os.path.dirname(prefix)
    if bert_config_file and bert_config_file.endswith((".yaml", ".yml")):
        config, notes = config_from_experiment(bert_config_file)
    elif bert_config_file:
        config, notes = config_from_bert_config(bert_config_file)
    elif tf.io.gfile.exists(os.path.join(directory, "bert_config.json")):
        config, notes = config_from_bert_config(os.path.join(directory, "bert_config.json"))
    elif tf.io.gfile.exists(os.path.join(directory, "params.yaml")):
        config, notes = config_from_experiment(os.path.join(directory, "params.yaml"))
    else:
        raise ValueError(f"--input {path}: no bert_config.json or params.yaml beside it; give "
                         f"--bert_config_file (either kind)")
    variables = object_graph_variables(prefix)
    if not variables:
        raise ValueError(f"--input {prefix}: not a TF2 object-based checkpoint (no object "
                         f"graph); a google-research/bert checkpoint is "
                         f"--input_format=google_tf1")
    tensors, names, skipped, more, task, labels = read_model_garden_variables(
        prefix, variables, config, f"--input {prefix}")
    notes = [n for n in notes + more if n]
    vocab_file, do_lower_case = vocab_and_case(
        vocab_file or os.path.join(directory, "vocab.txt"), do_lower_case, notes, prefix)
    return Weights(config, tensors, skipped, vocab_file, do_lower_case, notes, names,
                   task=task, labels=labels)
