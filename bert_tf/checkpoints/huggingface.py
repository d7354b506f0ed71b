"""Hugging Face BERT directories: config.json, model.safetensors (or its shards), vocab.txt (or
a fast tokenizer's tokenizer.json alone) and tokenizer_config.json, as transformers' BertModel or BertFor* save them. Read and written with
safetensors' numpy API: no torch.
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np
import tensorflow as tf

from bert_tf import io
from bert_tf.checkpoints.names import (HF_ALIASES, HF_TIED, POOLER, Weights,
                                       config_from_huggingface, config_to_huggingface,
                                       google_shapes, group, huggingface_name,
                                       task_from_huggingface, vocab_and_case)
from bert_tf.tasks import spec_for


def _weight_files(directory):
    """model.safetensors or its shards; else the tf_model.h5 of transformers' TF classes."""
    single = os.path.join(directory, "model.safetensors")
    index = single + ".index.json"
    if tf.io.gfile.exists(single):
        return [single]
    if tf.io.gfile.exists(index):
        weight_map = io.read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError(f"{index}: no weight_map")
        return [io.file_in(directory, shard, index)
                for shard in sorted(set(weight_map.values()), key=str)]
    if tf.io.gfile.exists(os.path.join(directory, TF_WEIGHTS)):
        return [os.path.join(directory, TF_WEIGHTS)]
    torch_only = tf.io.gfile.exists(os.path.join(directory, "pytorch_model.bin"))
    raise ValueError(f"--input {directory}: no model.safetensors (or its index)"
                     + ("; it has pytorch_model.bin, which needs torch to read: save it again "
                        "with transformers' save_pretrained(), which writes safetensors"
                        if torch_only else ""))


# What transformers' TensorFlow classes (TFBertModel, TFBertFor*; removed in transformers 5)
# saved with save_pretrained(): Keras 2 HDF5 weights under TensorFlow variable names.
TF_WEIGHTS = "tf_model.h5"


def _tf_h5_arrays(path) -> dict:
    """tf_model.h5 -> arrays under transformers' PyTorch names and layouts: the layer groups
    Keras 2 wrote (`layer_names`, each with its `weight_names`); a variable name such as
    tf_bert_for_sequence_classification/bert/encoder/layer_._0/attention/self/query/kernel:0
    loses its model scope and becomes bert.encoder.layer.0.attention.self.query.weight, a
    kernel transposed to torch's [out, in] (older releases stored the attention kernels as
    [H, heads, head size]: flattened first)."""
    import h5py

    arrays = {}
    with tf.io.gfile.GFile(path, "rb") as f, h5py.File(f, "r") as h5:
        for layer in h5.attrs.get("layer_names", []):
            group = h5[layer.decode() if isinstance(layer, bytes) else layer]
            for weight in group.attrs.get("weight_names", []):
                weight = weight.decode() if isinstance(weight, bytes) else weight
                name, value = _torch_name_and_value(weight, np.asarray(group[weight]))
                arrays[name] = value
    if not arrays:
        raise ValueError(f"--input {path}: no Keras weights in it (no layer_names)")
    return arrays


def _torch_name_and_value(tf_name, value):
    parts = tf_name.removesuffix(":0").replace("_._", "/").split("/")[1:]  # no model scope
    name = ".".join(parts).replace("mlm___cls", "cls").replace("nsp___cls", "cls")
    last = parts[-1]
    if last == "kernel":
        if value.ndim == 3:  # EinsumDense: [H, N, d] in, [N, d, H] out
            value = value.reshape(-1, value.shape[-1]) if "attention.output" in name else \
                value.reshape(value.shape[0], -1)
        return name.removesuffix("kernel") + "weight", value.T
    if value.ndim == 2 and last == "bias":
        value = value.reshape(-1)
    renamed = {"gamma": "weight", "beta": "bias", "embeddings": "weight"}.get(last, last)
    return name.removesuffix(last) + renamed, value


def load_safetensors(path) -> dict:
    """Every array of a Hugging Face directory's model.safetensors (or its shards, or its
    tf_model.h5) by its own name; a missing or damaged file is an error naming it."""
    import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy: safetensors then reads BF16)
    from safetensors.numpy import load, load_file

    arrays = {}
    for file in _weight_files(path):
        if file.endswith(TF_WEIGHTS):
            arrays.update(_tf_h5_arrays(file))
            continue
        try:
            if io.is_local(file):
                arrays.update(load_file(file))
            else:  # gs://: safetensors reads local files or bytes
                with tf.io.gfile.GFile(file, "rb") as f:
                    arrays.update(load(f.read()))
        except (tf.errors.NotFoundError, FileNotFoundError):
            raise ValueError(f"--input {path}: {file} is missing") from None
        except Exception as e:  # safetensors' SafetensorError: truncated, bad header, ...
            if type(e).__name__ != "SafetensorError":
                raise
            raise ValueError(f"--input {file}: not a complete safetensors file ({e})") from None
    return arrays


