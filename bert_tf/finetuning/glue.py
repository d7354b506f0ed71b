"""The GLUE tasks and XNLI by name: where each task's files lie, how they are laid out, its labels
in GLUE's order, the metrics it is judged by, and its submission files.

    task = DATASETS["mrpc"]
    path, examples = task.read_train(data_dir)                   # [Example, ...]
    for name, path, examples in task.read_dev(data_dir): ...     # MNLI: matched, mismatched
    for submission, path, examples in task.read_test(data_dir): ...  # "MRPC.tsv", ...

`data_dir` is the task's folder as GLUE distributes it (GLUE_DIR/MRPC, GLUE_DIR/MNLI, ...; for
XNLI the folder holding xnli.dev.tsv, xnli.test.tsv and multinli/multinli.train.<language>.tsv).
Files are tab-separated without quoting (google-research/bert reads them so: MNLI's texts hold
bare quotes); CoLA's train and dev files have no header row, every other file has one, and
columns are found by the names in it. `ax` (GLUE's diagnostic set) has only a test file; it is
predicted by an MNLI model.
"""

from __future__ import annotations

import dataclasses
import os

import tensorflow as tf

from bert_tf.finetuning.labelled_files import Columns, InputFileError, read_examples

ACCURACY, F1, MCC, PEARSON, SPEARMAN = "accuracy", "f1", "mcc", "pearson", "spearman"
NLI_LABELS = ("contradiction", "entailment", "neutral")
ENTAILMENT = ("entailment", "not_entailment")
BINARY = ("0", "1")
COLA_COLUMNS = ("source", "label", "original_label", "sentence")


@dataclasses.dataclass(frozen=True)
class Split:
    """One file of a task: its name in data_dir (the first that exists of `files`), the columns
    of its texts and label, and what a file without a header row calls its columns."""
    files: tuple
    columns: Columns
    header: tuple | None = None
    index_column: str | None = None  # test files: the id the GLUE server expects back
    name: str = ""  # dev sets: "matched", ...; test files: the submission file
    language_column: str | None = None  # XNLI's dev and test files hold every language


@dataclasses.dataclass(frozen=True)
class GlueTask:
    name: str  # the --task_name
    title: str  # GLUE's spelling, e.g. "SST-2"
    labels: tuple | None  # in GLUE's order; None: a regression task (STS-B)
    metrics: tuple  # the dev metrics; their mean is the task's score
    train: Split | None
    dev: tuple  # of Split
    test: tuple  # of Split
    label_map: tuple = ()  # (label as written, label) pairs: XNLI's "contradictory"
    skip_malformed: bool = False  # QQP's files have rows with missing fields
    predicted_by: str | None = None  # the task whose finetuned model predicts it (AX: MNLI's)
    folder: str = ""  # GLUE_DIR's folder of the task, as GLUE's download script names it

    @property
    def regression(self) -> bool:
        return self.labels is None

    def read_train(self, data_dir, language="en", log=print):
        """(path, examples) of the training file."""
        if self.train is None:
            raise ValueError(f"--task_name={self.name} has no training data: it is predicted by "
                             f"a finetuned {self.predicted_by or self.name} model "
                             f"(give its run as --init_checkpoint with --do_train=false)")
        return self._read(data_dir, self.train, language, log)

    def read_dev(self, data_dir, language="en", log=print):
        """[(dev set name, path, examples)]: one set, or MNLI's matched and mismatched."""
        return [(split.name, *self._read(data_dir, split, language, log)) for split in self.dev]

    def read_test(self, data_dir, language="en", log=print):
        """[(submission file name, path, examples)]."""
        return [(split.name.format(language=language),
                 *self._read(data_dir, split, language, log, require_label=False))
                for split in self.test]

    def _read(self, data_dir, split: Split, language, log, require_label=True):
        path = find(data_dir, split.files, self.name, language)
        column = split.language_column
        keep = (lambda row: row.get(column) == language) if column else None  # noqa: E731
        columns = dataclasses.replace(split.columns, index=split.index_column,
                                      header=split.header)
        examples = read_examples(path, "tsv", columns, require_label=require_label, keep=keep,
                                 skip_malformed=self.skip_malformed, log=log,
                                 kept=f"with {column} {language!r} (--language)")
        if self.label_map and require_label:
            mapping = dict(self.label_map)
            examples = [e._replace(label=mapping.get(e.label, e.label)) for e in examples]
        return path, examples

    def score(self, results) -> float:
        """The task's GLUE score from its dev results ({set name: metrics}, or one set's
        metrics): the mean of its metrics over its dev sets."""
        sets = [results[split.name] for split in self.dev] if len(self.dev) > 1 else [results]
        values = [metrics[name] for metrics in sets for name in self.metrics]
        return float(sum(values) / len(values))


