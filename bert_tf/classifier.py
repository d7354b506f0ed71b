"""Sentence and sentence-pair classification on BERT: the model, labelled text files, metrics,
and the text-in SavedModel for TF Serving.

    model = build_classifier(encoder, num_classes=2)   # encoder: a BertEncoder or TFSMLayer
    model.compile(optimizer=..., loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(dataset_of_encoder_inputs_and_label_ids, ...)
"""

import csv
import dataclasses
import json

import keras
import numpy as np
import tensorflow as tf

from bert_tf.encoder import INPUT_NAMES
from bert_tf.export import Preprocessor, save_version


def build_classifier(encoder, num_classes, dropout_rate=0.1, initializer_range=0.02,
                     name="bert_classifier"):
    """Encoder inputs -> logits [batch, num_classes] (float32): pooled [CLS], dropout, dense."""
    inputs = {n: keras.Input(shape=(None,), dtype="int32", name=n) for n in INPUT_NAMES}
    pooled = encoder(inputs)["pooled_output"]  # [B, H]
    pooled = keras.layers.Dropout(dropout_rate, name="dropout")(pooled)
    logits = keras.layers.Dense(
        num_classes, dtype="float32", name="logits",
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=initializer_range))(pooled)
    return keras.Model(inputs, logits, name=name)


# === Labelled text files ===

class InputFileError(ValueError):
    """A problem in a labelled text file, naming the file, line and column."""


@dataclasses.dataclass(frozen=True)
class Columns:
    text_a: str
    label: str
    text_b: str = None


