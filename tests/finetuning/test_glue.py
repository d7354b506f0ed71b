"""GLUE and XNLI by name: each task's layout, GLUE's metrics against scikit-learn and scipy, the
regression head and its export, submission files, the best epoch and the best learning rate,
and the suite's table."""

import json
import re

import keras
import numpy as np
import pytest
import scipy.stats
import sklearn.metrics
import tensorflow as tf

from bert_tf.finetuning import fitting, glue, glue_suite
from bert_tf.finetuning.classification import (ClassificationConfig, classification_metrics,
                                               regression_metrics, run)
from bert_tf.finetuning.glue_suite import GlueSuiteConfig, run_suite
from bert_tf.finetuning.labelled_files import InputFileError
from classification_fixtures import make_workspace
from glue_fixtures import NLI, SIZES, make_glue_dir, make_xnli_dir

SUITE_TASKS = ("cola", "stsb", "mnli", "ax")


def goods(text):
    return text.split().count("good")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("glue")
    return make_glue_dir(root / "glue"), make_xnli_dir(root / "xnli")


# === Layouts ===

@pytest.mark.parametrize("task", sorted(glue.DATASETS))
def test_every_task_reads_its_own_layout(task, data):
    """Each split's texts, labels and ids come from the columns GLUE (or XNLI) puts them in: the
    fixtures' labels follow the texts, so a column read from the wrong place shows."""
    glue_dir, xnli_dir = data
    spec = glue.DATASETS[task]
    data_dir = xnli_dir if task == "xnli" else glue_dir / glue.DATASETS[task].folder
    warnings = []
    splits = []
    if spec.train is not None:
        splits.append(("train", *spec.read_train(str(data_dir), log=warnings.append)))
    splits += [("dev", path, examples) for _, path, examples in spec.read_dev(str(data_dir))]
    tests = spec.read_test(str(data_dir))
    for split, path, examples in splits:
        assert len(examples) == SIZES[split], (split, path)
        for e in examples:
            pair = e.text_b is not None
            n = goods(e.text_a) + (goods(e.text_b) if pair else 0)
            expected = {"cola": str(n), "sst2": str(n), "mrpc": str(int(n == 2)),
                        "qqp": str(int(n == 2)), "wnli": str(int(n == 2)),
                        "stsb": f"{2.5 * n:.3f}", "mnli": NLI[n], "xnli": NLI[n],
                        "qnli": "entailment" if n == 2 else "not_entailment",
                        "rte": "entailment" if n == 2 else "not_entailment"}[task]
            assert e.label == expected, (split, e)
            if spec.labels:
                assert e.label in spec.labels
    assert [name for name, _, _ in tests] == [split.name.format(language="en")
                                              for split in spec.test]
    for name, path, examples in tests:
        assert len(examples) == SIZES["test"] and all(e.label is None for e in examples)
        if task != "xnli":  # GLUE's test files carry the index the server expects back
            assert [e.index for e in examples] == [str(i) for i in range(SIZES["test"])]
    if task == "qqp":
        assert any("skipped 1 row(s)" in w for w in warnings)
    if task == "mnli":
        assert any(e.text_a.startswith('"') or ' "the' in e.text_a for e in splits[0][2])


def test_glue_label_orders_and_xnli_languages(data):
    assert glue.DATASETS["mnli"].labels == ("contradiction", "entailment", "neutral")
    assert glue.DATASETS["qnli"].labels == glue.DATASETS["rte"].labels == ("entailment",
                                                                     "not_entailment")
    assert glue.DATASETS["stsb"].regression and not glue.DATASETS["cola"].regression
    _, xnli_dir = data
    path, german = glue.DATASETS["xnli"].read_train(str(xnli_dir), language="de")
    assert path.endswith("multinli.train.de.tsv") and len(german) == SIZES["train"]
    assert {e.label for e in german} <= set(NLI.values())  # "contradictory" mapped
    [(_, _, dev)] = glue.DATASETS["xnli"].read_dev(str(xnli_dir), language="de")
    assert len(dev) == SIZES["dev"]  # only the German rows of the shared file
    with pytest.raises(InputFileError, match=r"multinli.train.fr.tsv.*--task_name=xnli"):
        glue.DATASETS["xnli"].read_train(str(xnli_dir), language="fr")
    with pytest.raises(InputFileError, match=r"xnli.dev.tsv: no examples with language 'xx' "
                                             r"\(--language\)"):
        glue.DATASETS["xnli"].read_dev(str(xnli_dir), language="xx")


