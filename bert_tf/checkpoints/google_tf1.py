"""google-research/bert TF1 checkpoints: `bert_model.ckpt` under google's variable names, with
bert_config.json and vocab.txt beside it. Read by name (the TF1 graph is not needed), written as
TF1's `tf.compat.v1.train.Saver` writes them.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf

from bert_tf import io, run_dir
from bert_tf.checkpoints.names import ENCODER, Weights, google_shapes, group, vocab_and_case
from bert_tf.config import BertConfig
from bert_tf.tasks import with_google_head

# google's modeling.py computes "gelu" with the tanh approximation; our "gelu" is exact.
_GOOGLE_GELU = "gelu_new"


def find_checkpoint_prefix(path: str) -> str:
    """A checkpoint prefix from a prefix, its .index file, or a directory holding one checkpoint
    (google's releases have no `checkpoint` state file)."""
    prefix = path.removesuffix(".index")
    if run_dir.is_checkpoint(prefix):
        return prefix
    if tf.io.gfile.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest:
            return latest
        indexes = tf.io.gfile.glob(os.path.join(path, "*.index"))
        if len(indexes) != 1:
            raise ValueError(f"--input {path}: expected one checkpoint (a *.index file) in the "
                             f"directory, found {len(indexes)}")
        return indexes[0].removesuffix(".index")
    raise ValueError(f"--input {path}: no checkpoint there (no {prefix}.index)")


def read_google_tf1(path, bert_config_file=None, vocab_file=None, do_lower_case=None) -> Weights:
    """A google-research/bert checkpoint (bert_model.ckpt) with bert_config.json and vocab.txt
    beside it, read by name; the TF1 graph is not needed."""
    prefix = find_checkpoint_prefix(path)
    # the files beside what the user named: the directory given, or the checkpoint's own
    directory = os.path.dirname(prefix) if run_dir.is_checkpoint(
        path.removesuffix(".index")) else path
    config = BertConfig.from_json_file(bert_config_file
                                       or os.path.join(directory, "bert_config.json"))
    notes = []
    if config.hidden_act == "gelu":
        config = dataclasses.replace(config, hidden_act=_GOOGLE_GELU)
        notes.append("hidden_act: google-research/bert computes 'gelu' with the tanh "
                     f"approximation; the converted config says '{_GOOGLE_GELU}' (the same "
                     f"function), so outputs match the original")
    reader = run_dir.checkpoint_reader(prefix)
    shapes = reader.get_variable_to_shape_map()
    names = sorted(shapes)
    spec = with_google_head(shapes)  # run_classifier's head, run_squad's, ...
    task, labels = spec and spec.name, []
    if spec and spec.labelled:
        labels_file = os.path.join(directory, "labels.json")
        count = shapes[spec.google_head + "weights"][0]
        labels = (io.read_json(labels_file) if tf.io.gfile.exists(labels_file)
                  else [f"LABEL_{i}" for i in range(count)])
    expected = google_shapes(config, task, len(labels))
    tensors = {n: np.asarray(reader.get_tensor(n), np.float32) for n in names if n in expected}
    if not any(group(n) == ENCODER for n in tensors):
        raise ValueError(f"--input {prefix}: no google-research/bert variables (such as "
                         f"bert/embeddings/word_embeddings) among its {len(names)}, e.g. "
                         f"{names[:3]}; is --input_format right?")
    vocab_file, do_lower_case = vocab_and_case(
        vocab_file or os.path.join(directory, "vocab.txt"), do_lower_case, notes, prefix)
    return Weights(config, tensors, [n for n in names if n not in expected], vocab_file,
                   do_lower_case, notes, task=task, labels=labels)


def write_google_tf1(tensors, config, directory, labels=()):
    """bert_model.ckpt under google's names, as TF1 `tf.compat.v1.train.Saver` writes it,
    google's bert_config.json, and a tagger's labels.json."""
    if labels:
        io.write_json(os.path.join(directory, "labels.json"), list(labels))
    with tf.Graph().as_default():
        variables, feeds, assigns = [], {}, []
        for name, value in tensors.items():
            variable = tf.compat.v1.get_variable(name, value.shape, tf.float32, use_resource=False)
            placeholder = tf.compat.v1.placeholder(tf.float32, value.shape)
            assigns.append(tf.compat.v1.assign(variable, placeholder))
            variables.append(variable)
            feeds[placeholder] = value
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session() as session:
            session.run(assigns, feed_dict=feeds)
            saver.save(session, os.path.join(directory, "bert_model.ckpt"),
                       write_meta_graph=False, write_state=False)
    google_act = "gelu" if config.hidden_act.startswith("gelu") else config.hidden_act
    dataclasses.replace(config, hidden_act=google_act).to_json_file(
        os.path.join(directory, "bert_config.json"))
    if config.hidden_act == "gelu":
        return ["hidden_act: google-research/bert computes 'gelu' with the tanh approximation; "
                "this model was trained with the exact GELU (outputs differ by about 1e-3)"]
    return []
