"""THE pretraining TFRecord format: google-research/bert's feature spec, shard names, the manifest.

Every example holds (ints as int64, since tf.Example has no int32):

    input_ids            [max_seq_length]           [CLS] A [SEP] B [SEP], then 0s
    input_mask           [max_seq_length]           1 for real tokens, 0 for padding
    segment_ids          [max_seq_length]           0 for [CLS] A [SEP], 1 for B [SEP]
    masked_lm_positions  [max_predictions_per_seq]  positions of the predicted tokens, then 0s
    masked_lm_ids        [max_predictions_per_seq]  their original ids, then 0s
    masked_lm_weights    [max_predictions_per_seq]  float: 1.0 real prediction, 0.0 padding
    next_sentence_labels [1]                        1 when B is a random segment

A data set is shards `NAME-00000-of-00008.tfrecord` (`.tfrecord.gz` when gzipped) plus
`NAME.manifest.json` and `NAME.vocab.txt` beside them.
"""

import os
import re

import numpy as np
import tensorflow as tf

from bert_tf import io

INT_FEATURES = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids",
                "next_sentence_labels")
FEATURE_NAMES = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions",
                 "masked_lm_ids", "masked_lm_weights", "next_sentence_labels")
MANIFEST_FORMAT = "bert_tf.pretraining_data"
MANIFEST_VERSION = 1


def feature_lengths(max_seq_length, max_predictions_per_seq):
    return {"input_ids": max_seq_length, "input_mask": max_seq_length,
            "segment_ids": max_seq_length, "masked_lm_positions": max_predictions_per_seq,
            "masked_lm_ids": max_predictions_per_seq,
            "masked_lm_weights": max_predictions_per_seq, "next_sentence_labels": 1}


# The Model Garden's create_pretraining_data.py --use_v2_feature_names (its experiments'
# `use_v2_feature_names: true`) stores these two features under the model's input names.
V2_NAMES = {"input_ids": "input_word_ids", "segment_ids": "input_type_ids"}
_ABSENT = -1  # a token or segment id never is


def feature_spec(max_seq_length, max_predictions_per_seq, either_names=False):
    """The `tf.io.parse_example` spec, identical to google-research/bert's run_pretraining; with
    `either_names`, records with the Model Garden's v2 names parse too (the name a record lacks
    reads as -1s: `merge_names` then keeps the one it has)."""
    spec = {name: tf.io.FixedLenFeature([length], tf.int64 if name in INT_FEATURES
                                        else tf.float32)
            for name, length in feature_lengths(max_seq_length, max_predictions_per_seq).items()}
    if either_names:
        for google, v2 in V2_NAMES.items():
            spec[google] = spec[v2] = tf.io.FixedLenFeature(
                [max_seq_length], tf.int64, default_value=[_ABSENT] * max_seq_length)
    return spec


def merge_names(parsed: dict) -> dict:
    """Records parsed with `either_names` -> google's names only. A record with neither name
    keeps -1 ids, which the embedding lookup refuses."""
    parsed = dict(parsed)
    for google, v2 in V2_NAMES.items():
        parsed[google] = tf.maximum(parsed[google], parsed.pop(v2))
    return parsed


def schema(max_seq_length, max_predictions_per_seq):
    """The spec as plain JSON for the manifest."""
    return {name: {"dtype": "int64" if name in INT_FEATURES else "float32", "shape": [length]}
            for name, length in feature_lengths(max_seq_length, max_predictions_per_seq).items()}


def serialize_examples(examples) -> list:
    """google's feature dict of arrays [N, length] -> N serialized tf.train.Examples.

    Encoded by TensorFlow's `encode_proto` op, the whole batch at once; the bytes equal
    `tf.train.Example.SerializeToString(deterministic=True)`, features in sorted order.
    """
    return list(_encode_examples({name: examples[name] for name in FEATURE_NAMES}).numpy())


def _encode_examples(examples):
    n = tf.shape(examples["input_ids"])[0]
    ones = tf.ones([n, 1], tf.int32)
    entries = []
    for name in sorted(examples):  # map entries in key order, as deterministic serialization
        values = examples[name]
        sizes = tf.fill([n, 1], tf.shape(values)[1])
        if name in INT_FEATURES:
            values = tf.io.encode_proto(sizes, [tf.cast(values, tf.int64)], ["value"],
                                        "tensorflow.Int64List")
            feature = tf.io.encode_proto(ones, [values[:, None]], ["int64_list"],
                                         "tensorflow.Feature")
        else:
            values = tf.io.encode_proto(sizes, [tf.cast(values, tf.float32)], ["value"],
                                        "tensorflow.FloatList")
            feature = tf.io.encode_proto(ones, [values[:, None]], ["float_list"],
                                         "tensorflow.Feature")
        entries.append(tf.io.encode_proto(
            tf.ones([n, 2], tf.int32), [tf.fill([n, 1], name), feature[:, None]],
            ["key", "value"], "tensorflow.Features.FeatureEntry"))
    count = len(entries)
    entries = tf.stack(entries, axis=1)  # [N, features]
    features = tf.io.encode_proto(tf.fill([n, 1], count), [entries], ["feature"],
                                  "tensorflow.Features")
    return tf.io.encode_proto(ones, [features[:, None]], ["features"], "tensorflow.Example")


def parse_examples(serialized, max_seq_length, max_predictions_per_seq):
    """Serialized examples [N] -> dict of numpy arrays [N, length] (int64 / float32)."""
    parsed = merge_names(tf.io.parse_example(
        serialized, feature_spec(max_seq_length, max_predictions_per_seq, either_names=True)))
    return {name: np.asarray(value) for name, value in parsed.items()}


