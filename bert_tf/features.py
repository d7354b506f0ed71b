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

import json
import os

import numpy as np
import tensorflow as tf

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


def feature_spec(max_seq_length, max_predictions_per_seq):
    """The `tf.io.parse_example` spec, identical to google-research/bert's run_pretraining."""
    return {name: tf.io.FixedLenFeature([length], tf.int64 if name in INT_FEATURES
                                        else tf.float32)
            for name, length in feature_lengths(max_seq_length, max_predictions_per_seq).items()}


def schema(max_seq_length, max_predictions_per_seq):
    """The spec as plain JSON for the manifest."""
    return {name: {"dtype": "int64" if name in INT_FEATURES else "float32", "shape": [length]}
            for name, length in feature_lengths(max_seq_length, max_predictions_per_seq).items()}


def serialize_instance(instance, max_seq_length, max_predictions_per_seq) -> bytes:
    """A `pretraining_data.Instance` as a serialized tf.train.Example, padded to the lengths."""
    n = len(instance.tokens)
    pad = max_seq_length - n
    m = len(instance.masked_lm_positions)
    pad_predictions = max_predictions_per_seq - m
    int64 = tf.train.Int64List
    feature = {
        "input_ids": int64(value=instance.tokens + [0] * pad),
        "input_mask": int64(value=[1] * n + [0] * pad),
        "segment_ids": int64(value=instance.segment_ids + [0] * pad),
        "masked_lm_positions": int64(value=instance.masked_lm_positions + [0] * pad_predictions),
        "masked_lm_ids": int64(value=instance.masked_lm_labels + [0] * pad_predictions),
        "next_sentence_labels": int64(value=[int(instance.is_random_next)]),
    }
    feature = {name: tf.train.Feature(int64_list=values) for name, values in feature.items()}
    feature["masked_lm_weights"] = tf.train.Feature(
        float_list=tf.train.FloatList(value=[1.0] * m + [0.0] * pad_predictions))
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    # deterministic: the feature map in a fixed key order, so the same data gives the same bytes
    # in every process (Python's str hashing differs between processes).
    return example.SerializeToString(deterministic=True)


def parse_examples(serialized, max_seq_length, max_predictions_per_seq):
    """Serialized examples [N] -> dict of numpy arrays [N, length] (int64 / float32)."""
    parsed = tf.io.parse_example(serialized, feature_spec(max_seq_length, max_predictions_per_seq))
    return {name: np.asarray(value) for name, value in parsed.items()}


# === Files ===

def shard_path(output_prefix, index, num_shards, gzip=False) -> str:
    return f"{output_prefix}-{index:05d}-of-{num_shards:05d}.tfrecord" + (".gz" if gzip else "")


def manifest_path(output_prefix) -> str:
    return f"{output_prefix}.manifest.json"


def vocab_copy_path(output_prefix) -> str:
    return f"{output_prefix}.vocab.txt"


def compression_type(path) -> str:
    return "GZIP" if str(path).endswith(".gz") else ""


def write_json_atomically(path, values) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(json.dumps(values, indent=2, sort_keys=True) + "\n")
    tf.io.gfile.rename(tmp, path, overwrite=True)


def read_manifest(path) -> dict:
    with tf.io.gfile.GFile(path, "r") as f:
        manifest = json.load(f)
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path}: not a bert_tf pretraining-data manifest")
    return manifest


def expand_file_patterns(patterns, flag="--input_file") -> list:
    """A comma list of globs (local or gs://) -> sorted files; a pattern matching nothing is an error."""
    files = []
    for pattern in [p.strip() for p in str(patterns).split(",") if p.strip()]:
        matches = sorted(tf.io.gfile.glob(pattern))
        if not matches:
            raise FileNotFoundError(f"{flag}: no files match {pattern!r}")
        files.extend(m for m in matches if m not in files)
    if not files:
        raise FileNotFoundError(f"{flag}: no file pattern given")
    return files
