"""Every GLUE task found in GLUE_DIR, finetuned from one encoder: a learning-rate sweep per task
(the BERT paper's: 2e-5 to 5e-5, batch 32, 3 epochs), the best rate by dev score, one table of
dev scores with the GLUE average, and the submission files in one folder
(`python -m bert_tf.run_glue` is its command line).

    output_dir/<task>/lr_<rate>/      each run (a run directory, as run_classifier writes it)
    output_dir/submission/<Task>.tsv  the best run's test predictions (MNLI-m, MNLI-mm, AX, ...)
    output_dir/results.md, results.json

A task whose run has finished (its export is written) is not run again, so a killed suite
resumes where it stopped; a finished run made with other settings is refused, not reported as
this command's. AX (GLUE's diagnostic set) is predicted by the best MNLI run.
"""

from __future__ import annotations

import dataclasses
import os
import time

import tensorflow as tf

from bert_tf import io, run_dir
from bert_tf.finetuning import glue
from bert_tf.finetuning.classification import ClassificationConfig, run
from bert_tf.finetuning.fitting import distribute
from bert_tf.finetuning.job_settings import FinetuningConfig
from bert_tf.training.summaries import format_seconds
from bert_tf.finetuning.resume import changed_settings, job_settings
from bert_tf.run_dir import RunDir
from bert_tf.settings import flat_dict, setting
from bert_tf.training import strategy as strategies

PAPER_RATES = "2e-5,3e-5,4e-5,5e-5"
GLUE_TASKS = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")


@dataclasses.dataclass(frozen=True)
class GlueSuiteConfig(FinetuningConfig):
    """The settings of a GLUE suite (the command line's flags); the finetuning flags apply to
    every task."""
    data_dir: str = setting(None, "GLUE_DIR: a folder with CoLA/, SST-2/, MRPC/, STS-B/, QQP/, "
                                  "MNLI/, QNLI/, RTE/, WNLI/ and diagnostic/ as distributed.",
                            required=True)
    tasks: str = setting("", "Comma list of tasks to run (cola, sst2, ...); empty: every task "
                             "found in --data_dir.")
    learning_rates: str = setting("", "Comma list of learning rates to sweep per task (the "
                                      "best by dev score is kept); 'paper': " + PAPER_RATES
                                      + "; empty: --learning_rate.")
    eval_batch_size: int = setting(32, "Batch size for eval and predict.", above=0)
    do_predict: bool = setting(True, "Write the GLUE server's submission files.")
    model_name: str = setting("classifier", "Name of each run's export.")

    def check(self):
        problems = list(super().check())
        unknown = [t for t in self.task_list() if t not in GLUE_TASKS]
        if unknown:
            problems.append(f"--tasks: unknown {', '.join(unknown)}; GLUE's are "
                            f"{', '.join(GLUE_TASKS)}")
        try:
            rates = self.rates()
        except ValueError:
            rates = None
        if rates is None or any(r <= 0 for r in rates):
            problems.append(f"--learning_rates must be 'paper' or a comma list of positive "
                            f"numbers, got {self.learning_rates!r}")
        return problems

    def task_list(self):
        return [t.strip() for t in self.tasks.split(",") if t.strip()]

    def rates(self):
        text = PAPER_RATES if self.learning_rates.strip() == "paper" else self.learning_rates
        return [float(r) for r in text.split(",") if r.strip()] or [self.learning_rate]


def found_tasks(data_dir):
    """The GLUE tasks whose folder holds a train.tsv, in GLUE's order."""
    return [task for task in GLUE_TASKS if tf.io.gfile.exists(
        os.path.join(data_dir, glue.DATASETS[task].folder, "train.tsv"))]


def _task_config(config: GlueSuiteConfig, task, output_dir, **changes):
    shared = {f.name for f in dataclasses.fields(FinetuningConfig)}
    values = {name: value for name, value in flat_dict(config).items() if name in shared}
    values.update(output_dir=output_dir, task_name=task, eval_batch_size=config.eval_batch_size,
                  data_dir=os.path.join(config.data_dir, glue.DATASETS[task].folder),
                  do_predict=config.do_predict)
    values.update(changes)
    return ClassificationConfig(**values)


def _finished(task_config: ClassificationConfig) -> bool:
    """Whether the run of `task_config` has finished before (its export and eval results are
    written). One made with other settings is refused: its results would be reported as this
    command's."""
    output_dir = task_config.output_dir
    run = RunDir(output_dir)
    if not (tf.io.gfile.exists(run.eval_results)
            and tf.io.gfile.exists(os.path.dirname(run.export("")))):
        return False
    changed = changed_settings(run_dir.read_record(output_dir).get("flags", {}),
                               job_settings(task_config))
    if changed:
        raise ValueError(
            f"--output_dir: {output_dir} holds a finished run made with other settings "
            f"({', '.join(changed)}); its results are not this command's. Nothing was changed: "
            f"use another --output_dir, or remove {output_dir} to run it again")
    return True


