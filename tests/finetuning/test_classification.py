"""Finetuning with fit(): learnable single and pair tasks, checkpoint loading, export, metrics."""

import glob
import json
import os
import random
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from bert_tf import run_dir
from bert_tf.config import BertConfig
from bert_tf.finetuning import classification as classifier
from bert_tf.finetuning import labelled_files
from bert_tf.finetuning.batching import length_buckets
from bert_tf.finetuning.classification import run
from bert_tf.modeling import build_classifier
from bert_tf.finetuning.labelled_files import Example
from bert_tf.modeling import build_pretrainer
from bert_tf.text.preprocessing import Preprocessor
from classification_fixtures import WORDS, make_workspace, values

@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("cls"))


@pytest.fixture(scope="module")
def single_run(workspace):
    start = time.time()
    result = run(values(workspace, "single", workspace / "single_out",
                        predict_file=str(workspace / "single_dev.tsv"), profile_steps="3,4"),
                 log=lambda _: None)
    result["seconds"] = time.time() - start
    return result


def test_single_sentence_task_is_learned(single_run, workspace):
    assert single_run["accuracy"] >= 0.95, single_run
    assert single_run["labels"] == ["negative", "positive"]
    assert {"macro_f1", "f1", "mcc", "score", "epoch", "epoch_scores"} <= set(single_run)
    out = workspace / "single_out"
    assert json.loads((out / "eval_results.json").read_text())["accuracy"] == single_run[
        "accuracy"]
    assert json.loads((out / "labels.json").read_text()) == ["negative", "positive"]
    lines = (out / "predictions.tsv").read_text().splitlines()
    assert lines[0] == "line\tprediction\tp_negative\tp_positive" and len(lines) == 121
    assert any(name.startswith("events.out") for _, _, files in os.walk(out / "train")
               for name in files)
    assert glob.glob(str(out / "train" / "plugins" / "profile" / "*" / "*.xplane.pb"))
    run_config = json.loads((out / "run_config.json").read_text())
    assert run_config["task"] == "classification" and run_config["flags"]["profile_steps"] == "3,4"
    assert run_config["precision"] == {"policy": "float32", "reason": "set by --mixed_precision"}


def test_the_job_s_flags_are_an_hparams_session_with_its_epoch_metrics(single_run, workspace):
    """TensorBoard's HParams tab: the job's flags as one session, and the columns of the
    epoch metrics the TensorBoard callback writes (validation/epoch_score: the task's score)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    out = workspace / "single_out"
    accumulator = EventAccumulator(str(out), size_guidance={"tensors": 0})
    accumulator.Reload()
    found = {}
    for tag in accumulator.Tags()["tensors"]:
        plugin = accumulator.SummaryMetadata(tag).plugin_data
        if plugin.plugin_name == metadata.PLUGIN_NAME:
            data = plugin_data_pb2.HParamsPluginData.FromString(plugin.content)
            found[data.WhichOneof("data")] = data
    session = found["session_start_info"].session_start_info
    assert session.group_name == "single_out"
    flags = json.loads((out / "run_config.json").read_text())["flags"]
    assert session.hparams["learning_rate"].number_value == pytest.approx(flags["learning_rate"])
    assert session.hparams["remat"].string_value == "none"
    columns = {(m.name.group, m.name.tag) for m in found["experiment"].experiment.metric_infos}
    assert ("validation", "epoch_score") in columns
    scores = EventAccumulator(str(out / "validation"), size_guidance={"tensors": 0})
    scores.Reload()
    assert "epoch_score" in scores.Tags()["tensors"]  # the column has values


@pytest.mark.slow
def test_pair_task_is_learned(workspace):
    result = run(values(workspace, "pair", workspace / "pair_out", num_train_epochs=10),
                 log=lambda _: None)
    assert result["accuracy"] >= 0.95, result


TF_ONLY = """
import json, sys
import numpy as np
import tensorflow as tf
import tensorflow_text
assert "bert_tf" not in sys.modules
model = tf.saved_model.load(sys.argv[1])
out = model.signatures["serving_default"](text=tf.constant(json.loads(sys.argv[2])))
print(json.dumps({"probabilities": out["probabilities"].numpy().tolist(),
                  "label": [x.decode() for x in out["label"].numpy()]}))