def read_huggingface(path, bert_config_file=None, vocab_file=None, do_lower_case=None) -> Weights:
    """A Hugging Face BERT directory: config.json, model.safetensors, vocab.txt (and
    tokenizer_config.json), as BertModel or BertFor* (with its `bert.` prefix) saves it."""
    config_path = bert_config_file or os.path.join(path, "config.json")
    try:
        values = io.read_json(config_path)
    except tf.errors.NotFoundError:
        raise ValueError(f"--input {path}: no config.json") from None
    config = config_from_huggingface(values, config_path)
    task, labels = task_from_huggingface(values)
    arrays = load_safetensors(path)
    prefix = "bert." if any(n.startswith("bert.") for n in arrays) else ""
    expected = google_shapes(config, task, len(labels))
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
            _check_float(arrays[name], name, path)
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
    if do_lower_case is None and tf.io.gfile.exists(tokenizer_config):
        do_lower_case = io.read_json(tokenizer_config).get("do_lower_case")
    notes = []
    if vocab_file is None:
        vocab_file = os.path.join(path, "vocab.txt")
        if not tf.io.gfile.exists(vocab_file) and tf.io.gfile.exists(
                os.path.join(path, TOKENIZER_JSON)):
            vocab_file, lower = vocab_from_tokenizer_json(os.path.join(path, TOKENIZER_JSON))
            if do_lower_case is None:
                do_lower_case = lower
            notes.append(f"vocab read from {TOKENIZER_JSON} (the directory has no vocab.txt)")
    vocab_file, do_lower_case = vocab_and_case(vocab_file, do_lower_case, notes, path)
    return Weights(config, tensors, skipped, vocab_file, do_lower_case, notes, source_names,
                   task, labels)


TOKENIZER_JSON = "tokenizer.json"  # the `tokenizers` library's file: a fast tokenizer alone


def vocab_from_tokenizer_json(path):
    """The WordPiece vocab of a `tokenizers` tokenizer.json (saved by a fast tokenizer, often
    without vocab.txt) as a vocab.txt in the temp folder (named by its content, so a second
    read reuses it), and its normalizer's lower-casing (None when it has no BertNormalizer)."""
    import hashlib
    import tempfile

    values = io.read_json(path)
    model = values.get("model") or {}
    if model.get("type") != "WordPiece" or not isinstance(model.get("vocab"), dict):
        raise ValueError(f"{path}: not a WordPiece tokenizer (model type "
                         f"{model.get('type')!r}); give --vocab_file")
    by_id = sorted((index, token) for token, index in model["vocab"].items())
    if [index for index, _ in by_id] != list(range(len(by_id))):
        raise ValueError(f"{path}: the WordPiece ids are not 0..{len(by_id) - 1} without gaps")
    text = "".join(token + "\n" for _, token in by_id)
    normalizer = values.get("normalizer") or {}
    lower = normalizer.get("lowercase") if normalizer.get("type") == "BertNormalizer" else None
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    vocab_file = os.path.join(tempfile.gettempdir(), f"bert_tf_vocab_{digest}.txt")
    if not os.path.exists(vocab_file):
        io.write_file(vocab_file, text)
    return vocab_file, lower


def _check_float(array, name, path):
    """Weights are floats: an integer or quantized (int8) tensor would be cast to garbage."""
    import ml_dtypes

    if array.dtype not in (np.float32, np.float16, np.float64, ml_dtypes.bfloat16):
        raise ValueError(f"--input {path}: tensor {name} is {array.dtype}; bert_tf reads float "
                         f"weights (float32, float16, bfloat16): dequantize the model first")


def write_huggingface(tensors, config, vocab, do_lower_case, directory, task=None, labels=()):
    """config.json, model.safetensors, tokenizer_config.json for transformers'
    BertForPreTraining (BertModel loads it too, dropping the heads), or for
    BertForSequenceClassification, or BertForQuestionAnswering / BertForTokenClassification,
    which have no pooler."""
    from safetensors.numpy import save

    arrays = {}
    for name, value in tensors.items():
        if not spec_for(task).pooled and group(name) == POOLER:
            continue
        hf, transposed = huggingface_name(name)
        arrays[hf] = np.ascontiguousarray(value.T if transposed else value)
    io.write_file(os.path.join(directory, "model.safetensors"),
                  save(arrays, metadata={"format": "pt"}))
    if config.hidden_act == "gelu_tanh":  # the same function under a name transformers knows
        config = dataclasses.replace(config, hidden_act="gelu_new")
    io.write_json(os.path.join(directory, "config.json"),
                  config_to_huggingface(config, vocab.pad_id, task, labels))
    write_tokenizer_config(directory, do_lower_case, config.max_position_embeddings)


def write_tokenizer_config(directory, do_lower_case, max_length):
    """tokenizer_config.json: transformers' BertTokenizer of the vocab.txt beside it (which the
    caller copies), cased or not, for inputs of up to `max_length` tokens."""
    io.write_json(os.path.join(directory, "tokenizer_config.json"),
                  {"tokenizer_class": "BertTokenizer", "do_lower_case": do_lower_case,
                   "strip_accents": None, "tokenize_chinese_chars": True,
                   "model_max_length": max_length})
