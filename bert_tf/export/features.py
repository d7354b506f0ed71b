"""Per-token (or pooled) vectors of chosen encoder layers for every line of a text file, as
google-research/bert's extract_features.py gives them, streamed: memory stays flat however many
lines the file has.

    extract(encoder, preprocessor, "input.txt", "features.jsonl", FeatureOptions(layers=[-1, -2]))

Each line is one text, or a pair written `text_a ||| text_b`. Output formats:

- `jsonl` (google's): one JSON object per line, {"linex_index": i, "features": [{"token":
  "[CLS]", "layers": [{"index": -1, "values": [...]}, ...]}, ...]}, values rounded to 6
  decimals; with pooling, {"linex_index": i, "layers": [{"index": -1, "values": [...]}]}.
- `npz`: `features` float32 [lines, layers, hidden] (pooled); per token, every line's tokens one
  after another: `features` [tokens, layers, hidden], `input_word_ids` [tokens] and `offsets`
  [lines + 1] (line i is rows offsets[i]:offsets[i+1]); and `layers`.
- `tfrecord`: one tf.train.Example per line: `linex_index`, `layers`, `shape` and the float
  `features` (flattened), with `input_word_ids` (its tokens' ids) when per token.

Pooling: `none` (every token), `cls` (the [CLS] vector), `mean` (the mean over the line's
tokens, [CLS] and [SEP] included). The output is written under a temporary name and renamed
when complete.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
import zipfile

from typing import Any

import numpy as np
import tensorflow as tf

from bert_tf import io
from bert_tf.modeling import INPUT_NAMES
from bert_tf.text.preprocessing import length_buckets

FORMATS = ("jsonl", "npz", "tfrecord")
POOLINGS = ("none", "cls", "mean")
PAIR = re.compile(r"^(.*) \|\|\| (.*)$")


def parse_layers(layers, num_layers, flag="--layers"):
    """"-1,-2" -> [-1, -2], each checked against the encoder's `num_layers`."""
    try:
        values = [int(x) for x in str(layers).split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{flag} must be a comma list of layer indexes such as -1,-2,-3,-4, "
                         f"got {layers!r}") from None
    bad = [x for x in values if not -num_layers <= x < num_layers]
    if not values or bad:
        raise ValueError(f"{flag}={layers}: the encoder has {num_layers} layers (indexes "
                         f"{-num_layers}..{num_layers - 1})"
                         + (f"; {bad} out of range" if bad else ""))
    return values


def read_lines(path):
    """The lines of a text file, one at a time (newline and surrounding space stripped)."""
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            for number, line in enumerate(f, start=1):
                try:
                    yield line.decode("utf-8").strip()
                except UnicodeDecodeError as e:
                    raise ValueError(f"{path}:{number}: not valid UTF-8 ({e.reason})") from None
    except tf.errors.NotFoundError:
        raise ValueError(f"--input_file {path}: no such file") from None


def check_paths(input_file, output_file):
    """Refuses, before any work, an output that would overwrite the input or cannot be written
    (a folder, a folder that is not there or not writable)."""
    if io.same_file(input_file, output_file):
        raise ValueError(f"--output_file {output_file} is --input_file: the features would "
                         f"overwrite the text; name another file")
    if tf.io.gfile.isdir(output_file):
        raise ValueError(f"--output_file {output_file} is a folder; name a file in it")
    probe = io.temp_name(output_file, "probe")
    try:
        with tf.io.gfile.GFile(probe, "w") as f:
            f.write("")
    except (tf.errors.OpError, OSError) as e:
        raise ValueError(f"--output_file {output_file}: cannot write there "
                         f"({io.one_line(getattr(e, 'message', None) or e)})") from None
    io.remove_quietly(probe)


def _batches(lines, batch_size):
    batch = []
    for line in lines:
        batch.append(line)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _encode(preprocessor, texts):
    """Encoder inputs [B, max_seq_length] for lines that are single texts or `a ||| b` pairs,
    in their order."""
    matches = [PAIR.match(text) for text in texts]
    singles = [i for i, m in enumerate(matches) if m is None]
    pairs = [i for i, m in enumerate(matches) if m is not None]
    parts, order = [], []
    if singles:
        parts.append(preprocessor.single(tf.constant([texts[i] for i in singles])))
        order += singles
    if pairs:
        parts.append(preprocessor.pair(tf.constant([matches[i].group(1) for i in pairs]),
                                       tf.constant([matches[i].group(2) for i in pairs])))
        order += pairs
    inverse = np.argsort(order)
    return {name: tf.gather(tf.concat([p[name] for p in parts], 0), inverse)
            for name in parts[0]}