def infer_lengths(path):
    """(max_seq_length, max_predictions_per_seq) from the first record of a shard."""
    dataset = tf.data.TFRecordDataset(path, compression_type=compression_type(path))
    for record in dataset.take(1):
        example = tf.train.Example.FromString(record.numpy())
        feature = example.features.feature
        missing = [n for n in FEATURE_NAMES
                   if n not in feature and V2_NAMES.get(n) not in feature]
        if missing:
            raise ValueError(f"{path}: not a BERT pretraining example; missing "
                             f"{', '.join(missing)}")
        ids = feature["input_ids" if "input_ids" in feature else V2_NAMES["input_ids"]]
        return (len(ids.int64_list.value),
                len(feature["masked_lm_positions"].int64_list.value))
    raise ValueError(f"{path}: no records")


# === Files ===

def shard_path(output_prefix, index, num_shards, gzip=False) -> str:
    return f"{output_prefix}-{index:05d}-of-{num_shards:05d}.tfrecord" + (".gz" if gzip else "")


def manifest_path(output_prefix) -> str:
    return f"{output_prefix}.manifest.json"


def vocab_copy_path(output_prefix) -> str:
    return f"{output_prefix}.vocab.txt"


GZIP_MAGIC = b"\x1f\x8b\x08"  # gzip, deflate


def compression_type(path) -> str:
    """"GZIP" for `.gz` files and for gzip data under another name (its first bytes), else ""."""
    if str(path).endswith(".gz"):
        return "GZIP"
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            return "GZIP" if f.read(3) == GZIP_MAGIC else ""
    except tf.errors.OpError:
        return ""  # unreadable: the reader that follows says why


def compression_types(files) -> list:
    """compression_type of each of `files`, read once per data set (the shards of one set are
    written alike): thousands of shards on gs:// cost one small read per set at start-up, not
    one per shard."""
    found = {}
    for path in files:
        key = (dataset_prefix(path), str(path).endswith(".gz"))
        if key not in found:
            found[key] = compression_type(path)
    return [found[(dataset_prefix(path), str(path).endswith(".gz"))] for path in files]


def manifest(max_seq_length, max_predictions_per_seq, vocab, do_lower_case, output_prefix,
             shards, gzip, **record) -> dict:
    """The manifest of a finished data set: its schema, lengths, vocab, `shards` ((path,
    examples) pairs) and `record` (how it was made)."""
    return {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
        "schema": schema(max_seq_length, max_predictions_per_seq),
        "max_seq_length": max_seq_length, "max_predictions_per_seq": max_predictions_per_seq,
        "vocab": {"file": os.path.basename(vocab_copy_path(output_prefix)), "size": len(vocab),
                  "sha256": vocab.sha256(), "do_lower_case": bool(do_lower_case)},
        "compression": "GZIP" if gzip else "",
        "num_examples": sum(count for _, count in shards),
        "shards": [{"file": os.path.basename(path), "examples": count}
                   for path, count in shards],
        **record}


# What readers take from a manifest: (key, type), "a.b" inside "a"
MANIFEST_KEYS = (("max_seq_length", int), ("max_predictions_per_seq", int), ("vocab", dict),
                 ("vocab.file", str), ("vocab.size", int), ("vocab.sha256", str),
                 ("vocab.do_lower_case", bool), ("shards", list))


def read_manifest(path) -> dict:
    manifest = io.read_json(path)
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path}: not a bert_tf pretraining-data manifest")
    for key, kind in MANIFEST_KEYS:
        value = manifest
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if not isinstance(value, kind):
            raise ValueError(f"{path}: the manifest's {key!r} is missing or not a "
                             f"{kind.__name__}; make the data again or restore the file")
    if not all(isinstance(shard, dict) and isinstance(shard.get("file"), str)
               for shard in manifest["shards"]):
        raise ValueError(f"{path}: the manifest's 'shards' must each name a 'file'")
    return manifest


def manifest_vocab_file(path, manifest) -> str:
    """The vocab a manifest at `path` records, beside it, after checking its sha256."""
    from bert_tf.text.tokenization import load_vocab

    vocab = manifest["vocab"]
    vocab_file = io.file_in(os.path.dirname(path), vocab["file"], path)
    digest = load_vocab(vocab_file).sha256()
    if digest != vocab["sha256"]:
        raise ValueError(f"{vocab_file}: not the vocab the data was made with ({path} records "
                         f"sha256 {vocab['sha256'][:12]}..., the file has {digest[:12]}...)")
    return vocab_file


SHARD_NAME = re.compile(r"^(?P<prefix>.*)-(?P<index>\d{5})-of-(?P<count>\d{5})"
                        r"(?P<suffix>\.tfrecord(\.gz)?)$")


def missing_shards(files) -> list:
    """The shards absent from disk of every `NAME-iiiii-of-NNNNN` set that `files` draw from (a
    run killed while renaming can leave part of a set under final names). Selecting some shards
    of a complete set on purpose is fine."""
    missing = []
    for prefix, count, suffix in sorted({
            (m["prefix"], int(m["count"]), m["suffix"])
            for m in map(SHARD_NAME.match, map(str, files)) if m}):
        present = set(tf.io.gfile.glob(f"{prefix}-?????-of-{count:05d}{suffix}"))
        missing.extend(name for name in (f"{prefix}-{i:05d}-of-{count:05d}{suffix}"
                                         for i in range(count)) if name not in present)
    return missing


def dataset_prefix(shard):
    """NAME from NAME-00000-of-00008.tfrecord[.gz]."""
    return str(shard).rsplit("-", 3)[0]
