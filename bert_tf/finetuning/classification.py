"""Sentence and sentence-pair classification: its input pipeline, metrics, and its task for the
finetuning harness (`python -m bert_tf.run_classifier` is its command line). The model is
`bert_tf.modeling.build_classifier`.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf

from bert_tf.finetuning import harness
from bert_tf.finetuning.batching import batch_by_length
from bert_tf.finetuning.labelled_files import Columns, label_ids, read_examples
from bert_tf.modeling.heads import CLASSIFICATION
from bert_tf.settings import setting


# === Data ===

def make_dataset(examples, ids, preprocessor, batch_size, shuffle=False, seed=None,
                 dynamic_padding=True):
    """Texts tokenized inside tf.data by the export's preprocessor -> batches of (inputs,
    label id), by length (bert_tf.finetuning.batching) unless not `dynamic_padding`."""
    a = [e.text_a for e in examples]
    b = [e.text_b for e in examples] if examples and examples[0].text_b is not None else None
    columns = (a, b) if b is not None else (a,)
    labels = ids if ids is not None else np.zeros(len(examples), np.int64)

    def encode(texts, label):
        inputs = (preprocessor.pair(texts[0], texts[1]) if len(texts) == 2
                  else preprocessor.single(texts[0]))
        return inputs, label

    # tokenized in large batches (one call per batch is much faster), then batched by length
    # (unbatch loses the count; asserting it lets Keras know an eval pass's length)
    rows = tf.data.Dataset.from_tensor_slices((columns, labels)).batch(16 * batch_size).map(
        encode, num_parallel_calls=tf.data.AUTOTUNE).unbatch().apply(
        tf.data.experimental.assert_cardinality(len(examples)))
    return batch_by_length(rows, batch_size, int(preprocessor.max_seq_length.numpy()), shuffle,
                           seed, dynamic_padding, num_rows=max(len(examples), 1))


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


# === The task ===

@dataclasses.dataclass(frozen=True)
class ClassificationConfig(harness.FinetuningConfig):
    """The settings of a classification job (the command line's flags)."""
    eval_batch_size: int = setting(32, "Batch size for eval and predict.", above=0)
    train_file: str = setting(None, "Labelled training file.", required=True)
    eval_file: str = setting(None, "Labelled evaluation file.", required=True)
    predict_file: str | None = setting(None, "Texts to label; writes predictions.tsv.")
    input_format: str = setting("tsv", "File format (tsv/csv with a header row).",
                                choices=("tsv", "csv", "jsonl"))
    text_a_column: str = setting("text", "Column of the (first) text.")
    text_b_column: str | None = setting(None, "Column of the second text, for pair tasks.")
    label_column: str = setting("label", "Column of the label.")
    allow_unknown_labels: bool = setting(False, "Skip eval examples with labels unseen in "
                                                "training (with a warning) instead of failing.")
    model_name: str = setting("classifier", "Name of the exported model.")


class Classification:
    """The classification task (see `harness.Task`)."""
    name = CLASSIFICATION
    monitor = "val_accuracy"

    def __init__(self, config: ClassificationConfig):
        self.config = config
        self.columns = Columns(config.text_a_column, config.label_column, config.text_b_column)

    def read(self, source, vocab, log):
        from bert_tf.text.preprocessing import Preprocessor

        config = self.config
        train = read_examples(config.train_file, config.input_format, self.columns)
        self.labels = sorted({e.label for e in train})
        train, train_ids = label_ids(train, self.labels, config.train_file)
        evaluation = read_examples(config.eval_file, config.input_format, self.columns)
        self.evaluation, self.eval_ids = label_ids(evaluation, self.labels, config.eval_file,
                                                   config.allow_unknown_labels, log)
        self.preprocessor = Preprocessor(vocab, source.do_lower_case, config.max_seq_length)
        self.eval_data = self._batches(self.evaluation, self.eval_ids)
        log(f"train: {len(train):,} examples, {len(self.labels)} labels; eval: "
            f"{len(self.evaluation):,} examples")
        # Repeated, so every epoch gets steps_per_epoch batches: grouping by length makes the
        # number of batches per pass vary, and Keras skips an epoch when a finite dataset of
        # unknown size runs out.
        steps = max(len(train) // config.train_batch_size, 1)
        return harness.TaskData(
            self.labels, make_dataset(train, train_ids, self.preprocessor,
                                      config.train_batch_size, shuffle=True,
                                      seed=config.random_seed,
                                      dynamic_padding=config.dynamic_padding).repeat(),
            steps, self.eval_data,
            record={"pair": config.text_b_column is not None})

    def _batches(self, examples, ids):
        return make_dataset(examples, ids, self.preprocessor, self.config.eval_batch_size,
                            dynamic_padding=self.config.dynamic_padding)

    def compile_args(self):
        import keras

        return {"loss": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                "metrics": ["accuracy"]}

    def evaluate(self, model, log):
        predictions = np.argmax(harness.predict(model, self.eval_data), -1)
        return classification_metrics(self.eval_ids, predictions, len(self.labels))

    def predict(self, model, log):
        config = self.config
        if not config.predict_file:
            return None
        examples = read_examples(config.predict_file, config.input_format, self.columns,
                                 require_label=False)
        logits = harness.predict(model, self._batches(examples, None))
        probabilities = tf.nn.softmax(logits).numpy()
        path = os.path.join(config.output_dir, "predictions.tsv")
        harness.write_tsv(path, ["line", "prediction"] + [f"p_{label}" for label in self.labels],
                          ([example.line, self.labels[int(np.argmax(p))]]
                           + [f"{x:.6f}" for x in p]
                           for example, p in zip(examples, probabilities)))
        return path


def run(config: ClassificationConfig, log=print):
    """Finetunes, evaluates, predicts and exports (bert_tf.finetuning.harness); returns the eval
    metrics, the export's path and the labels."""
    return harness.run(config, Classification(config), log)