def find(data_dir, files, task, language="en"):
    """The first of `files` (relative to data_dir) that exists; else an error naming them."""
    candidates = [os.path.join(data_dir, f.format(language=language)) for f in files]
    for path in candidates:
        if tf.io.gfile.exists(path):
            return path
    raise InputFileError(f"--data_dir {data_dir}: no {' or '.join(candidates)} for "
                         f"--task_name={task}")


def _task(name, title, labels, metrics, columns, dev=("dev.tsv",), index="index", **kwargs):
    """A task whose files are train.tsv, dev.tsv and test.tsv with header rows."""
    return GlueTask(name, title, labels, metrics, Split(("train.tsv",), columns),
                    (Split(dev, columns),),
                    (Split(("test.tsv",), dataclasses.replace(columns, label=None),
                           index_column=index, name=f"{title}.tsv"),), **kwargs)


def _mnli():
    columns = Columns("sentence1", "gold_label", "sentence2")
    test = Columns("sentence1", None, "sentence2")
    return GlueTask(
        "mnli", "MNLI", NLI_LABELS, (ACCURACY,), Split(("train.tsv",), columns),
        (Split(("dev_matched.tsv",), columns, name="matched"),
         Split(("dev_mismatched.tsv",), columns, name="mismatched")),
        (Split(("test_matched.tsv",), test, index_column="index", name="MNLI-m.tsv"),
         Split(("test_mismatched.tsv",), test, index_column="index", name="MNLI-mm.tsv")))


def _xnli():
    evaluation = Columns("sentence1", "gold_label", "sentence2")
    return GlueTask(
        "xnli", "XNLI", NLI_LABELS, (ACCURACY,),
        Split(("multinli/multinli.train.{language}.tsv",
               "XNLI-MT-1.0/multinli/multinli.train.{language}.tsv"),
              Columns("premise", "label", "hypo")),
        (Split(("xnli.dev.tsv", "XNLI-1.0/xnli.dev.tsv"), evaluation,
               language_column="language"),),
        (Split(("xnli.test.tsv", "XNLI-1.0/xnli.test.tsv"), Columns("sentence1", None, "sentence2"),
               name="XNLI-{language}.tsv", language_column="language"),),
        label_map=(("contradictory", "contradiction"),))


DATASETS = {task.name: task for task in (
    GlueTask("cola", "CoLA", BINARY, (MCC,),
             Split(("train.tsv",), Columns("sentence", "label"), header=COLA_COLUMNS),
             (Split(("dev.tsv",), Columns("sentence", "label"), header=COLA_COLUMNS),),
             (Split(("test.tsv",), Columns("sentence", None), index_column="index",
                    name="CoLA.tsv"),)),
    _task("sst2", "SST-2", BINARY, (ACCURACY,), Columns("sentence", "label")),
    _task("mrpc", "MRPC", BINARY, (F1, ACCURACY), Columns("#1 String", "Quality", "#2 String")),
    _task("stsb", "STS-B", None, (PEARSON, SPEARMAN),
          Columns("sentence1", "score", "sentence2")),
    _task("qqp", "QQP", BINARY, (F1, ACCURACY), Columns("question1", "is_duplicate", "question2"),
          index="id", skip_malformed=True),
    _mnli(),
    _task("qnli", "QNLI", ENTAILMENT, (ACCURACY,), Columns("question", "label", "sentence")),
    _task("rte", "RTE", ENTAILMENT, (ACCURACY,), Columns("sentence1", "label", "sentence2")),
    _task("wnli", "WNLI", BINARY, (ACCURACY,), Columns("sentence1", "label", "sentence2")),
    GlueTask("ax", "AX", NLI_LABELS, (), None, (),
             (Split(("AX.tsv", "diagnostic.tsv", "test.tsv"),
                    Columns("sentence1", None, "sentence2"), index_column="index",
                    name="AX.tsv"),), predicted_by="mnli"),
    _xnli())}

# GLUE_DIR's folder of each task, as GLUE's download script names them
_FOLDERS = {"cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "stsb": "STS-B", "qqp": "QQP",
            "mnli": "MNLI", "qnli": "QNLI", "rte": "RTE", "wnli": "WNLI", "ax": "diagnostic",
            "xnli": "XNLI"}
DATASETS = {name: dataclasses.replace(task, folder=_FOLDERS[name])
            for name, task in DATASETS.items()}