def test_bad_glue_flags_are_named(data, tmp_path):
    glue_dir, _ = data
    base = dict(output_dir=str(tmp_path / "o"), init_checkpoint="x")
    with pytest.raises(ValueError, match="--task_name reads its files from --data_dir; drop "
                                         "--train_file"):
        ClassificationConfig(task_name="mrpc", data_dir="d", train_file="t.tsv", **base)
    with pytest.raises(ValueError, match="--task_name=mrpc needs --data_dir"):
        ClassificationConfig(task_name="mrpc", **base)
    with pytest.raises(ValueError, match="--task_name=ax has no training data"):
        ClassificationConfig(task_name="ax", data_dir="d", **base)
    with pytest.raises(ValueError, match="--train_file is needed"):
        ClassificationConfig(eval_file="e.tsv", **base)
    with pytest.raises(ValueError, match="--task_name must be one of"):
        ClassificationConfig(task_name="sst-2", data_dir="d", **base)
    with pytest.raises(InputFileError, match=r"--data_dir .*CoLA/missing: no .*dev.tsv for --task_name=cola"):
        glue.DATASETS["cola"].read_dev(str(glue_dir / "CoLA" / "missing"))
    with pytest.raises(ValueError, match="--learning_rates must be"):
        GlueSuiteConfig(data_dir="d", learning_rates="fast", **base)
    with pytest.raises(ValueError, match="--tasks: unknown xnli"):
        GlueSuiteConfig(data_dir="d", tasks="cola,xnli", **base)
    assert GlueSuiteConfig(data_dir="d", learning_rates="paper", **base).rates() == [
        2e-5, 3e-5, 4e-5, 5e-5]


# === Metrics ===

def test_classification_metrics_agree_with_scikit_learn():
    rng = np.random.default_rng(0)
    for classes in (2, 3):
        labels = rng.integers(0, classes, 500)
        predictions = np.where(rng.random(500) < 0.7, labels, rng.integers(0, classes, 500))
        ours = classification_metrics(labels, predictions, classes)
        assert ours["accuracy"] == pytest.approx(sklearn.metrics.accuracy_score(labels,
                                                                                 predictions))
        assert ours["mcc"] == pytest.approx(sklearn.metrics.matthews_corrcoef(labels,
                                                                               predictions))
        assert ours["macro_f1"] == pytest.approx(sklearn.metrics.f1_score(
            labels, predictions, average="macro"))
        if classes == 2:
            assert ours["f1"] == pytest.approx(sklearn.metrics.f1_score(labels, predictions))
    assert classification_metrics([1, 1, 1], [1, 1, 1], 2)["mcc"] == 0.0  # undefined -> 0


def test_regression_metrics_agree_with_scipy():
    rng = np.random.default_rng(0)
    targets = np.round(rng.uniform(0, 5, 400) * 2) / 2  # STS-B-like scores with many ties
    predictions = targets + rng.normal(0, 1, 400)
    predictions[:50] = np.round(predictions[:50])  # ties among predictions too
    ours = regression_metrics(targets, predictions)
    assert ours["pearson"] == pytest.approx(scipy.stats.pearsonr(targets, predictions)[0])
    assert ours["spearman"] == pytest.approx(scipy.stats.spearmanr(targets, predictions)[0])
    assert ours["mse"] == pytest.approx(np.mean((targets - predictions) ** 2))
    assert regression_metrics([1.0, 2.0], [3.0, 3.0])["pearson"] == 0.0