"""


def test_exported_classifier_matches_keras_in_a_tensorflow_only_process(single_run, workspace):
    texts = ["the cat was good .", "a dog ran under the bad table .", ""]
    result = subprocess.run([sys.executable, "-c", TF_ONLY, single_run["export"],
                             json.dumps(texts)], capture_output=True, text=True, timeout=300,
                            cwd=str(workspace))
    assert result.returncode == 0, result.stderr[-2000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    assert served["label"][:2] == ["positive", "negative"]
    # The same probabilities as the Keras model loaded from the run's best/ (pretraining's
    # layout: ckpt-EPOCH and info.json), which `export --checkpoint=best` exports.
    from bert_tf.export.runs import export_run
    from bert_tf.text.tokenization import load_vocab
    out = workspace / "single_out"
    info = json.loads((out / "best" / "info.json").read_text())
    assert (info["step"], info["metric"], info["value"], info["kept"]) == (
        single_run["epoch"], "score", single_run["score"], "best")
    assert info["checkpoint"] == f"ckpt-{single_run['epoch']}"
    assert sorted(os.listdir(out / "best")) == sorted(
        ["checkpoint", "info.json", f"ckpt-{info['step']}.index",
         f"ckpt-{info['step']}.data-00000-of-00001"])
    vocab = load_vocab(workspace / "pretrain" / "vocab.txt")
    model, _ = run_dir.load_model(run_dir.resolve("best", str(out)))
    assert len(export_run(run_dir.resolve("best", str(out)), str(out / "again"))) == 1
    preprocessor = Preprocessor(vocab, True, 32)  # kept: its functions hold weakrefs
    inputs = preprocessor.single(tf.constant(texts))
    expected = tf.nn.softmax(model(inputs, training=False)).numpy()
    np.testing.assert_allclose(served["probabilities"], expected, atol=1e-5)


def test_checkpoint_weights_are_loaded(workspace):
    config = BertConfig.from_json_file(workspace / "pretrain" / "bert_config.json")
    keras.utils.set_random_seed(0)
    original = build_pretrainer(config)  # the fixture's checkpoint was written from this seed
    keras.utils.set_random_seed(99)
    loaded = build_pretrainer(config)
    run_dir.load_model_weights(loaded, str(workspace / "pretrain" / "ckpt-1"))
    from bert_tf.text.tokenization import load_vocab
    preprocessor = Preprocessor(load_vocab(workspace / "pretrain" / "vocab.txt"),
                                           True, 16)
    inputs = preprocessor.single(tf.constant(["the cat"]))
    np.testing.assert_allclose(loaded.encoder(inputs)["pooled_output"],
                               original.encoder(inputs)["pooled_output"], atol=1e-6)


def test_metrics_agree_with_a_hand_count():
    labels = [0, 0, 0, 1, 1, 1, 1, 0]
    predictions = [0, 1, 0, 1, 1, 0, 1, 0]
    m = classifier.classification_metrics(labels, predictions, 2)
    # tp=3 fp=1 fn=1 tn=3
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["f1"] == pytest.approx(2 * 0.75 * 0.75 / 1.5)
    assert m["mcc"] == pytest.approx((3 * 3 - 1 * 1) / np.sqrt(4 * 4 * 4 * 4))
    assert m["macro_f1"] == pytest.approx(0.75)
    three = classifier.classification_metrics([0, 1, 2, 2], [0, 2, 2, 2], 3)
    assert three["accuracy"] == 0.75 and "f1" not in three
    assert three["macro_f1"] == pytest.approx((1 + 0 + 0.8) / 3)


def test_bad_inputs(workspace, tmp_path):
    columns = labelled_files.Columns("text", "label")
    bad = tmp_path / "bad.tsv"
    bad.write_text("text\tlabel\nfine\tpos\nno label\t\n")
    with pytest.raises(labelled_files.InputFileError, match=r"bad.tsv:3: empty label in column"):
        labelled_files.read_examples(str(bad), "tsv", columns)
    bad.write_text("sentence\tlabel\nx\ty\n")
    with pytest.raises(labelled_files.InputFileError, match=r"bad.tsv:1: missing column.s. text"):
        labelled_files.read_examples(str(bad), "tsv", columns)
    bad.write_bytes(b"text\tlabel\nok\tpos\nbro\xffken\tneg\n")
    with pytest.raises(labelled_files.InputFileError, match=r"bad.tsv:3: not valid UTF-8"):
        labelled_files.read_examples(str(bad), "tsv", columns)
    bad.write_bytes("\ufefftext\tlabel\nok\tpos\n".encode())  # a byte-order mark: read
    assert labelled_files.read_examples(str(bad), "tsv", columns)[0].label == "pos"
    bad.write_text("")
    with pytest.raises(labelled_files.InputFileError, match="bad.tsv: empty file"):
        labelled_files.read_examples(str(bad), "tsv", columns)
    jsonl = tmp_path / "x.jsonl"
    jsonl.write_text('{"text": "a", "label": "p"}\n{"label": "q"}\n')
    with pytest.raises(labelled_files.InputFileError, match=r"x.jsonl:2: missing column 'text'"):
        labelled_files.read_examples(str(jsonl), "jsonl", columns)
    bad.write_text("text\tlabel\nhello\tworld\tneg\n")  # a stray tab: not a third class
    with pytest.raises(labelled_files.InputFileError,
                       match=r"bad.tsv:2: 3 tab-separated fields, but the header has 2"):
        labelled_files.read_examples(str(bad), "tsv", columns)
    bad.write_text("text,label\n\"one, two\",pos\nthree,four,neg\n")
    with pytest.raises(labelled_files.InputFileError,
                       match=r"bad.tsv:3: 3 comma-separated fields, but the header has 2"):
        labelled_files.read_examples(str(bad), "csv", columns)
    examples = [("a", None, "p", 2), ("b", None, "zzz", 3)]
    with pytest.raises(labelled_files.InputFileError, match=r"dev.tsv:3: label 'zzz' is not in"):
        labelled_files.label_ids(examples, ["p"], "dev.tsv")
    kept, ids = labelled_files.label_ids(examples, ["p"], "dev.tsv", allow_unknown=True,
                                     log=lambda _: None)
    assert len(kept) == 1 and ids.tolist() == [0]
    with pytest.raises(ValueError, match="exactly one of --init_checkpoint and "
                                         "--encoder_saved_model .got neither"):
        run(values(workspace, "single", tmp_path / "o", init_checkpoint=None))
    with pytest.raises(ValueError, match="got both"):
        run(values(workspace, "single", tmp_path / "o", encoder_saved_model=str(tmp_path)))


@pytest.mark.parametrize("score", ["nan", "inf", "-Infinity", "1e999", "1e39"])
def test_a_non_finite_regression_score_is_refused_before_training(workspace, tmp_path, score):
    """float() reads these; trained on, the model and every metric become NaN."""
    train = tmp_path / "train.tsv"
    train.write_text(f"text\tlabel\na b\t1.5\nc d\t{score}\n")
    with pytest.raises(labelled_files.InputFileError,
                       match=rf"train.tsv:3: the score '{score}' is not finite in float32"):
        run(values(workspace, "single", tmp_path / "o", train_file=str(train),
                   eval_file=str(train), regression=True), log=lambda _: None)
    assert not (tmp_path / "o" / "export").exists()


def bfloat16_ops(export):
    """Nodes of a SavedModel's graph (its functions included) that compute in bfloat16."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((export / "saved_model.pb").read_bytes())
    graph = saved.meta_graphs[0].graph_def
    nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
    return [n.op for n in nodes if any(v.type == tf.bfloat16.as_datatype_enum
                                       for v in n.attr.values())]


