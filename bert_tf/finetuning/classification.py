"""Sentence and sentence-pair classification: its input pipeline, metrics, and its task for the
finetuning harness (`python -m bert_tf.run_classifier` is its command line). The model is
`bert_tf.modeling.build_classifier`.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
import tensorflow as tf

from bert_tf.finetuning import glue, harness
from bert_tf.finetuning.fitting import predict
from bert_tf.finetuning.job_settings import FinetuningConfig
from bert_tf.finetuning.batching import batch_by_length
from bert_tf.finetuning.labelled_files import Columns, InputFileError, label_ids, read_examples
from bert_tf.tasks import CLASSIFICATION, REGRESSION
from bert_tf.settings import setting

FLOAT32_MAX = float(np.finfo(np.float32).max)


# === Data ===

def make_dataset(examples, ids, preprocessor, batch_size, shuffle=False, seed=None,
                 dynamic_padding=True):
    """Texts tokenized inside tf.data by the export's preprocessor -> batches of (inputs,
    label id or score), by length (bert_tf.finetuning.batching) unless not `dynamic_padding`."""
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
    """accuracy, macro-F1 and Matthews correlation (`mcc`, over all classes); with 2 classes
    also `f1` (of class 1). Fractions from 0 to 1; an undefined correlation (one class only,
    in the labels or the predictions) is 0."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    true_positive = np.diag(confusion).astype(float)
    precision = true_positive / np.maximum(confusion.sum(0), 1)
    recall = true_positive / np.maximum(confusion.sum(1), 1)
    f1 = np.where(precision + recall > 0,
                  2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    # Matthews correlation of K classes (Gorodkin 2004), as scikit-learn computes it
    samples, correct = confusion.sum(), true_positive.sum()
    predicted, actual = confusion.sum(0).astype(float), confusion.sum(1).astype(float)
    denominator = np.sqrt((samples ** 2 - predicted @ predicted)
                          * (samples ** 2 - actual @ actual))
    metrics = {"accuracy": float(correct / max(len(labels), 1)),
               "macro_f1": float(f1.mean()),
               "mcc": float((correct * samples - predicted @ actual) / denominator
                            if denominator else 0.0),
               "num_examples": int(len(labels))}
    if num_classes == 2:
        metrics["f1"] = float(f1[1])
    return metrics


def _ranks(values):
    """Ranks from 1, ties given their mean rank (as Spearman's correlation needs)."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), float)
    ranks[order] = np.arange(1, len(values) + 1)
    unique, inverse = np.unique(values, return_inverse=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / np.bincount(inverse))[inverse]


def _pearson(x, y):
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt((x @ x) * (y @ y))
    return float(x @ y / denominator) if denominator else 0.0


def regression_metrics(targets, predictions):
    """Pearson and Spearman correlation (0 where undefined: constant targets or predictions)
    and the mean squared error."""
    targets = np.asarray(targets, np.float64)
    predictions = np.asarray(predictions, np.float64).reshape(-1)
    return {"pearson": _pearson(targets, predictions),
            "spearman": _pearson(_ranks(targets), _ranks(predictions)),
            "mse": float(np.mean((targets - predictions) ** 2)) if len(targets) else 0.0,
            "num_examples": int(len(targets))}


# === The task ===

@dataclasses.dataclass(frozen=True)
class ClassificationConfig(FinetuningConfig):
    """The settings of a classification (or regression) job (the command line's flags)."""
    task_name: str | None = setting(None, "A GLUE task or XNLI by name: its files are read from "
                                          "--data_dir as distributed, with its labels, metrics "
                                          "and submission files.", choices=tuple(glue.DATASETS))
    data_dir: str | None = setting(None, "The --task_name's folder (GLUE_DIR/MRPC, ...).")
    language: str = setting("en", "XNLI: the language trained (multinli.train.<language>.tsv) "
                                  "and evaluated.")
    do_train: bool = setting(True, "Train; false: evaluate and predict with the finetuned model "
                                   "of --init_checkpoint.")
    do_eval: bool = setting(True, "Evaluate on the dev file(s), after every epoch and at the "
                                  "end.")
    do_predict: bool = setting(False, "With --task_name: predict its test file(s) into GLUE "
                                      "submission files in --output_dir.")
    eval_batch_size: int = setting(32, "Batch size for eval and predict.", above=0)
    train_file: str | None = setting(None, "Labelled training file (without --task_name).")
    eval_file: str | None = setting(None, "Labelled evaluation file (without --task_name).")
    predict_file: str | None = setting(None, "Texts to label; writes predictions.tsv.")
    input_format: str = setting("tsv", "File format (tsv/csv with a header row).",
                                choices=("tsv", "csv", "jsonl"))
    text_a_column: str = setting("text", "Column of the (first) text.")
    text_b_column: str | None = setting(None, "Column of the second text, for pair tasks.")
    label_column: str = setting("label", "Column of the label.")
    regression: bool = setting(False, "The label is a number to predict (one output, mean "
                                      "squared error), as STS-B's; implied by "
                                      "--task_name=stsb.")
    allow_unknown_labels: bool = setting(False, "Skip eval examples with labels unseen in "
                                                "training (with a warning) instead of failing.")
    model_name: str = setting("classifier", "Name of the exported model.")

    def check(self):
        problems = list(super().check())
        files = [f"--{n}" for n in ("train_file", "eval_file", "predict_file")
                 if getattr(self, n)]
        if self.task_name:
            if files:
                problems.append(f"--task_name reads its files from --data_dir; drop "
                                f"{', '.join(files)}")
            if not self.data_dir:
                problems.append(f"--task_name={self.task_name} needs --data_dir (its folder)")
            if self.task_name == "ax" and self.do_train:
                problems.append("--task_name=ax has no training data: give an MNLI run as "
                                "--init_checkpoint with --do_train=false --do_predict")
        else:
            if self.data_dir:
                problems.append("--data_dir needs --task_name (or give --train_file and "
                                "--eval_file)")
            if self.do_train and not self.train_file:
                problems.append("--train_file is needed (or --task_name, or --do_train=false)")
            if self.do_eval and not self.eval_file:
                problems.append("--eval_file is needed (or --task_name, or --do_eval=false)")
            if self.do_predict and not self.predict_file:
                problems.append("--do_predict needs --task_name or --predict_file")
        return problems


class Classification:
    """The classification task, and regression (see `harness.Task`)."""

    def __init__(self, config: ClassificationConfig):
        self.config = config
        self.glue = glue.DATASETS.get(config.task_name) if config.task_name else None
        self.regression = config.regression or bool(self.glue and self.glue.regression)
        self.name = REGRESSION if self.regression else CLASSIFICATION
        self.columns = Columns(config.text_a_column, config.label_column, config.text_b_column)

    # --- files ---

    def _files(self, log):
        """(training (path, examples) or None, [(dev set, path, examples)], [(output file,
        path, examples)]) of the task's files, as the flags ask."""
        config, task = self.config, self.glue
        if task is not None:
            read = dict(language=config.language, log=log)
            train = task.read_train(config.data_dir, **read) if config.do_train else None
            dev = task.read_dev(config.data_dir, **read) if config.do_eval else []
            test = task.read_test(config.data_dir, **read) if config.do_predict else []
            return train, dev, test

        def read(path, **kwargs):
            return path, read_examples(path, config.input_format, self.columns, **kwargs)

        train = read(config.train_file) if config.do_train else None
        dev = [("", *read(config.eval_file))] if config.do_eval else []
        test = ([(PREDICTIONS, *read(config.predict_file, require_label=False))]
                if config.predict_file else [])
        return train, dev, test

    def _labels(self, source, train):
        if self.regression:
            return []
        if self.glue is not None:
            return list(self.glue.labels)
        if train is not None:
            return sorted({e.label for e in train[1]})
        labels = source.checkpoint.record.get("labels") if source.checkpoint else None
        if not labels:
            raise ValueError("--do_train=false needs the finetuned run of this task as "
                             "--init_checkpoint (its labels)")
        return list(labels)

    def _targets(self, examples, labels, path, log=print, allow_unknown=False):
        """(kept examples, label ids or scores)."""
        if not self.regression:
            return label_ids(examples, labels, path, allow_unknown, log)
        scores = []
        for example in examples:
            try:
                score = float(example.label)
            except ValueError:
                raise InputFileError(f"{path}:{example.line}: the score {example.label!r} is not "
                                     f"a number") from None
            if not (math.isfinite(score) and abs(score) <= FLOAT32_MAX):
                # float() takes "nan", "inf" and "1e999": a model trained on one is NaN.
                raise InputFileError(f"{path}:{example.line}: the score {example.label!r} is not "
                                     f"finite in float32; a regression score must be")
            scores.append(score)
        return examples, np.array(scores, np.float32)

    def read(self, source, vocab, log):
        from bert_tf.text.preprocessing import Preprocessor

        config = self.config
        train, dev, test = self._files(log)
        labels = self._labels(source, train)
        preprocessor = Preprocessor(vocab, source.do_lower_case, config.max_seq_length)
        dev_sets = []  # (name, targets, batches): what `evaluate` scores
        for name, path, examples in dev:
            examples, targets = self._targets(examples, labels, path, log,
                                              config.allow_unknown_labels)
            dev_sets.append((name, targets,
                             self._batches(preprocessor, examples, targets).cache()))
        # (output file, input path, examples, batches): what `predict` writes
        test_sets = [(output, path, examples, self._batches(preprocessor, examples, None))
                     for output, path, examples in test]
        sets = ([train[1]] if train else []) + [examples for _, _, examples in dev + test]
        record = {"pair": bool(sets) and sets[0][0].text_b is not None,
                  "task_name": config.task_name}
        log((f"train: {len(train[1]):,} examples" if train else "train: none")
            + (f", {len(labels)} labels" if labels else ", regression")
            + "".join(f"; {name or 'eval'}: {len(targets):,} examples"
                      for name, targets, _ in dev_sets))
        data = harness.TaskData(labels, record=record, evaluation=dev_sets,
                                prediction=test_sets)
        if train is None:
            return data
        path, examples = train
        examples, targets = self._targets(examples, labels, path)
        # Repeated, so every epoch gets steps_per_epoch batches: grouping by length makes the
        # number of batches per pass vary, and Keras skips an epoch when a finite dataset of
        # unknown size runs out.
        steps = max(len(examples) // config.train_batch_size, 1)
        return dataclasses.replace(
            data, train=make_dataset(examples, targets, preprocessor, config.train_batch_size,
                                     shuffle=True, seed=config.random_seed,
                                     dynamic_padding=config.dynamic_padding).repeat(),
            steps_per_epoch=steps)

    def _batches(self, preprocessor, examples, targets):
        return make_dataset(examples, targets, preprocessor, self.config.eval_batch_size,
                            dynamic_padding=self.config.dynamic_padding)

    # --- the model's part ---

    def compile_args(self):
        import keras

        if self.regression:
            return {"loss": keras.losses.MeanSquaredError()}
        return {"loss": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                "metrics": ["accuracy"]}

    def _metrics(self, targets, outputs, labels):
        loss = float(self.compile_args()["loss"](targets, outputs))
        if self.regression:
            return {**regression_metrics(targets, outputs), "loss": loss}
        return {**classification_metrics(targets, np.argmax(outputs, -1), len(labels)),
                "loss": loss}

    def evaluate(self, model, data, log):
        """One dev set's metrics, or {dev set: metrics} (MNLI's matched and mismatched)."""
        results = {name: self._metrics(targets, predict(model, batches), data.labels)
                   for name, targets, batches in data.evaluation}
        return results.get("", results) or None

    def score(self, results) -> float:
        """What the best epoch is chosen by: the GLUE task's score (the mean of its metrics);
        otherwise accuracy, or Pearson correlation for regression."""
        if self.glue is not None:
            return self.glue.score(results)
        return results["pearson" if self.regression else "accuracy"]

    def predict(self, model, data, log):
        written = []
        for output, path, examples, batches in data.prediction:
            outputs = predict(model, batches)
            target = os.path.join(self.config.output_dir, output)
            if self.glue is not None:
                harness.write_tsv(target, ["index", "prediction"], submission_rows(
                    examples, outputs, data.labels))
            else:
                header, rows = prediction_rows(examples, outputs, data.labels)
                harness.write_tsv(target, header, rows)
            log(f"predictions: {len(examples):,} rows of {path} -> {target}")
            written.append(target)
        return ", ".join(written) or None


PREDICTIONS = "predictions.tsv"


def submission_rows(examples, outputs, labels):
    """A GLUE submission's rows: the test file's index and the predicted label as the server
    reads it (a score clipped to [0, 5] for STS-B)."""
    for position, (example, output) in enumerate(zip(examples, outputs)):
        index = example.index if example.index is not None else position
        yield [index, labels[int(np.argmax(output))] if labels
               else f"{float(np.clip(output, 0.0, 5.0)):.3f}"]


def prediction_rows(examples, outputs, labels):
    """(header, rows) of predictions.tsv: each example's line, its label and the probabilities
    (or its score)."""
    if not labels:
        return ["line", "score"], ([e.line, f"{float(o):.6f}"] for e, o in zip(examples, outputs))
    probabilities = tf.nn.softmax(outputs).numpy()
    return (["line", "prediction"] + [f"p_{label}" for label in labels],
            ([example.line, labels[int(np.argmax(p))]] + [f"{x:.6f}" for x in p]
             for example, p in zip(examples, probabilities)))


def run(config: ClassificationConfig, log=print):
    """Finetunes, evaluates, predicts and exports (bert_tf.finetuning.harness); returns the eval
    metrics, the export's path and the labels."""
    return harness.run(config, Classification(config), log)