def test_the_kept_epoch_is_the_best_and_its_weights_are_restored(tmp_path):
    """EpochEvaluation on a one-weight model: scores 0.2, 0.9, 0.5 -> epoch 2 kept, its
    weights back in the model; with keep_best off, the last epoch."""
    for keep_best, kept in ((True, 2), (False, 3)):
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        scores = iter([0.2, 0.9, 0.5])
        weights = []

        def evaluate():
            weights.append(float(model.layers[0].kernel.numpy()[0, 0]))
            return {"accuracy": next(scores), "matched": {"accuracy": 0.5}}

        callback = fitting.EpochEvaluation(evaluate, lambda m: m["accuracy"],
                                           str(tmp_path / "best.weights.h5"), keep_best)
        logged = keras.callbacks.History()
        model.fit(np.ones((8, 1)), np.full((8, 1), 3.0), epochs=3, verbose=0,
                  callbacks=[callback, logged])
        results = callback.results()
        assert results["epoch"] == kept and results["epoch_scores"] == [0.2, 0.9, 0.5]
        assert results["kept"] == ("best" if keep_best else "last")
        assert float(model.layers[0].kernel.numpy()[0, 0]) == pytest.approx(weights[kept - 1])
        assert logged.history["val_score"] == [0.2, 0.9, 0.5]
        assert logged.history["val_matched_accuracy"] == [0.5] * 3


# === Runs: one suite over CoLA (no header), STS-B (regression), MNLI (two dev sets) and AX ===

@pytest.fixture(scope="module")
def suite(data, tmp_path_factory):
    glue_dir, _ = data
    root = tmp_path_factory.mktemp("suite")
    workspace = make_workspace(root)
    lines = []
    summary = run_suite(GlueSuiteConfig(
        data_dir=str(glue_dir), output_dir=str(root / "glue_runs"), tasks="cola,stsb,mnli",
        init_checkpoint=str(workspace / "pretrain" / "ckpt-1"), max_seq_length=32,
        train_batch_size=16, num_train_epochs=8, learning_rate=2e-3, mixed_precision="float32",
        log_steps=1000), log=lines.append)
    return summary, root / "glue_runs", lines, workspace / "pretrain" / "ckpt-1"


@pytest.mark.slow
def test_the_suite_learns_and_prints_one_table(suite):
    summary, output, lines, _ = suite
    assert list(summary["tasks"]) == ["cola", "stsb", "mnli"]
    cola, stsb, mnli = (summary["tasks"][t] for t in ("cola", "stsb", "mnli"))
    assert cola["metrics"]["mcc"] > 0.8, cola
    assert stsb["metrics"]["pearson"] > 0.7 and stsb["metrics"]["spearman"] > 0.7, stsb
    assert set(mnli["metrics"]) == {"matched_accuracy", "mismatched_accuracy"}
    assert summary["average"] == pytest.approx(np.mean([cola["score"], stsb["score"],
                                                        mnli["score"]]))
    assert json.loads((output / "results.json").read_text())["average"] == summary["average"]
    table = (output / "results.md").read_text()
    assert table in "\n".join(lines) + "\n"
    assert re.search(r"\| CoLA \| [\d.]+ \| mcc [\d.]+ \| 0.002 \| \d+ \|", table)
    assert f"**{100 * summary['average']:.1f}**" in table
    assert [line.split(":")[0] for line in lines if re.match(r"\[\d/3\]", line)] == [
        "[1/3] CoLA", "[2/3] STS-B", "[3/3] MNLI"]
    mnli_results = json.loads((output / "mnli" / "lr_0.002" / "eval_results.json").read_text())
    assert set(mnli_results["matched"]) >= {"accuracy", "mcc", "macro_f1", "loss"}
    assert mnli_results["score"] == pytest.approx(np.mean(
        [mnli_results["matched"]["accuracy"], mnli_results["mismatched"]["accuracy"]]))


@pytest.mark.slow
def test_submission_files_have_one_row_per_test_row_in_the_servers_format(suite, data):
    summary, output, _, _ = suite
    glue_dir, _ = data
    submission = output / "submission"
    assert sorted(p.name for p in submission.iterdir()) == [
        "AX.tsv", "CoLA.tsv", "MNLI-m.tsv", "MNLI-mm.tsv", "STS-B.tsv"]
    for name, labels in (("CoLA.tsv", {"0", "1"}), ("MNLI-m.tsv", set(NLI.values())),
                         ("MNLI-mm.tsv", set(NLI.values())), ("AX.tsv", set(NLI.values()))):
        rows = (submission / name).read_text().splitlines()
        assert rows[0] == "index\tprediction" and len(rows) == SIZES["test"] + 1, name
        assert [r.split("\t")[0] for r in rows[1:]] == [str(i) for i in range(SIZES["test"])]
        assert {r.split("\t")[1] for r in rows[1:]} <= labels
    # CoLA's test rows are learnable: the predictions follow the texts
    texts = [line.split("\t")[1] for line in (glue_dir / "CoLA" / "test.tsv").read_text()
             .splitlines()[1:]]
    predicted = [r.split("\t")[1] for r in (submission / "CoLA.tsv").read_text().splitlines()[1:]]
    assert np.mean([p == str(goods(t)) for p, t in zip(predicted, texts)]) > 0.9
    scores = [float(r.split("\t")[1]) for r in
              (submission / "STS-B.tsv").read_text().splitlines()[1:]]
    assert len(scores) == SIZES["test"] and all(0.0 <= s <= 5.0 for s in scores)