@pytest.mark.slow
def test_a_run_trained_in_bfloat16_serves_in_float32_unless_asked(workspace, tmp_path):
    """--mixed_precision=mixed_bfloat16 (what auto picks on AMX / AVX512_BF16 CPUs) trains in
    bfloat16; the job's export computes in float32 with the same predictions;
    --serving_precision=bfloat16 (export CLI) gives a bfloat16 graph."""
    from bert_tf.export.runs import export_run

    out = tmp_path / "bf16"
    result = run(values(workspace, "single", out, mixed_precision="mixed_bfloat16",
                        num_train_epochs=2), log=lambda _: None)
    record = json.loads((out / "run_config.json").read_text())
    assert record["precision"]["policy"] == "mixed_bfloat16"
    export = glob.glob(str(out / "export" / "classifier" / "*"))[0]
    assert bfloat16_ops(tmp_path / export) == []
    texts = [line.split("\t")[0] for line in
             (workspace / "single_dev.tsv").read_text().splitlines()[1:]]
    served = tf.saved_model.load(export).signatures["serving_default"](text=tf.constant(texts))
    keras.mixed_precision.set_global_policy("float32")
    paths = export_run(run_dir.resolve(directory=str(out)), str(tmp_path / "exports"),
                       serving_precision="bfloat16")
    [path] = paths.values()
    assert len(bfloat16_ops(tmp_path / path)) > 10
    in_bf16 = tf.saved_model.load(path).signatures["serving_default"](text=tf.constant(texts))
    difference = np.abs(in_bf16["probabilities"].numpy() - served["probabilities"].numpy())
    assert 0 < difference.max() < 0.05  # the same weights, bfloat16's rounding
    assert result["accuracy"] > 0


