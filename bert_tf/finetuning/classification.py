"""Sentence and sentence-pair classification on BERT: the model, its input pipeline, metrics,
and the job (`python -m bert_tf.run_classifier` is its command line).

    model = build_classifier(encoder, num_classes=2)   # encoder: a BertEncoder or TFSMLayer
    model.compile(optimizer=..., loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(dataset_of_encoder_inputs_and_label_ids, ...)
"""

from __future__ import annotations

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf

from bert_tf import io, locks, run_dir
from bert_tf.finetuning import harness
from bert_tf.finetuning.labelled_files import Columns, label_ids, read_examples
from bert_tf.modeling import INPUT_NAMES
from bert_tf.settings import flat_dict, setting


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


# === Data ===

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
    a = [e.text_a for e in examples]
    b = [e.text_b for e in examples] if examples and examples[0].text_b is not None else None
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


# === The job ===

@dataclasses.dataclass(frozen=True)
class ClassificationConfig(harness.FinetuningConfig):
    """The settings of a classification job (the command line's flags)."""
    eval_batch_size: int = setting(32, "Batch size for eval and predict.")
    train_file: str = setting(None, "Labelled training file.", required=True)
    eval_file: str = setting(None, "Labelled evaluation file.", required=True)
    predict_file: str | None = setting(None, "Texts to label; writes predictions.tsv.")
    input_format: str = setting("tsv", "File format (tsv/csv with a header row).",
                                choices=("tsv", "csv", "jsonl"))
    text_a_column: str = setting("text", "Column of the (first) text.")
    text_b_column: str | None = setting(None, "Column of the second text, for pair tasks.")
    label_column: str = setting("label", "Column of the label.")
    dynamic_padding: bool = setting(True, "Cut each batch to the smallest of 16, 32, 64, ... "
                                          "max_seq_length that holds its longest text, instead "
                                          "of padding all to max_seq_length.")
    allow_unknown_labels: bool = setting(False, "Skip eval examples with labels unseen in "
                                                "training (with a warning) instead of failing.")
    model_name: str = setting("classifier", "Name of the exported model.")


@locks.holds_run_lock
def run(config: ClassificationConfig, log=print):
    """Finetunes, evaluates, predicts and exports; returns the eval metrics, the export's path
    and the labels."""
    from bert_tf.export.classifier import export_classifier
    from bert_tf.text.preprocessing import Preprocessor
    from bert_tf.text.tokenization import load_vocab

    source = harness.encoder_source(config)
    vocab = load_vocab(source.vocab_file)
    columns = Columns(config.text_a_column, config.label_column, config.text_b_column)
    train = read_examples(config.train_file, config.input_format, columns)
    labels = sorted({e.label for e in train})
    train, train_ids = label_ids(train, labels, config.train_file)
    evaluation = read_examples(config.eval_file, config.input_format, columns)
    evaluation, eval_ids = label_ids(evaluation, labels, config.eval_file,
                                     config.allow_unknown_labels, log)
    output_dir = config.output_dir
    tf.io.gfile.makedirs(output_dir)
    io.write_json(os.path.join(output_dir, "labels.json"), labels)

    keras.utils.set_random_seed(config.random_seed)
    precision = harness.set_precision(config, log)
    io.write_json(os.path.join(output_dir, run_dir.RUN_CONFIG_FILE),
                  {"task": "classification", "flags": flat_dict(config),
                   "precision": precision.as_record()})
    steps_per_epoch = max(len(train) // config.train_batch_size, 1)
    with harness.make_strategy(config.distribution_strategy).scope():
        encoder, dropout = harness.load_encoder(source)
        model = build_classifier(encoder, len(labels), dropout)
        harness.compile_model(model, config, int(steps_per_epoch * config.num_train_epochs),
                              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                              metrics=["accuracy"])
    preprocessor = Preprocessor(vocab, source.do_lower_case, config.max_seq_length)
    padding = config.dynamic_padding
    # Repeated, so every epoch gets steps_per_epoch batches: grouping by length makes the number
    # of batches per pass vary, and Keras skips an epoch when a finite dataset of unknown size
    # runs out.
    train_data = make_dataset(train, train_ids, preprocessor, config.train_batch_size,
                              shuffle=True, seed=config.random_seed,
                              dynamic_padding=padding).repeat()
    eval_data = make_dataset(evaluation, eval_ids, preprocessor, config.eval_batch_size,
                             dynamic_padding=padding)
    harness.fit(model, train_data, config, steps_per_epoch, eval_data, monitor="val_accuracy")

    predictions = np.argmax(model.predict(eval_data, verbose=0), -1)
    metrics = classification_metrics(eval_ids, predictions, len(labels))
    io.write_json(os.path.join(output_dir, "eval_results.json"), metrics)
    log("eval: " + "  ".join(f"{k}={v:.4g}" for k, v in metrics.items()))

    if config.predict_file:
        examples = read_examples(config.predict_file, config.input_format, columns,
                                 require_label=False)
        data = make_dataset(examples, None, preprocessor, config.eval_batch_size,
                            dynamic_padding=padding)
        probabilities = tf.nn.softmax(model.predict(data, verbose=0)).numpy()
        harness.write_tsv(os.path.join(output_dir, "predictions.tsv"),
                          ["line", "prediction"] + [f"p_{label}" for label in labels],
                          ([example.line, labels[int(np.argmax(p))]] + [f"{x:.6f}" for x in p]
                           for example, p in zip(examples, probabilities)))

    exported = export_classifier(
        model, vocab, source.do_lower_case, config.max_seq_length, labels,
        pair=config.text_b_column is not None,
        model_dir=os.path.join(output_dir, "export", config.model_name))
    log(f"exported: {exported}")
    return {**metrics, "export": exported, "labels": labels}