@pytest.mark.slow
def test_sts_b_export_serves_scores_and_the_best_epoch_is_what_was_kept(suite, data):
    """The regression export's `score` on the dev texts gives the Pearson and Spearman of
    eval_results.json, which are the best epoch's: the kept weights are the best epoch's."""
    summary, output, _, _ = suite
    glue_dir, _ = data
    run_dir = output / "stsb" / "lr_0.002"
    results = json.loads((run_dir / "eval_results.json").read_text())
    assert results["epoch"] == int(np.argmax(results["epoch_scores"])) + 1
    assert results["score"] == pytest.approx(max(results["epoch_scores"]))
    _, _, dev = glue.DATASETS["stsb"].read_dev(str(glue_dir / "STS-B"))[0]
    served = tf.saved_model.load(str(run_dir / "export" / "classifier" / "1")).signatures[
        "serving_default"](text=tf.constant([e.text_a for e in dev]),
                           text_b=tf.constant([e.text_b for e in dev]))
    assert set(served) == {"score"}
    scores = served["score"].numpy()
    targets = [float(e.label) for e in dev]
    assert scipy.stats.pearsonr(targets, scores)[0] == pytest.approx(results["pearson"],
                                                                     abs=1e-4)
    assert scipy.stats.spearmanr(targets, scores)[0] == pytest.approx(results["spearman"],
                                                                      abs=1e-4)
    record = json.loads((run_dir / "run_config.json").read_text())
    assert record["task"] == "regression" and record["task_name"] == "stsb"


