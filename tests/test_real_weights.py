"""Real public weights: all-MiniLM-L6-v2 (requirements-dev.txt ships it as a package) converted
from its Hugging Face directory, which has a fast tokenizer's tokenizer.json and no vocab.txt.
The converted encoder and tokenizer must give transformers' own outputs and ids on real
sentences (Python's documentation, the sample corpus)."""

import itertools
import json
import os
import sys

import numpy as np
import pytest
import tensorflow as tf

from bert_tf import run_dir
from bert_tf.checkpoints.convert import convert
from bert_tf.data.sample_corpus import documents_from_topics
from bert_tf.text.preprocessing import Preprocessor
from bert_tf.text.tokenization import load_vocab
from conftest import REPO_ROOT

sys.path.insert(0, os.path.join(REPO_ROOT, "tools"))
sys.path.insert(0, os.path.join(REPO_ROOT, "tests", "checkpoints"))
from real_weights import extract_minilm  # noqa: E402
from test_checkpoints import hf_reference  # noqa: E402


def real_sentences(n, skip=0):
    """`n` sentences of Python's documentation, of every length."""
    sentences = itertools.chain.from_iterable(documents_from_topics())
    return list(itertools.islice(sentences, skip, skip + n))


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    """The package's Hugging Face directory and its bert_tf conversion, made once."""
    tmp = tmp_path_factory.mktemp("minilm")
    hf = extract_minilm(str(tmp / "hf"))
    converted = str(tmp / "bert_tf")
    lines = []
    convert("huggingface", hf, "bert_tf", converted, log=lines.append)
    return {"hf": hf, "run": converted, "log": "\n".join(lines), "tmp": tmp}


def test_the_vocab_and_casing_come_from_tokenizer_json(minilm):
    assert "vocab read from tokenizer.json" in minilm["log"]
    files = run_dir.resolve(directory=minilm["run"])
    assert files.do_lower_case is True
    vocab = load_vocab(files.vocab_file)
    with open(os.path.join(minilm["hf"], "tokenizer.json"), encoding="utf-8") as f:
        theirs = json.load(f)["model"]["vocab"]
    assert len(vocab) == len(theirs) == 30522
    assert all(vocab.id(token) == index for token, index in theirs.items())


def test_minilm_gives_transformers_outputs_on_real_sentences(minilm):
    """Our tokenizer's ids are the checkpoint's fast tokenizer's, and the converted encoder's
    sequence and pooled outputs are transformers' BertModel's (float32) on the same batch."""
    texts = real_sentences(12, skip=40) + ["Ünïcode — “quotes”, naïve café!", ""]
    tmp = minilm["tmp"]
    model, vocab = run_dir.load_model(run_dir.resolve(directory=minilm["run"]))
    preprocessor = Preprocessor(vocab, True, 64)
    inputs = {k: v.numpy() for k, v in preprocessor.single(tf.constant(texts)).items()}
    np.savez(tmp / "inputs.npz", **inputs)
    hf_reference([{"op": "tokenize", "dir": minilm["hf"], "texts": texts,
                   "output": str(tmp / "ids.json")},
                  {"op": "run", "dir": minilm["hf"], "model": "BertModel",
                   "inputs": str(tmp / "inputs.npz"), "outputs": str(tmp / "outputs.npz")}],
                 tmp)
    with open(tmp / "ids.json") as f:
        their_ids = json.load(f)["ids"]
    for row, ids in enumerate(their_ids):  # [CLS] ids [SEP], within max_seq_length
        length = int(inputs["input_mask"][row].sum())
        assert inputs["input_word_ids"][row, 1:length - 1].tolist() == ids[:62], texts[row]
    ours = model.encoder(inputs, training=False)
    theirs = dict(np.load(tmp / "outputs.npz"))
    mask = inputs["input_mask"][..., None].astype(bool)
    np.testing.assert_allclose(np.where(mask, ours["sequence_output"], 0),
                               np.where(mask, theirs["sequence_output"], 0), atol=2e-4)
    np.testing.assert_allclose(ours["pooled_output"], theirs["pooled_output"], atol=2e-4)


@pytest.mark.slow
def test_finetuning_steps_in_lockstep_with_transformers(tmp_path):
    """tools/lockstep.py on all-MiniLM-L6-v2's first layer (real weights, a test's cost): bert_tf's and transformers' finetuning from the same weights on the same batches,
    dropout off, agree step by step at float32 round-off for every task: loss, the gradients'
    global norm (the one the clipping uses), the learning rate and every weight. With
    transformers' own frozen [PAD] row, question answering's pad row parts (the one known
    difference, tools/lockstep.py PAD_ROW) and the comparison sees it."""
    from lockstep import lockstep

    steps = 10
    results = lockstep(["classification", "question_answering", "tagging"], "minilm:1", steps,
                       str(tmp_path), log=lambda line: None)
    for task, report in results.items():
        summary = report["summary"]
        assert len(report["ours"]) == len(report["theirs"]) == steps
        assert summary["loss"]["max_relative"] < 1e-5, (task, summary)
        assert summary["grad_norm"]["max_relative"] < 1e-3, (task, summary)
        assert summary["learning_rate"]["max_relative"] < 1e-6, (task, summary)
        assert report["ours"][0]["learning_rate"] == 0  # warmup from 0, as transformers'
        assert max(s["grad_norm"] for s in report["ours"]) > 0
        for step, groups in report["weights"].items():
            for group, figures in groups.items():  # apart / moved by training
                if group == "pad_row" and task != "question_answering":
                    # no gradient reaches it: weight decay alone moves it, ~1e-6, and torch's
                    # float32 (1 - lr * decay) factor rounds that by up to 7% a step
                    assert figures["moved"] < 1e-4 and figures["apart"] < 1e-6, figures
                    continue
                assert figures["ratio"] < 0.01, (task, step, group, figures)
    frozen = lockstep(["question_answering"], "minilm:1", steps, str(tmp_path / "frozen"),
                      pad_row_trains=False, log=lambda line: None)["question_answering"]
    assert frozen["weights"][steps]["pad_row"]["ratio"] > 0.5
    assert frozen["summary"]["loss"]["max_relative"] > 1e-5