def run_suite(config: GlueSuiteConfig, log=print):
    """Runs the tasks; returns {"tasks": {task: row}, "average": GLUE average} (also written to
    results.json and results.md in --output_dir)."""
    tasks = config.task_list() or found_tasks(config.data_dir)
    if not tasks:
        raise ValueError(f"--data_dir {config.data_dir}: no GLUE task folder with a train.tsv "
                         f"(CoLA/, SST-2/, MRPC/, ...)")
    # one strategy for every job; a worker that is not the chief writes in a folder of its own
    strategy, _ = distribute(config, log)
    with strategies.own_output_dir(config.output_dir, strategy) as own:
        return _run_tasks(dataclasses.replace(config, output_dir=own), tasks, log)


def _run_tasks(config: GlueSuiteConfig, tasks, log):
    submission = os.path.join(config.output_dir, "submission")
    tf.io.gfile.makedirs(submission)
    rows = {}
    for number, task in enumerate(tasks, start=1):
        spec = glue.DATASETS[task]
        start = time.monotonic()
        runs = {}
        for rate in config.rates():
            output_dir = os.path.join(config.output_dir, task, f"lr_{rate:g}")
            task_config = _task_config(config, task, output_dir, learning_rate=rate)
            if not _finished(task_config):
                run(task_config,
                    log=lambda line, prefix=f"[{task} lr={rate:g}] ": log(prefix + line))
            runs[rate] = (output_dir, io.read_json(RunDir(output_dir).eval_results))
        rate, (best_dir, results) = max(runs.items(), key=lambda item: item[1][1]["score"])
        rows[task] = {"title": spec.title, "score": results["score"], "learning_rate": rate,
                      "epoch": results.get("epoch"), "metrics": _metrics(spec, results),
                      "run": best_dir,
                      "sweep": {f"{r:g}": runs[r][1]["score"] for r in runs}}
        if config.do_predict:
            _collect(spec, best_dir, submission)
            if task == glue.DATASETS["ax"].predicted_by:
                _diagnostic(config, best_dir, submission, log)
        log(f"[{number}/{len(tasks)}] {spec.title}: score {results['score']:.4f} ("
            + ", ".join(f"{k} {v:.4f}" for k, v in rows[task]["metrics"].items())
            + f") at lr {rate:g} in {format_seconds(time.monotonic() - start)}")
    average = sum(row["score"] for row in rows.values()) / len(rows)
    summary = {"tasks": rows, "average": average, "submission": submission if config.do_predict
               else None}
    io.write_json(os.path.join(config.output_dir, "results.json"), summary)
    table = results_table(summary)
    io.write_file(os.path.join(config.output_dir, "results.md"), table)
    log(table)
    return summary


def _metrics(spec, results):
    """{metric: value} of a task's dev results, MNLI's as matched and mismatched."""
    if len(spec.dev) > 1:
        return {f"{name}_{metric}": results[name][metric] for name in results
                if isinstance(results[name], dict) for metric in spec.metrics}
    return {metric: results[metric] for metric in spec.metrics}


def _collect(spec, best_dir, submission):
    for split in spec.test:
        io.copy_file(os.path.join(best_dir, split.name), os.path.join(submission, split.name))


def _diagnostic(config, mnli_run, submission, log):
    """AX.tsv from the best MNLI run, when GLUE_DIR has the diagnostic set."""
    for folder in (glue.DATASETS["ax"].folder, "AX"):
        data_dir = os.path.join(config.data_dir, folder)
        try:
            glue.find(data_dir, glue.DATASETS["ax"].test[0].files, "ax")
        except ValueError:
            continue
        output_dir = os.path.join(config.output_dir, "ax")
        run(_task_config(config, "ax", output_dir, data_dir=data_dir, do_train=False,
                         do_eval=False, init_checkpoint=mnli_run, bert_config_file=None,
                         vocab_file=None),
            log=lambda line: log("[ax] " + line))
        io.copy_file(os.path.join(output_dir, "AX.tsv"), os.path.join(submission, "AX.tsv"))
        return


def results_table(summary) -> str:
    """A markdown table of the dev scores, one row per task, and the GLUE average."""
    lines = ["| task | score | metrics | learning rate | epoch |", "|---|---|---|---|---|"]
    for row in summary["tasks"].values():
        metrics = ", ".join(f"{k} {100 * v:.1f}" for k, v in row["metrics"].items())
        lines.append(f"| {row['title']} | {100 * row['score']:.1f} | {metrics} | "
                     f"{row['learning_rate']:g} | {row['epoch']} |")
    lines.append(f"| **average** | **{100 * summary['average']:.1f}** | | | |")
    return "\n".join(lines) + "\n"