def read_examples(path, input_format, columns: Columns, require_label=True):
    """[(text_a, text_b or None, label or None, line)] from a tsv/csv (with a header row) or jsonl
    file; problems name the file, line and column."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        line = text_line_of(path, e.start)
        raise InputFileError(f"{path}:{line}: not valid UTF-8 ({e.reason})") from None
    wanted = [c for c in (columns.text_a, columns.text_b, columns.label if require_label else None)
              if c]
    rows = []
    if input_format == "jsonl":
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append((number, json.loads(line)))
                except json.JSONDecodeError as e:
                    raise InputFileError(f"{path}:{number}: not JSON ({e.msg})") from None
    elif input_format in ("tsv", "csv"):
        reader = csv.reader(text.splitlines(), delimiter="\t" if input_format == "tsv" else ",",
                            quoting=csv.QUOTE_NONE if input_format == "tsv" else csv.QUOTE_MINIMAL)
        lines = list(reader)
        if not lines:
            raise InputFileError(f"{path}: empty file")
        header = lines[0]
        missing = [c for c in wanted if c not in header]
        if missing:
            raise InputFileError(f"{path}:1: missing column(s) {', '.join(missing)}; the header "
                                 f"has {', '.join(header)}")
        for number, values in enumerate(lines[1:], start=2):
            if values:
                rows.append((number, dict(zip(header, values))))
    else:
        raise ValueError(f"--input_format must be tsv, csv or jsonl, got {input_format!r}")
    examples = []
    for number, row in rows:
        for column in wanted:
            if column not in row:
                raise InputFileError(f"{path}:{number}: missing column {column!r}")
        label = row.get(columns.label) if require_label else None
        if require_label and (label is None or str(label).strip() == ""):
            raise InputFileError(f"{path}:{number}: empty label in column {columns.label!r}")
        examples.append((str(row[columns.text_a]),
                         str(row[columns.text_b]) if columns.text_b else None,
                         str(label).strip() if label is not None else None, number))
    if not examples:
        raise InputFileError(f"{path}: no examples")
    return examples


def text_line_of(path, byte_offset):
    with open(path, "rb") as f:
        return f.read(byte_offset).count(b"\n") + 1


def label_ids(examples, labels, path, allow_unknown=False, log=print):
    """Label names -> ids in `labels` order; an unknown label is an error naming file and line
    (skipped with a warning when `allow_unknown`)."""
    index = {label: i for i, label in enumerate(labels)}
    kept, ids = [], []
    for example in examples:
        if example[2] not in index:
            message = (f"{path}:{example[3]}: label {example[2]!r} is not in the training "
                       f"labels {labels}")
            if not allow_unknown:
                raise InputFileError(message)
            log(f"warning: {message}; skipped")
            continue
        kept.append(example)
        ids.append(index[example[2]])
    return kept, np.array(ids, np.int64)


def length_buckets(max_seq_length):
    """Padded lengths a batch may take: powers of two from 16, and max_seq_length."""
    buckets = [16]
    while buckets[-1] * 2 < max_seq_length:
        buckets.append(buckets[-1] * 2)
    return sorted({b for b in buckets if b < max_seq_length} | {max_seq_length})


def make_dataset(examples, ids, preprocessor, batch_size, shuffle=False, seed=None,
                 dynamic_padding=True):
    """Texts tokenized inside tf.data by the export's preprocessor -> (inputs, label id).

    With `dynamic_padding`, each batch is cut to the smallest of `length_buckets` that holds its
    longest text, instead of max_seq_length: short texts cost short sequences, and a jit-compiled
    step sees only a few shapes. When shuffling (training), examples are also grouped into
    batches of one bucket, so one long text does not lengthen a batch of short ones; otherwise
    the order is kept (evaluation, prediction).
    """
    a = [e[0] for e in examples]
    b = [e[1] for e in examples] if examples and examples[0][1] is not None else None
    columns = (a, b) if b is not None else (a,)
    labels = ids if ids is not None else np.zeros(len(examples), np.int64)
    dataset = tf.data.Dataset.from_tensor_slices((columns, labels))
    if shuffle:
        dataset = dataset.shuffle(len(examples), seed=seed, reshuffle_each_iteration=True)
    buckets = tf.constant(length_buckets(int(preprocessor.max_seq_length.numpy())), tf.int32)

    def encode(texts, label):
        inputs = (preprocessor.pair(texts[0], texts[1]) if len(texts) == 2
                  else preprocessor.single(texts[0]))
        return inputs, label

    def bucket(inputs):  # [B, T] inputs -> index of the smallest bucket holding them all
        longest = tf.reduce_max(tf.reduce_sum(inputs["input_mask"], axis=-1))
        return tf.searchsorted(buckets, longest[None])[0]

    def trim(inputs, label):
        length = buckets[bucket(inputs)]
        return {name: value[:, :length] for name, value in inputs.items()}, label  # [B, length]

    if dynamic_padding and shuffle:  # tokenize in large batches, then regroup by bucket
        dataset = dataset.batch(16 * batch_size).map(encode, num_parallel_calls=tf.data.AUTOTUNE)
        dataset = dataset.unbatch().group_by_window(
            key_func=lambda inputs, label: tf.cast(bucket(inputs), tf.int64),
            reduce_func=lambda key, group: group.batch(batch_size), window_size=batch_size)
    else:
        dataset = dataset.batch(batch_size).map(encode, num_parallel_calls=tf.data.AUTOTUNE)
    if dynamic_padding:
        dataset = dataset.map(trim, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


# === Metrics ===

def classification_metrics(labels, predictions, num_classes):
    """accuracy and macro-F1; with 2 classes also F1 (of class 1) and Matthews correlation."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    true_positive = np.diag(confusion).astype(float)
    precision = true_positive / np.maximum(confusion.sum(0), 1)
    recall = true_positive / np.maximum(confusion.sum(1), 1)
    f1 = np.where(precision + recall > 0,
                  2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    metrics = {"accuracy": float(true_positive.sum() / max(len(labels), 1)),
               "macro_f1": float(f1.mean()), "num_examples": int(len(labels))}
    if num_classes == 2:
        (tn, fp), (fn, tp) = confusion.astype(float)
        denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        metrics["f1"] = float(f1[1])
        metrics["matthews_corrcoef"] = float((tp * tn - fp * fn) / denominator
                                             if denominator else 0.0)
    return metrics


# === Export ===

class ClassifierExport(tf.__internal__.tracking.AutoTrackable):
    """Strings in; probabilities, label_id and the label name out."""

    def __init__(self, model, preprocessor, labels, pair):
        self.model = model
        self.preprocessor = preprocessor
        self.variables = [v.value for v in model.variables]
        self.labels = tf.constant(list(labels))
        self.serve = tf.function(self._serve, input_signature=[
            tf.TensorSpec([None], tf.string, name="text")])
        self.serve_pair = tf.function(self._serve_pair, input_signature=[
            tf.TensorSpec([None], tf.string, name="text"),
            tf.TensorSpec([None], tf.string, name="text_b")])
        self.pair_task = pair

    def _outputs(self, inputs):
        probabilities = tf.nn.softmax(self.model(inputs, training=False))
        label_id = tf.argmax(probabilities, -1, output_type=tf.int32)
        return {"probabilities": probabilities, "label_id": label_id,
                "label": tf.gather(self.labels, label_id)}

    def _serve(self, text):
        return self._outputs(self.preprocessor.single(text))

    def _serve_pair(self, text, text_b):
        return self._outputs(self.preprocessor.pair(text, text_b))

    def signatures(self):
        if self.pair_task:
            return {"serving_default": self.serve_pair, "single": self.serve}
        return {"serving_default": self.serve}


def export_classifier(model, vocab, do_lower_case, max_seq_length, labels, pair, model_dir,
                      version=None, overwrite=False):
    preprocessor = Preprocessor(vocab, do_lower_case, max_seq_length)
    module = ClassifierExport(model, preprocessor, labels, pair)
    return save_version(module, module.signatures(), model_dir, version, overwrite)

