"""keras-hub presets: the directory keras-hub's `save_to_preset` writes and `from_preset` reads.

    config.json           {"registered_name": "keras_hub>BertBackbone", "config": {...}}
    model.weights.h5      the backbone's weights
    tokenizer.json        BertTokenizer's config (lowercase); assets/tokenizer/vocabulary.txt
    metadata.json         keras and keras-hub versions, parameter count
    task.json, task.weights.h5, preprocessor.json
                          a classifier's (BertTextClassifier); labels.json: its label names

Both directions go through keras-hub itself (its BertBackbone, BertTextClassifier and
BertTokenizer build, save and load the files), so what we write is what keras-hub loads; this
module only maps their variables to google's names. keras-hub is needed for this format only:
`pip install keras-hub==0.32.0`.

keras-hub's BertBackbone computes GELU with the tanh approximation whatever the source used: a
preset read here becomes `hidden_act="gelu_tanh"` (exact), and a model trained with the exact
GELU ("gelu") moves to keras-hub with a small difference in its outputs, reported as a note.
Its one `dropout` stands for both of google's dropout rates.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from bert_tf import io
from bert_tf.checkpoints.names import Weights, google_shapes, vocab_and_case
from bert_tf.config import BertConfig, ConfigError
from bert_tf.tasks import CLASSIFICATION, spec_for

BACKBONE = "keras_hub>BertBackbone"
CLASSIFIER = "keras_hub>BertTextClassifier"
MASKED_LM_TASK = "keras_hub>BertMaskedLM"
LABELS_FILE = "labels.json"
TASK_WEIGHTS = "task.weights.h5"  # a task's own (head) weights; keras-hub's name
VOCAB_FILE = os.path.join("assets", "tokenizer", "vocabulary.txt")
_TANH_GELU = ("gelu_new", "gelu_tanh", "gelu_pytorch_tanh")


def _keras_hub(flag):
    try:
        import keras_hub
    except ImportError:
        raise ValueError(f"{flag}=keras_hub needs keras-hub: pip install keras-hub==0.32.0") \
            from None
    return keras_hub


def _backbone_variables(backbone, config) -> dict:
    """google name -> keras-hub BertBackbone variable."""
    layer = backbone.get_layer
    variables = {"bert/embeddings/word_embeddings": layer("token_embedding").embeddings,
                 "bert/embeddings/position_embeddings":
                     layer("position_embedding").position_embeddings,
                 "bert/embeddings/token_type_embeddings": layer("segment_embedding").embeddings,
                 "bert/pooler/dense/kernel": layer("pooled_dense").kernel,
                 "bert/pooler/dense/bias": layer("pooled_dense").bias}
    _norm(variables, "bert/embeddings/LayerNorm", layer("embeddings_layer_norm"))
    for i in range(config.num_hidden_layers):
        block, prefix = layer(f"transformer_layer_{i}"), f"bert/encoder/layer_{i}"
        attention = block._self_attention_layer
        parts = {"attention/self/query": attention.query_dense,
                 "attention/self/key": attention.key_dense,
                 "attention/self/value": attention.value_dense,
                 "attention/output/dense": attention.output_dense,
                 "intermediate/dense": block._feedforward_intermediate_dense,
                 "output/dense": block._feedforward_output_dense}
        for name, dense in parts.items():
            variables[f"{prefix}/{name}/kernel"] = dense.kernel
            variables[f"{prefix}/{name}/bias"] = dense.bias
        _norm(variables, f"{prefix}/attention/output/LayerNorm", block._self_attention_layer_norm)
        _norm(variables, f"{prefix}/output/LayerNorm", block._feedforward_layer_norm)
    return variables


def _norm(variables, name, layer):
    variables[f"{name}/gamma"], variables[f"{name}/beta"] = layer.gamma, layer.beta


def _masked_lm_variables(task) -> dict:
    head = task.masked_lm_head
    variables = {"cls/predictions/transform/dense/kernel": head._intermediate_dense.kernel,
                 "cls/predictions/transform/dense/bias": head._intermediate_dense.bias,
                 "cls/predictions/output_bias": head._bias}
    _norm(variables, "cls/predictions/transform/LayerNorm", head._intermediate_layer_norm)
    return variables


# === Writing ===

def write_keras_hub(tensors, config, vocab_file, do_lower_case, directory, task=None,
                    labels=()) -> list:
    """A keras-hub preset of a pretrained model (BertBackbone and its tokenizer) or a classifier
    (BertTextClassifier with its preprocessor) in `directory`; returns notes for the report."""
    keras_hub = _keras_hub("--output_format")
    holder = spec_for(task).keras_hub
    if holder is None:
        raise ValueError(f"keras-hub has no BERT {task.replace('_', '-')} task to hold this "
                         f"model's head; convert it to huggingface, or convert the pretrained "
                         f"run it was finetuned from")
    if config.layer_norm_eps != 1e-12:
        raise ConfigError(f"layer_norm_eps={config.layer_norm_eps}: keras-hub's BertBackbone "
                          f"fixes it at 1e-12")
    notes = []
    if config.hidden_act not in _TANH_GELU:
        notes.append(f"keras-hub's BertBackbone computes the tanh approximation of GELU; this "
                     f"model was trained with hidden_act={config.hidden_act!r}, so its outputs "
                     f"in keras-hub differ slightly from ours (see docs/checkpoints.md)")
    if config.attention_probs_dropout_prob != config.hidden_dropout_prob:
        notes.append(f"keras-hub has one dropout rate: hidden_dropout_prob "
                     f"({config.hidden_dropout_prob}) is used for attention too")
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=config.vocab_size, num_layers=config.num_hidden_layers,
        num_heads=config.num_attention_heads, hidden_dim=config.hidden_size,
        intermediate_dim=config.intermediate_size, dropout=config.hidden_dropout_prob,
        max_sequence_length=config.max_position_embeddings,
        num_segments=config.type_vocab_size)
    _assign(_backbone_variables(backbone, config), tensors)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=_local_vocab(vocab_file),
                                               lowercase=bool(do_lower_case))
    local = tempfile.mkdtemp(prefix="bert_tf_keras_hub_")
    try:
        preset = os.path.join(local, "preset")
        if holder == CLASSIFIER:
            preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
                tokenizer, sequence_length=config.max_position_embeddings)
            classifier = keras_hub.models.BertTextClassifier(
                backbone, num_classes=len(labels), preprocessor=preprocessor,
                dropout=config.hidden_dropout_prob)
            classifier.output_dense.kernel.assign(tensors["output_weights"].T)
            classifier.output_dense.bias.assign(tensors["output_bias"])
            classifier.save_to_preset(preset)
            io.write_json(os.path.join(preset, LABELS_FILE), list(labels))
        else:
            backbone.save_to_preset(preset)
            tokenizer.save_to_preset(preset)
            notes.append("keras-hub's BertBackbone holds the encoder and the pooler: the "
                         "masked-LM and next-sentence heads are not written")
        _copy_tree(preset, directory)
    finally:
        shutil.rmtree(local, ignore_errors=True)
    return notes


def _assign(variables, tensors):
    for name, variable in variables.items():
        variable.assign(np.reshape(tensors[name], variable.shape).astype(variable.dtype))


def _local_vocab(vocab_file):
    """keras-hub's tokenizer reads a local file: a URL's lines are passed as a list."""
    if io.is_local(vocab_file):
        return vocab_file
    return io.read_text(vocab_file).splitlines()


def _copy_tree(source, target):
    for directory, _, files in os.walk(source):
        relative = os.path.relpath(directory, source)
        destination = target if relative == "." else os.path.join(target, relative)
        tf.io.gfile.makedirs(destination)
        for name in files:
            io.copy_file(os.path.join(directory, name), os.path.join(destination, name))


# === Reading ===

def read_keras_hub(path, bert_config_file=None, vocab_file=None, do_lower_case=None) -> Weights:
    """A keras-hub BERT preset directory: a BertBackbone, with a BertTextClassifier or
    BertMaskedLM task if it has one."""
    keras_hub = _keras_hub("--input_format")
    config_path = bert_config_file or os.path.join(path, "config.json")
    try:
        saved = _json_file(config_path, expected=None)
    except tf.errors.NotFoundError:
        raise ValueError(f"--input {path}: no config.json (not a keras-hub preset)") from None
    if not isinstance(saved, dict) or saved.get("registered_name") != BACKBONE:
        found = saved.get("registered_name") if isinstance(saved, dict) else None
        raise ValueError(f"--input {config_path}: registered_name is {found!r}; bert_tf reads "
                         f"{BACKBONE!r} presets")
    values = saved.get("config", {})
    try:
        config = BertConfig(
            vocab_size=values["vocabulary_size"], hidden_size=values["hidden_dim"],
            num_hidden_layers=values["num_layers"], num_attention_heads=values["num_heads"],
            intermediate_size=values["intermediate_dim"], hidden_act="gelu_tanh",
            hidden_dropout_prob=values.get("dropout", 0.1),
            attention_probs_dropout_prob=values.get("dropout", 0.1),
            max_position_embeddings=values["max_sequence_length"],
            type_vocab_size=values.get("num_segments", 2))
    except KeyError as e:
        raise ConfigError(f"{config_path}: the backbone's config has no {e.args[0]!r}") from None
    staging = None if io.is_local(path) else tempfile.mkdtemp(prefix="bert_tf_keras_hub_")
    try:
        local = path
        if staging:  # keras-hub reads local directories (and its hubs)
            local = os.path.join(staging, "preset")
            _copy_remote(path, local)
        return _read(keras_hub, path, local, config, vocab_file, do_lower_case)
    finally:
        if staging:
            shutil.rmtree(staging, ignore_errors=True)


def _json_file(local_path, preset=None, expected=dict):
    """A preset's JSON file (an `expected`, unless None); a damaged one is an error naming
    it."""
    shown = local_path if preset is None else os.path.join(preset,
                                                           os.path.basename(local_path))
    try:
        values = io.read_json(local_path)
    except json.JSONDecodeError as e:
        raise ValueError(f"--input {shown}: not valid JSON ({e.msg}, line {e.lineno}); the "
                         f"preset is damaged") from None
    if expected is not None and not isinstance(values, expected):
        raise ValueError(f"--input {shown}: expected a JSON {expected.__name__}, got "
                         f"{values!r}"[:300])
    return values


def _check_weights_files(path, local):
    """Each .weights.h5 of the preset opens as HDF5 (a truncated copy names its file)."""
    import h5py

    for name in sorted(os.listdir(local)):
        if name.endswith(".weights.h5"):
            try:
                h5py.File(os.path.join(local, name), "r").close()
            except OSError as e:
                raise ValueError(f"--input {os.path.join(path, name)}: not a readable weights "
                                 f"file ({io.one_line(e)}); the preset is damaged") from None


def _from_preset(kind, local, path):
    """keras-hub's `kind.from_preset`; what it cannot load (weights of other shapes than
    config.json gives, a missing file) is an error naming the preset."""
    try:
        return kind.from_preset(local)
    except (ValueError, OSError, KeyError, AttributeError, TypeError) as e:
        raise ValueError(f"--input {path}: keras-hub could not load the preset "
                         f"({type(e).__name__}: {io.one_line(e)[:300]}); does config.json "
                         f"(vocabulary_size, hidden_dim, ...) match its weights?") from None


def _copy_remote(source, target):
    source = source.rstrip("/")
    for directory, _, files in tf.io.gfile.walk(source):
        destination = os.path.join(target, directory[len(source):].lstrip("/"))
        os.makedirs(destination, exist_ok=True)
        for name in files:
            tf.io.gfile.copy(f"{directory}/{name}", os.path.join(destination, name))


def _read(keras_hub, path, local, config, vocab_file, do_lower_case):
    task, labels, notes, skipped = None, [], [], []
    task_file = os.path.join(local, "task.json")
    task_name = _json_file(task_file, path).get("registered_name") \
        if os.path.exists(task_file) else None
    _check_weights_files(path, local)
    if task_name in (CLASSIFIER, MASKED_LM_TASK) and \
            not os.path.exists(os.path.join(local, TASK_WEIGHTS)):
        # keras-hub would build the task with a random head: only the backbone is real.
        skipped.append(f"{task_name} head (task.json names it, but the preset has no "
                       f"{TASK_WEIGHTS}: its weights were not saved)")
        task_name = None
    if task_name == CLASSIFIER:
        model = _from_preset(keras_hub.models.TextClassifier, local, path)
        backbone, task = model.backbone, CLASSIFICATION
        labels_file = os.path.join(local, LABELS_FILE)
        labels = (_json_file(labels_file, path, expected=None) if os.path.exists(labels_file)
                  else [f"LABEL_{i}" for i in range(model.num_classes)])
        if (not isinstance(labels, list) or len(labels) != model.num_classes
                or not all(isinstance(label, str) and label for label in labels)
                or len(set(labels)) != len(labels)):
            raise ValueError(f"--input {path}: {LABELS_FILE} must list the classifier's "
                             f"{model.num_classes} label names in id order (distinct, "
                             f"non-empty strings), got {labels!r}"[:400])
        variables = {"output_weights": model.output_dense.kernel,
                     "output_bias": model.output_dense.bias}
    elif task_name == MASKED_LM_TASK:
        model = _from_preset(keras_hub.models.MaskedLM, local, path)
        backbone, variables = model.backbone, _masked_lm_variables(model)
        notes.append("keras-hub's BertMaskedLM computes its head's GELU exactly, the encoder's "
                     "with tanh; bert_tf uses hidden_act (gelu_tanh) for both, so masked-LM "
                     "logits differ slightly")
    else:
        backbone, variables = _from_preset(keras_hub.models.Backbone, local, path), {}
        if task_name:
            skipped.append(f"{task_name} (task.json: not a task bert_tf reads; its head)")
    variables.update(_backbone_variables(backbone, config))
    expected = google_shapes(config, task, len(labels))
    tensors = {}
    for name, variable in variables.items():
        value = np.asarray(variable.numpy(), np.float32)
        value = value.T if name == "output_weights" else value
        if value.size != np.prod(expected[name]):
            raise ValueError(f"--input {path}: {variable.path} has shape {value.shape}, but "
                             f"config.json gives {tuple(expected[name])}: does config.json "
                             f"(vocabulary_size, hidden_dim, ...) match its weights?")
        tensors[name] = np.reshape(value, expected[name])
    tokenizer = os.path.join(local, "tokenizer.json")
    if do_lower_case is None and os.path.exists(tokenizer):
        do_lower_case = _json_file(tokenizer, path).get("config", {}).get("lowercase")
    if vocab_file is None:
        vocab_file = os.path.join(path, VOCAB_FILE)
    vocab_file, do_lower_case = vocab_and_case(vocab_file, do_lower_case, notes, path)
    return Weights(config, tensors, skipped, vocab_file, do_lower_case, notes, task=task,
                   labels=[str(label) for label in labels])
