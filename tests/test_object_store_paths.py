"""Every command with every path in an object store, the way a Cloud TPU run keeps its data,
checkpoints and exports in a gs:// bucket.

TensorFlow's in-memory filesystem ram:// stands in for the bucket: every tf.io.gfile scheme, gs://
included, goes through the same code. It is private to a process, so the commands run here, in
this process, as `python -m bert_tf.<command>` runs them (their `__main__`, absl flags and all).
Nothing is written to the local disk but temporary staging, which is removed; the commands run
in an empty working directory to show it.
"""

import contextlib
import io
import json
import os
import runpy
import sys

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from bert_tf.run_dir import load_pretrainer, resolve

pytestmark = pytest.mark.slow

BUCKET = f"ram://bucket_{os.getpid()}"


def command(module, *args):
    """Runs `python -m module args` in this process; returns its printed output.

    absl's flags are global: the ones other code in this process defined (absl's own apart) are
    set aside while the command runs, as a fresh process would not have them, and the command's
    own are removed afterwards."""
    FLAGS = flags.FLAGS
    others = {name: FLAGS[name] for name in list(FLAGS)
              if not FLAGS.find_module_defining_flag(name, "").startswith("absl.")}
    for name in others:
        delattr(FLAGS, name)
    argv, sys.argv = sys.argv, [module, *args]
    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as e:
        assert e.code in (None, 0), f"{module} exited with {e.code}: {output.getvalue()[-3000:]}"
    finally:
        sys.argv = argv
        for name in list(FLAGS):
            if not FLAGS.find_module_defining_flag(name, "").startswith("absl."):
                delattr(FLAGS, name)
        for name, flag in others.items():
            FLAGS[name] = flag
        FLAGS.unparse_flags()
    return output.getvalue()


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
    """The corpus and a labelled classification task in the bucket; the working directory an
    empty local folder, checked to stay empty."""
    workdir = tmp_path_factory.mktemp("cwd")
    previous = os.getcwd()
    os.chdir(workdir)
    tf.io.gfile.makedirs(BUCKET)
    command("bert_tf.sample_corpus", f"--output={BUCKET}/corpus.txt")
    rows = ["text\tlabel"] + [f"the {word} cat sat on the mat .\t{label}"
                              for word, label in [("good", "pos"), ("bad", "neg")] * 40]
    for split in ("train", "dev"):
        with tf.io.gfile.GFile(f"{BUCKET}/{split}.tsv", "w") as f:
            f.write("\n".join(rows) + "\n")
    yield BUCKET
    os.chdir(previous)
    assert os.listdir(workdir) == [], "nothing is written to the local disk"


@pytest.fixture(scope="module")
def data(bucket):
    command("bert_tf.build_vocab", f"--input_file={bucket}/corpus.txt",
            f"--output_file={bucket}/vocab.txt", "--vocab_size=2000")
    out = command("bert_tf.create_pretraining_data", f"--input_file={bucket}/corpus.txt",
                  f"--output_file={bucket}/data/sample", f"--vocab_file={bucket}/vocab.txt",
                  "--max_seq_length=32", "--max_predictions_per_seq=5", "--dupe_factor=1",
                  "--num_shards=2", "--num_workers=2", "--noprogress")
    assert "Wrote" in out
    config = {"vocab_size": 2000, "hidden_size": 32, "num_hidden_layers": 2,
              "num_attention_heads": 4, "intermediate_size": 64, "hidden_act": "gelu",
              "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
              "max_position_embeddings": 64, "type_vocab_size": 2, "initializer_range": 0.02}
    with tf.io.gfile.GFile(f"{bucket}/bert_config.json", "w") as f:
        json.dump(config, f)
    out = command("bert_tf.model_summary", f"--bert_config_file={bucket}/bert_config.json",
                  "--max_seq_length=32", "--batch_size=2")
    assert "gradients finite: True" in out
    return bucket


def test_data_creation_writes_shards_manifest_and_vocab_to_the_bucket(data):
    names = sorted(tf.io.gfile.listdir(f"{data}/data"))
    assert names == ["sample-00000-of-00002.tfrecord", "sample-00001-of-00002.tfrecord",
                     "sample.manifest.json", "sample.vocab.txt"]
    out = command("bert_tf.inspect_tfrecords", f"--input_file={data}/data/sample-*",
                  "--num_examples=1")
    assert "max_seq_length=32" in out and "next sentence: random" in out


@pytest.fixture(scope="module")
def pretrained(data):
    run = f"{data}/runs/tiny"
    flags_ = [f"--input_file={data}/data/sample-*", f"--bert_config_file={data}/bert_config.json",
              f"--output_dir={run}", "--max_seq_length=32", "--max_predictions_per_seq=5",
              "--train_batch_size=16", "--num_warmup_steps=2", "--steps_per_loop=5",
              "--save_checkpoints_steps=5", "--log_steps=5", "--max_eval_steps=2"]
    first = command("bert_tf.run_pretraining", *flags_, "--num_train_steps=10")
    second = command("bert_tf.run_pretraining", *flags_, "--num_train_steps=15")
    return {"run": run, "first": first, "second": second}