@pytest.mark.slow
def test_a_finished_suite_resumes_and_the_sweep_keeps_each_tasks_best_rate(suite, data,
                                                                          tmp_path):
    """Finished runs are read, not run again: with a second (faked, finished) learning rate
    that scores higher for CoLA, the table takes it for CoLA; STS-B's second rate runs, and
    the better of its two is kept."""
    import shutil

    summary, output, _, pretrained = suite
    glue_dir, _ = data
    copy = tmp_path / "glue_runs"
    shutil.copytree(output, copy)
    faked = copy / "cola" / "lr_0.001"
    shutil.copytree(copy / "cola" / "lr_0.002", faked)
    results = json.loads((faked / "eval_results.json").read_text())
    (faked / "eval_results.json").write_text(json.dumps({**results, "score": 1.5, "mcc": 1.5}))
    (faked / "CoLA.tsv").write_text("index\tprediction\n0\tfaked\n")
    record = json.loads((faked / "run_config.json").read_text())
    record["flags"]["learning_rate"] = 0.001  # as a run at that rate records it
    (faked / "run_config.json").write_text(json.dumps(record))
    lines = []
    settings = dict(data_dir=str(glue_dir), output_dir=str(copy), tasks="cola,stsb",
                    learning_rates="0.002,0.001", init_checkpoint=str(pretrained),
                    max_seq_length=32, train_batch_size=16, num_train_epochs=8,
                    mixed_precision="float32")
    resumed = run_suite(GlueSuiteConfig(**settings), log=lines.append)
    assert resumed["tasks"]["cola"]["learning_rate"] == 0.001
    assert resumed["tasks"]["cola"]["sweep"] == {"0.002": summary["tasks"]["cola"]["score"],
                                                 "0.001": 1.5}
    assert (copy / "submission" / "CoLA.tsv").read_text() == "index\tprediction\n0\tfaked\n"
    assert not any(line.startswith("[cola") for line in lines)  # nothing of CoLA re-ran
    assert any(line.startswith("[stsb lr=0.001]") for line in lines)
    stsb = resumed["tasks"]["stsb"]
    assert stsb["score"] == max(stsb["sweep"].values()) and len(stsb["sweep"]) == 2
    # The same folder with other settings: refused before anything runs or is rewritten, not
    # reported as this command's results.
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    for change in (dict(max_seq_length=24), dict(num_train_epochs=2),
                   dict(init_checkpoint=str(faked))):
        with pytest.raises(ValueError, match=r"cola/lr_0.002 holds a finished run made with "
                                             rf"other settings \(--{next(iter(change))}="):
            run_suite(GlueSuiteConfig(**{**settings, **change}), log=lines.append)
    assert {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_predicting_without_training_needs_the_tasks_finetuned_run(suite, data, tmp_path):
    summary, _, _, pretrained = suite
    glue_dir, _ = data
    with pytest.raises(ValueError, match="predicting without training needs a finetuned"):
        run(ClassificationConfig(task_name="ax", data_dir=str(glue_dir / "diagnostic"),
                                 output_dir=str(tmp_path / "ax"), init_checkpoint=str(pretrained),
                                 do_train=False, do_predict=True, max_seq_length=32),
            log=lambda _: None)
    # the kept CoLA run evaluated again scores what its eval_results.json says
    again = run(ClassificationConfig(task_name="cola", data_dir=str(glue_dir / "CoLA"),
                                     output_dir=str(tmp_path / "cola"), do_train=False,
                                     init_checkpoint=summary["tasks"]["cola"]["run"],
                                     max_seq_length=32, mixed_precision="float32"),
                log=lambda _: None)
    assert again["mcc"] == pytest.approx(summary["tasks"]["cola"]["metrics"]["mcc"], abs=1e-6)


def test_the_suite_needs_task_folders(tmp_path):
    with pytest.raises(ValueError, match="no GLUE task folder with a train.tsv"):
        run_suite(GlueSuiteConfig(data_dir=str(tmp_path), output_dir=str(tmp_path / "o"),
                                  init_checkpoint="x"))
    assert glue_suite.found_tasks(str(tmp_path)) == []


@pytest.mark.slow
def test_regression_from_generic_files_predicts_scores(suite, data, tmp_path):
    """--regression with the generic column flags: the STS-B run evaluates STS-B's dev file read
    by column names to the same correlations, and writes a score per row."""
    summary, output, _, _ = suite
    glue_dir, _ = data
    dev = str(glue_dir / "STS-B" / "dev.tsv")
    common = dict(output_dir=str(tmp_path / "o"), init_checkpoint=summary["tasks"]["stsb"]["run"],
                  regression=True, do_train=False, text_a_column="sentence1",
                  text_b_column="sentence2", label_column="score", max_seq_length=32,
                  mixed_precision="float32")
    result = run(ClassificationConfig(eval_file=dev, predict_file=dev, **common),
                 log=lambda _: None)
    assert result["pearson"] == pytest.approx(summary["tasks"]["stsb"]["metrics"]["pearson"],
                                              abs=1e-6)
    rows = (tmp_path / "o" / "predictions.tsv").read_text().splitlines()
    assert rows[0] == "line\tscore" and len(rows) == SIZES["dev"] + 1
    assert [int(r.split("\t")[0]) for r in rows[1:]] == list(range(2, SIZES["dev"] + 2))
    bad = tmp_path / "bad.tsv"
    bad.write_text("sentence1\tsentence2\tscore\na\tb\thigh\n")
    with pytest.raises(InputFileError, match=r"bad.tsv:2: the score 'high' is not a number"):
        run(ClassificationConfig(eval_file=str(bad), **common), log=lambda _: None)


@pytest.mark.slow
def test_a_regression_run_is_refused_by_conversion(suite, tmp_path):
    from bert_tf.checkpoints.convert import convert

    summary, _, _, _ = suite
    with pytest.raises(ValueError, match="a regression run .* export it for serving"):
        convert("bert_tf", summary["tasks"]["stsb"]["run"], "huggingface", str(tmp_path / "hf"),
                log=lambda _: None)
    assert not (tmp_path / "hf").exists()
