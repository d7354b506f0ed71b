"""Reading and writing each checkpoint format to and from `checkpoints.Weights`.

    read_google_tf1 / write_google_tf1   bert_model.ckpt under google's names, bert_config.json
    read_huggingface / write_huggingface config.json, model.safetensors (numpy API), vocab.txt
    read_bert_tf / write_bert_tf         our tf.train.Checkpoint and run-directory files

Readers take (path, bert_config_file, vocab_file, do_lower_case), any of the last three None for
"beside the checkpoint / as recorded / inferred", and return `Weights`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

import numpy as np

from bert_tf import features
from bert_tf.checkpoints import (HF_ALIASES, HF_TIED, ENCODER, Weights, config_from_huggingface,
                                 config_to_huggingface, google_shapes, group, huggingface_name,
                                 pretrainer_tensors, vocab_and_case)
from bert_tf.config import BertConfig

# === google-research/bert TF1 checkpoints ===

# google's modeling.py computes "gelu" with the tanh approximation; our "gelu" is exact.
_GOOGLE_GELU = "gelu_new"


def find_checkpoint_prefix(path: str) -> str:
    """A checkpoint prefix from a prefix, its .index file, or a directory holding one checkpoint
    (google's releases have no `checkpoint` state file)."""
    import tensorflow as tf

    if tf.io.gfile.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest:
            return latest
        indexes = tf.io.gfile.glob(os.path.join(path, "*.index"))
        if len(indexes) != 1:
            raise ValueError(f"--input {path}: expected one checkpoint (a *.index file) in the "
                             f"directory, found {len(indexes)}")
        return indexes[0].removesuffix(".index")
    prefix = path.removesuffix(".index")
    if not tf.io.gfile.exists(prefix + ".index"):
        raise ValueError(f"--input {path}: no checkpoint there (no {prefix}.index)")
    return prefix


def read_google_tf1(path, bert_config_file=None, vocab_file=None, do_lower_case=None) -> Weights:
    """A google-research/bert checkpoint (bert_model.ckpt) with bert_config.json and vocab.txt
    beside it, read by name; the TF1 graph is not needed."""
    import tensorflow as tf

    prefix = find_checkpoint_prefix(path)
    directory = path if tf.io.gfile.isdir(path) else os.path.dirname(prefix)
    config = BertConfig.from_json_file(bert_config_file
                                       or os.path.join(directory, "bert_config.json"))
    notes = []
    if config.hidden_act == "gelu":
        config = dataclasses.replace(config, hidden_act=_GOOGLE_GELU)
        notes.append("hidden_act: google-research/bert computes 'gelu' with the tanh "
                     f"approximation; the converted config says '{_GOOGLE_GELU}' (the same "
                     f"function), so outputs match the original")
    expected = google_shapes(config)
    reader = tf.train.load_checkpoint(prefix)
    names = sorted(reader.get_variable_to_shape_map())
    tensors = {n: np.asarray(reader.get_tensor(n), np.float32) for n in names if n in expected}
    if not any(group(n) == ENCODER for n in tensors):
        raise ValueError(f"--input {prefix}: no google-research/bert variables (such as "
                         f"bert/embeddings/word_embeddings) among its {len(names)}, e.g. "
                         f"{names[:3]}; is --input_format right?")
    vocab_file, do_lower_case = vocab_and_case(
        vocab_file or os.path.join(directory, "vocab.txt"), do_lower_case, notes, prefix)
    return Weights(config, tensors, [n for n in names if n not in expected], vocab_file,
                   do_lower_case, notes)


def write_google_tf1(tensors, config, directory):
    """bert_model.ckpt under google's names, as TF1 `tf.compat.v1.train.Saver` writes it, and
    google's bert_config.json."""
    import tensorflow as tf

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


# === Hugging Face safetensors ===

def _safetensors_files(directory):
    import tensorflow as tf

    single = os.path.join(directory, "model.safetensors")
    index = single + ".index.json"
    if tf.io.gfile.exists(single):
        return [single]
    if tf.io.gfile.exists(index):
        with open(index, encoding="utf-8") as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        return [os.path.join(directory, shard) for shard in shards]
    others = [n for n in ("pytorch_model.bin", "tf_model.h5") if tf.io.gfile.exists(
        os.path.join(directory, n))]
    raise ValueError(f"--input {directory}: no model.safetensors (or its index)"
                     + (f"; it has {others[0]}, which needs torch to read: save it again with "
                        f"transformers' save_pretrained(), which writes safetensors"
                        if others else ""))


def read_huggingface(path, bert_config_file=None, vocab_file=None, do_lower_case=None) -> Weights:
    """A Hugging Face BERT directory: config.json, model.safetensors, vocab.txt (and
    tokenizer_config.json), as BertModel or BertFor* (with its `bert.` prefix) saves it."""
    import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy: safetensors then reads BF16)
    from safetensors.numpy import load_file

    config_path = bert_config_file or os.path.join(path, "config.json")
    try:
        with open(config_path, encoding="utf-8") as f:
            config = config_from_huggingface(json.load(f), config_path)
    except FileNotFoundError:
        raise ValueError(f"--input {path}: no config.json") from None
    arrays = {}
    for file in _safetensors_files(path):
        arrays.update(load_file(file))
    prefix = "bert." if any(n.startswith("bert.") for n in arrays) else ""
    expected = google_shapes(config)
    google_of = {}
    for name in expected:
        hf, transposed = huggingface_name(name, prefix)
        google_of[hf] = (name, transposed)
    tensors, skipped, source_names = {}, [], {}
    for name in sorted(arrays):
        canonical = name
        for pattern, replacement in HF_ALIASES:
            canonical = re.sub(pattern, replacement, canonical)
        if canonical in google_of:
            google, transposed = google_of[canonical]
            value = arrays[name].T if transposed else arrays[name]
            tensors[google] = np.ascontiguousarray(value, np.float32)
            source_names[google] = name
        elif name not in HF_TIED:
            skipped.append(name)
    for name, tied_to in HF_TIED.items():  # tied copies must equal what they are tied to
        if name not in arrays:
            continue
        if tied_to not in tensors and tied_to.startswith("cls/"):
            tensors[tied_to] = np.asarray(arrays[name], np.float32)
        elif tied_to in tensors and not np.array_equal(arrays[name], tensors[tied_to]):
            raise ValueError(f"--input {path}: {name} differs from {source_names[tied_to]}; "
                             f"bert_tf ties the masked-LM decoder to the word embeddings")
        skipped.append(f"{name} (tied)")
    tokenizer_config = os.path.join(path, "tokenizer_config.json")
    if do_lower_case is None and os.path.exists(tokenizer_config):
        with open(tokenizer_config, encoding="utf-8") as f:
            do_lower_case = json.load(f).get("do_lower_case")
    notes = []
    vocab_file, do_lower_case = vocab_and_case(
        vocab_file or os.path.join(path, "vocab.txt"), do_lower_case, notes, path)
    return Weights(config, tensors, skipped, vocab_file, do_lower_case, notes, source_names)