def test_only_a_newline_ends_a_record(tmp_path):
    """U+2028, U+0085 and form feeds are str.splitlines() breaks, but may stand in a field."""
    columns = labelled_files.Columns("text", "label")
    odd = "one\u2028two\x85three\x0cfour\x1cfive"
    tsv, jsonl = tmp_path / "odd.tsv", tmp_path / "odd.jsonl"
    tsv.write_bytes(f"text\tlabel\r\n{odd}\tneg\r\nplain\tpos\n".encode())
    jsonl.write_bytes((json.dumps({"text": odd, "label": "neg"}, ensure_ascii=False)
                       + "\n" + json.dumps({"text": "plain", "label": "pos"}) + "\n").encode())
    for path, input_format in ((tsv, "tsv"), (jsonl, "jsonl")):
        examples = labelled_files.read_examples(str(path), input_format, columns)
        assert [(e.text_a, e.label, e.line) for e in examples] == [
            (odd, "neg", 2 if input_format == "tsv" else 1),
            ("plain", "pos", 3 if input_format == "tsv" else 2)]


@pytest.mark.slow
def test_finetunes_from_an_encoder_export(workspace):
    from bert_tf.export import export_all
    files = run_dir.resolve(str(workspace / "pretrain" / "ckpt-1"))
    pretrainer, vocab = run_dir.load_pretrainer(files)
    paths = export_all(pretrainer, vocab, files.do_lower_case, 32, str(workspace / "exports"))
    result = run(values(workspace, "single", workspace / "from_export", init_checkpoint=None,
                        encoder_saved_model=paths["bert_encoder"], num_train_epochs=6),
                 log=lambda _: None)
    assert result["accuracy"] >= 0.9, result
    served = tf.saved_model.load(result["export"]).signatures["serving_default"](
        text=tf.constant(["the cat was good ."]))
    assert served["label"].numpy()[0] == b"positive"


def test_length_buckets():
    assert length_buckets(128) == [16, 32, 64, 128]
    assert length_buckets(100) == [16, 32, 64, 100]
    assert length_buckets(12) == [12]


def test_dynamic_padding_cuts_batches_and_keeps_every_example(workspace):
    """Training batches are grouped by length bucket and cut to it; eval batches keep the order;
    the classifier's logits for an example do not depend on how far its batch was padded."""
    from bert_tf.text.tokenization import load_vocab

    vocab = load_vocab(workspace / "pretrain" / "vocab.txt")
    preprocessor = Preprocessor(vocab, True, 64)
    rng = random.Random(3)
    examples = [Example(" ".join(rng.choice(WORDS) for _ in range(rng.choice([3, 4, 20, 40]))),
                        None, "x", line) for line in range(100)]
    ids = np.arange(len(examples))
    padded = list(classifier.make_dataset(examples, ids, preprocessor, 8,
                                          dynamic_padding=False))
    assert {b[0]["input_word_ids"].shape[1] for b in padded} == {64}

    # training batches: the rows repeat without end; 60 batches are 4.8 passes, every batch full
    train = list(classifier.make_dataset(examples, ids, preprocessor, 8, shuffle=True,
                                         seed=1).take(60))
    seen = np.concatenate([b[1].numpy() for b in train])
    assert {len(b[1]) for b in train} == {8} and set(seen) == set(ids)  # every example
    lengths = {b[0]["input_word_ids"].shape[1] for b in train}
    assert lengths <= {16, 32, 64} and 16 in lengths
    for inputs, _ in train:
        real = inputs["input_mask"].numpy().sum(1)
        width = inputs["input_word_ids"].shape[1]
        assert real.max() <= width and (width == 16 or real.max() > width // 2)

    ordered = list(classifier.make_dataset(examples, ids, preprocessor, 8))
    assert np.concatenate([b[1].numpy() for b in ordered]).tolist() == list(ids)
    config = BertConfig.from_json_file(workspace / "pretrain" / "bert_config.json")
    model = build_classifier(build_pretrainer(config).encoder, 2)
    for (short, _), (full, _) in zip(ordered, padded, strict=True):
        np.testing.assert_allclose(model(short, training=False), model(full, training=False),
                                   atol=1e-5)


def test_a_lower_casing_that_contradicts_the_run_is_refused(workspace, tmp_path):
    from bert_tf.text.tokenization import CaseMismatch

    with pytest.raises(CaseMismatch, match=r"--do_lower_case=false contradicts the run of "
                                           r"--init_checkpoint .*ckpt-1, which records "
                                           r"do_lower_case=true; pass --allow_case_mismatch"):
        run(values(workspace, "single", tmp_path / "o", do_lower_case=False))
    assert not (tmp_path / "o" / "ckpt-0.index").exists()