def test_pretraining_reads_and_writes_the_bucket_and_resumes(pretrained):
    run = pretrained["run"]
    assert "step 10/10" in pretrained["first"]
    assert f"resumed from {run}/ckpt-10 at step 10" in pretrained["second"]
    assert "step 15/15" in pretrained["second"]
    assert tf.train.latest_checkpoint(run) == f"{run}/ckpt-15"
    names = set(tf.io.gfile.listdir(run))
    assert {"bert_config.json", "run_config.json", "vocab.txt", "train/", "eval/"} <= names | {
        n + "/" for n in names}
    assert tf.io.gfile.glob(f"{run}/train/events.out.tfevents.*")


def test_export_from_the_bucket_to_the_bucket(pretrained, data):
    out = command("bert_tf.export", f"--output_dir={pretrained['run']}",
                  f"--export_dir={data}/exports", "--max_seq_length=32")
    assert f"bert: {data}/exports/bert/1" in out
    served = tf.saved_model.load(f"{data}/exports/bert/1").signatures["serving_default"](
        text=tf.constant(["the cat sat on the mat ."]))
    assert served["sentence_embedding"].shape == (1, 32)
    encoder = tf.saved_model.load(f"{data}/exports/bert_encoder/1")
    assert encoder.vocab_file.asset_path.numpy().decode().startswith(f"{data}/exports/")


def test_classifier_finetunes_from_and_into_the_bucket(pretrained, data):
    output = f"{data}/classifier"
    command("bert_tf.run_classifier", f"--train_file={data}/train.tsv",
            f"--eval_file={data}/dev.tsv", f"--predict_file={data}/dev.tsv",
            f"--init_checkpoint={pretrained['run']}/ckpt-15", f"--output_dir={output}",
            "--max_seq_length=16", "--num_train_epochs=1", "--learning_rate=1e-3")
    results = json.loads(tf.io.gfile.GFile(f"{output}/eval_results.json").read())
    assert results["num_examples"] == 80
    predictions = tf.io.gfile.GFile(f"{output}/predictions.tsv").read().splitlines()
    assert predictions[0] == "line\tprediction\tp_neg\tp_pos" and len(predictions) == 81
    served = tf.saved_model.load(f"{output}/export/classifier/1").signatures["serving_default"](
        text=tf.constant(["the good cat"]))
    assert served["probabilities"].shape == (1, 2)


def test_checkpoint_conversion_through_the_bucket(pretrained, data):
    command("bert_tf.convert_checkpoint", "--input_format=bert_tf",
            f"--input={pretrained['run']}", "--output_format=huggingface",
            f"--output={data}/hf")
    assert {"config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json"} <= set(
        tf.io.gfile.listdir(f"{data}/hf"))
    command("bert_tf.convert_checkpoint", "--input_format=huggingface", f"--input={data}/hf",
            "--output_format=bert_tf", f"--output={data}/back")
    original, _ = load_pretrainer(resolve(directory=pretrained["run"]))
    back, _ = load_pretrainer(resolve(directory=f"{data}/back"))
    for ours, theirs in zip(back.weights, original.weights, strict=True):
        # bit for bit through Hugging Face's format and back
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=ours.path)


def test_question_answering_and_tagging_in_the_bucket(pretrained, data):
    context = "The cat sat on the mat and looked at the door ."
    squad = {"data": [{"paragraphs": [{"context": context, "qas": [
        {"id": f"q{i}", "question": "where did the cat sit ?",
         "answers": [{"text": "the mat", "answer_start": context.index("the mat")}]}
        for i in range(16)]}]}]}
    with tf.io.gfile.GFile(f"{data}/squad.json", "w") as f:
        json.dump(squad, f)
    command("bert_tf.run_squad", "--do_train", "--do_predict", f"--train_file={data}/squad.json",
            f"--predict_file={data}/squad.json", f"--output_dir={data}/squad_run",
            f"--init_checkpoint={pretrained['run']}/ckpt-15", "--max_seq_length=24",
            "--doc_stride=8", "--max_query_length=8", "--train_batch_size=8",
            "--num_train_epochs=1")
    assert set(json.loads(tf.io.gfile.GFile(f"{data}/squad_run/predictions.json").read())) == {
        f"q{i}" for i in range(16)}
    assert "exact_match" in json.loads(
        tf.io.gfile.GFile(f"{data}/squad_run/eval_results.json").read())
    assert tf.io.gfile.exists(f"{data}/squad_run/export/squad/1/saved_model.pb")

    conll = "".join("the O\ncat B-ANIMAL\nsat O\n\n" for _ in range(16))
    for split in ("train", "dev"):
        with tf.io.gfile.GFile(f"{data}/{split}.conll", "w") as f:
            f.write(conll)
    command("bert_tf.run_tagging", f"--train_file={data}/train.conll",
            f"--eval_file={data}/dev.conll", f"--output_dir={data}/ner_run",
            f"--init_checkpoint={pretrained['run']}/ckpt-15", "--max_seq_length=16",
            "--train_batch_size=8", "--num_train_epochs=1")
    results = json.loads(tf.io.gfile.GFile(f"{data}/ner_run/eval_results.json").read())
    assert results["num_sentences"] == 16
    assert tf.io.gfile.exists(f"{data}/ner_run/export/tagger/1/saved_model.pb")