def write_huggingface(tensors, config, vocab, do_lower_case, directory):
    """config.json, model.safetensors, vocab.txt, tokenizer_config.json for transformers'
    BertForPreTraining (BertModel loads it too, dropping the heads)."""
    from safetensors.numpy import save_file

    arrays = {}
    for name, value in tensors.items():
        hf, transposed = huggingface_name(name)
        arrays[hf] = np.ascontiguousarray(value.T if transposed else value)
    save_file(arrays, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
    if config.hidden_act == "gelu_tanh":  # the same function under a name transformers knows
        config = dataclasses.replace(config, hidden_act="gelu_new")
    features.write_json_atomically(os.path.join(directory, "config.json"),
                                   config_to_huggingface(config, pad_token_id=vocab.pad_id))
    features.write_json_atomically(os.path.join(directory, "tokenizer_config.json"),
                                   {"tokenizer_class": "BertTokenizer",
                                    "do_lower_case": do_lower_case, "strip_accents": None,
                                    "tokenize_chinese_chars": True,
                                    "model_max_length": config.max_position_embeddings})



# === bert_tf checkpoints ===

def read_bert_tf(path, bert_config_file=None, vocab_file=None, do_lower_case=None) -> Weights:
    """A bert_tf checkpoint (or a run directory's latest) with the run directory's
    bert_config.json, vocab.txt and recorded lower-casing."""
    import tensorflow as tf

    from bert_tf.pretraining_model import build_pretrainer
    from bert_tf.training import load_model_weights, run_directory_files

    checkpoint = (tf.train.latest_checkpoint(path) if tf.io.gfile.isdir(path)
                  else path.removesuffix(".index"))
    if not checkpoint:
        raise ValueError(f"--input {path}: no checkpoint in this directory")
    run_config, run_vocab, run_lower = run_directory_files(os.path.dirname(checkpoint))
    config = BertConfig.from_json_file(bert_config_file or run_config)
    pretrainer = build_pretrainer(config)
    load_model_weights(pretrainer, checkpoint, flag="--input")
    notes = []
    vocab_file, do_lower_case = vocab_and_case(
        vocab_file or run_vocab, run_lower if do_lower_case is None else do_lower_case, notes,
        checkpoint)
    skipped = [name for name, _ in tf.train.list_variables(checkpoint)
               if not name.startswith(("model/", "_CHECKPOINTABLE_OBJECT_GRAPH"))]
    return Weights(config, pretrainer_tensors(pretrainer), skipped, vocab_file, do_lower_case,
                   notes)


def write_bert_tf(pretrainer, directory, do_lower_case, converted_from):
    """ckpt-0 (model only, as `--init_checkpoint` reads it) and the run directory's files."""
    import tensorflow as tf

    from bert_tf import features

    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=pretrainer), directory, 1)
    manager.save(checkpoint_number=0)  # relative paths in `checkpoint`: the directory may move
    pretrainer.config.to_json_file(os.path.join(directory, "bert_config.json"))
    features.write_json_atomically(os.path.join(directory, "run_config.json"),
                                   {"do_lower_case": do_lower_case,
                                    "converted_from": converted_from})