def _cut(inputs, max_seq_length):
    """Inputs cut to the smallest of `length_buckets` (16, 32, 64, ... max_seq_length) that
    holds the longest row, as finetuning's batches are: features of padding are never
    written, and a short batch costs a short sequence."""
    longest = int(tf.reduce_max(tf.reduce_sum(inputs["input_mask"], -1)))
    length = next(b for b in length_buckets(max_seq_length) if b >= longest)
    return {name: x[:, :length] for name, x in inputs.items()}


class _Arrays:
    """Arrays grown a batch at a time in raw files of a local folder, then written as one .npz
    (each member a .npy whose header gives the final row count): memory stays flat."""

    def __init__(self):
        self.folder = tempfile.mkdtemp(prefix="bert_tf_features_")
        self.files, self.shapes = {}, {}  # name -> open raw file, (dtype, rows, row shape)

    def append(self, name, rows):
        rows = np.ascontiguousarray(rows)
        if name not in self.files:
            self.files[name] = open(os.path.join(self.folder, name), "wb")  # a local temp file
            self.shapes[name] = [rows.dtype, 0, rows.shape[1:]]
        self.files[name].write(rows.tobytes())
        self.shapes[name][1] += len(rows)

    def save(self, target, extra):
        """Writes every array, and `extra` ({name: small array}), to the npz `target`."""
        local = os.path.join(self.folder, "features.npz")
        with zipfile.ZipFile(local, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, file in self.files.items():
                file.close()
                dtype, count, shape = self.shapes[name]
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array_header_2_0(member, {
                        "descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                        "shape": (count, *shape)})
                    with open(os.path.join(self.folder, name), "rb") as raw:
                        shutil.copyfileobj(raw, member, 1 << 24)
            for name, array in extra.items():
                with archive.open(f"{name}.npy", "w") as member:
                    np.save(member, array)
        tf.io.gfile.copy(local, target, overwrite=True)

    def remove(self):
        for file in self.files.values():
            file.close()
        shutil.rmtree(self.folder, ignore_errors=True)


class _Writer:
    """Writes one output format to a temporary file; `close()` renames it into place."""

    def __init__(self, path, output_format, pooling, layers, vocab):
        self.path, self.format, self.pooling, self.layers = path, output_format, pooling, layers
        self.tmp, self.vocab, self.count, self.tokens = io.temp_name(path), vocab, 0, 0
        if output_format == "jsonl":
            self.file = tf.io.gfile.GFile(self.tmp, "w")
        elif output_format == "tfrecord":
            self.file = tf.io.TFRecordWriter(self.tmp)
        else:
            self.arrays = _Arrays()

    def write(self, features, inputs):
        """features [B, layers, T, H] or [B, layers, H] (pooled); inputs cut to T."""
        ids, mask = inputs["input_word_ids"].numpy(), inputs["input_mask"].numpy()
        lengths = mask.sum(-1).astype(np.int64)
        if self.format == "npz" and self.pooling != "none":
            self.arrays.append("features", features)
        elif self.format == "npz":  # every line's tokens, one after another
            real = mask.astype(bool)
            self.arrays.append("features", features.transpose(0, 2, 1, 3)[real])
            self.arrays.append("input_word_ids", ids[real].astype(np.int32))
            self.arrays.append("offsets", self.tokens + np.cumsum(lengths) - lengths)
            self.tokens += int(lengths.sum())
        for row in range(len(features) if self.format != "npz" else 0):
            index, length = self.count + row, int(lengths[row])
            values = features[row] if self.pooling != "none" else features[row][:, :length]
            if self.format == "jsonl":
                self.file.write(json.dumps(self._json(index, values, ids[row][:length])) + "\n")
            else:
                self.file.write(self._example(index, values, ids[row][:length]))
        self.count += len(features)

    def _json(self, index, values, ids):
        rounded = np.round(values.astype(np.float64), 6).tolist()
        if self.pooling != "none":
            return {"linex_index": index, "layers": [
                {"index": layer, "values": v} for layer, v in zip(self.layers, rounded)]}
        return {"linex_index": index, "features": [
            {"token": self.vocab.tokens[token_id],
             "layers": [{"index": layer, "values": rounded[j][t]}
                        for j, layer in enumerate(self.layers)]}
            for t, token_id in enumerate(ids)]}

    def _example(self, index, values, ids):
        feature = {"linex_index": tf.train.Feature(int64_list=tf.train.Int64List(value=[index])),
                   "layers": tf.train.Feature(int64_list=tf.train.Int64List(value=self.layers)),
                   "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=values.shape)),
                   "features": tf.train.Feature(float_list=tf.train.FloatList(
                       value=values.reshape(-1)))}
        if self.pooling == "none":
            feature["input_word_ids"] = tf.train.Feature(int64_list=tf.train.Int64List(value=ids))
        return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()

    def close(self):
        if self.format == "npz":
            extra = {"layers": np.asarray(self.layers, np.int32)}
            if self.pooling == "none":
                self.arrays.append("offsets", np.asarray([self.tokens], np.int64))
            self.arrays.save(self.tmp, extra)
            self.arrays.remove()
        else:
            self.file.close()
        tf.io.gfile.rename(self.tmp, self.path, overwrite=True)

    def abort(self):
        if self.format == "npz":
            self.arrays.remove()
        else:
            self.file.close()
        io.remove_quietly(self.tmp)


@dataclasses.dataclass(frozen=True)
class FeatureOptions:
    """What extract_features writes (its flags of the same names)."""
    layers: Any = (-1, -2, -3, -4)  # indexes of the encoder's layers, or their comma list
    batch_size: int = 32
    output_format: str = "jsonl"  # one of FORMATS
    pooling: str = "none"  # one of POOLINGS


def extract(encoder, preprocessor, input_file, output_file, options=FeatureOptions(),
            log=print):
    """Writes the features of every line of `input_file` to `output_file`; returns the number of
    lines. `encoder` is a Keras `BertEncoder`, `preprocessor` a `text.preprocessing.Preprocessor`
    (its max_seq_length is the lines' length, its vocab the tokens')."""
    vocab = preprocessor.tokenizer.vocab
    layers, batch_size = options.layers, options.batch_size
    output_format, pooling = options.output_format, options.pooling
    if output_format not in FORMATS:
        raise ValueError(f"--output_format must be one of {', '.join(FORMATS)}, got "
                         f"{output_format!r}")
    if pooling not in POOLINGS:
        raise ValueError(f"--pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    check_paths(input_file, output_file)
    layers = parse_layers(layers if isinstance(layers, str) else ",".join(map(str, layers)),
                          encoder.config.num_hidden_layers)
    @tf.function(input_signature=[{name: tf.TensorSpec([None, None], tf.int32, name=name)
                                   for name in INPUT_NAMES}])
    def outputs(inputs):  # one trace for every batch size and length
        per_layer = encoder(inputs, training=False)["encoder_outputs"]
        chosen = tf.stack([per_layer[i] for i in layers], 1)  # [B, layers, T, H]
        if pooling == "cls":
            return chosen[:, :, 0]
        if pooling == "mean":
            mask = tf.cast(inputs["input_mask"], chosen.dtype)[:, None, :, None]
            return tf.reduce_sum(chosen * mask, 2) / tf.reduce_sum(mask, 2)
        return chosen

    writer = _Writer(output_file, output_format, pooling, layers, vocab)
    try:
        for batch in _batches(read_lines(input_file), batch_size):
            inputs = _cut(_encode(preprocessor, batch), preprocessor.sequence_length)
            writer.write(tf.cast(outputs(inputs), tf.float32).numpy(), inputs)
        count = writer.count
        if not count:
            raise ValueError(f"--input_file {input_file}: no lines; nothing to extract")
        writer.close()
    except BaseException:
        writer.abort()
        raise
    log(f"features of {count:,} lines ({', '.join(map(str, layers))}; pooling {pooling}) -> "
        f"{output_file}")
    return count
