"""Question answering: google-identical features, the official metric, a learnable task, the
text-in export, bad files."""

import dataclasses
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from bert_tf.finetuning import squad
from bert_tf.finetuning.labelled_files import InputFileError
from bert_tf.finetuning.question_answering import QuestionAnsweringConfig, run
from bert_tf.finetuning.squad_evaluation import evaluate, exact_match, f1, normalize_answer
from bert_tf.data.sample_corpus import write_corpus
from bert_tf.text.tokenization import WordpieceTokenizer, load_vocab, write_vocab
from bert_tf.text.vocab_learning import learn_vocab
from classification_fixtures import NEUTRAL, make_workspace

COLORS = ["red", "blue", "good", "bad"]


def squad_file(path, paragraphs):
    """A SQuAD v2.0-style file from [(context, [(id, question, answer text or None)])]."""
    data = [{"title": "t", "paragraphs": [
        {"context": context, "qas": [
            {"id": qid, "question": question, "is_impossible": answer is None,
             "answers": [] if answer is None else [
                 {"text": answer, "answer_start": context.index(answer)}]}
            for qid, question, answer in questions]}
        for context, questions in paragraphs]}]
    path.write_text(json.dumps({"version": "v2.0", "data": data}))
    return str(path)


def color_paragraphs(rng, n, words=(10, 60), impossible=0.0):
    """Contexts of neutral words with one color word somewhere (or none, for v2's unanswerable
    questions); the question asks for it."""
    paragraphs = []
    for i in range(n):
        context = [rng.choice(NEUTRAL) for _ in range(rng.randint(*words))]
        answer = None
        if rng.random() >= impossible:
            answer = rng.choice(COLORS)
            context.insert(rng.randint(0, len(context)), answer)
        paragraphs.append((" ".join(context) + " .", [(f"q{i}", "which color ?", answer)]))
    return paragraphs


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("qa"))


# === Features: the Model Garden's squad_lib on the same examples ===

def test_features_equal_the_model_gardens(tmp_path):
    from official.nlp.data import squad_lib
    from official.nlp.tools import tokenization as mg_tokenization

    corpus, vocab_file = tmp_path / "corpus.txt", str(tmp_path / "vocab.txt")
    write_corpus(str(corpus))  # a real vocab (cased, with accents), learned from real text
    write_vocab(learn_vocab(str(corpus), vocab_size=3000, do_lower_case=False), vocab_file)
    contexts = [
        "The leader was John Smith (1895-1943). He led the party through two wars, and "
        "his deputy, Mary Jones, took over in 1943 when he died.",
        "Café  naïve\tfaçade —  the Japanese electronics industry is the largest in the world; "
        "its exports reached 12.5 billion dollars in 1990 " + "and so on " * 12 + "end.",
        "Short one.",
    ]
    paragraphs = [(contexts[0], [("a", "What year was John Smith born?", "1895"),
                                 ("b", "Who took over?", "Mary Jones"),
                                 ("c", "How many wars?", None)]),
                  (contexts[1], [("d", "Which country exports electronics?", "Japan"),
                                 ("e", "How much were the exports?", "12.5 billion dollars"),
                                 ("f", "What comes last?", "end.")]),
                  (contexts[2], [("g", "What is it?", "Short one.")])]
    path = squad_file(tmp_path / "train.json", paragraphs)
    settings = dict(max_seq_length=40, doc_stride=12, max_query_length=8)
    for lower in (True, False):
        tokenizer = WordpieceTokenizer(load_vocab(vocab_file), lower)
        reference = mg_tokenization.FullTokenizer(vocab_file, do_lower_case=lower)
        for is_training in (True, False):
            ours = squad.make_features(squad.read_squad(path, is_training, True), tokenizer,
                                       is_training=is_training, **settings)
            theirs = []
            squad_lib.convert_examples_to_features(
                squad_lib.read_squad_examples(path, is_training, True), reference,
                is_training=is_training, output_fn=lambda f, is_padding=False: theirs.append(f),
                batch_size=1, **settings)
            assert len(theirs) == len(ours.example_index) > 8, "several windows per context"
            np.testing.assert_array_equal(ours.input_word_ids, [f.input_ids for f in theirs])
            np.testing.assert_array_equal(ours.input_mask, [f.input_mask for f in theirs])
            np.testing.assert_array_equal(ours.input_type_ids, [f.segment_ids for f in theirs])
            np.testing.assert_array_equal(ours.start_positions, [f.start_position for f in theirs])
            np.testing.assert_array_equal(ours.end_positions, [f.end_position for f in theirs])
            max_context = np.zeros_like(ours.token_is_max_context)
            for row, feature in enumerate(theirs):
                for position, flag in feature.token_is_max_context.items():
                    max_context[row, position] = flag
            np.testing.assert_array_equal(ours.token_is_max_context, max_context)
            if is_training:  # "1895" out of "(1895-1943).", found by the improved span
                ids = ours.input_word_ids[0][ours.start_positions[0]:ours.end_positions[0] + 1]
                text = " ".join(tokenizer.vocab.tokens[i] for i in ids).replace(" ##", "")
                assert text == "1895"


# === The official metric ===

def test_metric_on_hand_worked_cases():
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert exact_match("the Cat.", "cat") == 1.0 and exact_match("cats", "cat") == 0.0
    # "a big red dog" vs "red dog": common {red, dog}: P = 2/3 (big, red, dog), R = 1
    assert f1("a big red dog", "red dog") == pytest.approx(2 * (2 / 3) / (2 / 3 + 1))
    assert f1("", "") == 1.0 and f1("x", "") == 0.0
    gold = {"1": ["red dog", "the red dog"], "2": ["blue"], "3": []}
    result = evaluate(gold, {"1": "red dog!", "2": "green", "3": ""})
    assert result["exact_match"] == pytest.approx(200 / 3)
    assert result["f1"] == pytest.approx(200 / 3)
    assert (result["HasAns_exact_match"], result["HasAns_total"]) == (50.0, 2)
    assert (result["NoAns_exact_match"], result["NoAns_total"]) == (100.0, 1)
    assert evaluate({"1": ["a"]}, {})["exact_match"] == 0.0, "a missing prediction scores 0"


# === A learnable task, predictions, the export ===

@pytest.fixture(scope="module")
def trained(workspace):
    rng = random.Random(0)
    train = squad_file(workspace / "qa_train.json", color_paragraphs(rng, 400))
    # contexts 3x max_seq_length: the answer can be in any window, the last included
    dev = squad_file(workspace / "qa_dev.json", color_paragraphs(rng, 60, words=(70, 90)))
    config = QuestionAnsweringConfig(
        output_dir=str(workspace / "qa_out"), init_checkpoint=str(workspace / "pretrain/ckpt-1"),
        train_file=train, predict_file=dev, do_train=True, do_predict=True, max_seq_length=32,
        doc_stride=8, max_query_length=6, train_batch_size=32, learning_rate=3e-3,
        num_train_epochs=4, random_seed=1)
    return {"results": run(config, log=lambda _: None), "config": config, "dev": dev}


def test_a_color_question_is_learned(trained):
    results = trained["results"]
    assert results["exact_match"] >= 90 and results["f1"] >= 90, results
    out = trained["config"].output_dir
    predictions = json.loads(tf.io.gfile.GFile(out + "/predictions.json").read())
    nbest = json.loads(tf.io.gfile.GFile(out + "/nbest_predictions.json").read())
    assert len(predictions) == 60 and set(nbest) == set(predictions)
    assert abs(sum(n["probability"] for n in nbest["q0"]) - 1) < 1e-6
    # evaluated after each of the 4 epochs: the best by F1 is kept, in best/ too, and the
    # prediction files are the kept model's answers
    assert len(results["epoch_scores"]) == 4 and results["score"] == results["f1"]
    assert results["f1"] == max(results["epoch_scores"]), results
    info = json.loads(tf.io.gfile.GFile(out + "/best/info.json").read())
    assert (info["step"], info["metric"], info["value"], info["kept"]) == (
        results["epoch"], "score", results["f1"], "best")
    assert tf.train.latest_checkpoint(out + "/best").endswith(f"ckpt-{results['epoch']}")
    answers = {e.qas_id: e.answers for e in squad.read_squad(trained["dev"], False, False)}
    assert evaluate(answers, predictions)["f1"] == pytest.approx(results["f1"])


TF_ONLY = """
import json, sys
import tensorflow as tf
import tensorflow_text  # registers the ops; nothing from bert_tf
assert "bert_tf" not in sys.modules
model = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
questions, contexts = json.loads(sys.argv[2])
out = model(question=tf.constant(questions), context=tf.constant(contexts))
print(json.dumps({k: [x.decode() if isinstance(x, bytes) else x for x in v.numpy().tolist()]
                  for k, v in out.items()}))
"""


def test_text_in_export_answers_long_contexts_without_bert_tf(trained):
    rng = random.Random(7)
    contexts, answers = [], []
    for position in ("last", "middle", "first"):
        words = [rng.choice(NEUTRAL) for _ in range(95)]  # 3x max_seq_length in pieces
        color = rng.choice(COLORS)
        words.insert({"last": 93, "middle": 50, "first": 2}[position], color)
        contexts.append("  ".join(words).capitalize() + ".")
        answers.append(color)
    result = subprocess.run(
        [sys.executable, "-c", TF_ONLY, trained["results"]["export"],
         json.dumps([["which color ?"] * 3, contexts])],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["answer"] == answers, out
    for context, start, end, answer in zip(contexts, out["start"], out["end"], answers):
        assert context[start:end] == answer
    assert all(out["has_answer"])


def test_text_in_export_gives_run_squads_answers_on_several_windows(trained):
    """The export's in-graph windows, max-context rule and span choice are run_squad's: on the
    dev set (contexts of 3 windows) it answers every question as predictions.json does."""
    with open(trained["dev"], encoding="utf-8") as f:
        paragraphs = [p for article in json.load(f)["data"] for p in article["paragraphs"]]
    ids, questions, contexts = [], [], []
    for paragraph in paragraphs:
        for qa in paragraph["qas"]:
            ids.append(qa["id"])
            questions.append(qa["question"])
            contexts.append(paragraph["context"])
    predictions = json.loads(tf.io.gfile.GFile(
        trained["config"].output_dir + "/predictions.json").read())
    model = tf.saved_model.load(trained["results"]["export"]).signatures["serving_default"]
    out = model(question=tf.constant(questions), context=tf.constant(contexts))
    answers = [a.decode() for a in out["answer"].numpy()]
    assert answers == [predictions[i] for i in ids]


def test_predict_alone_from_the_finetuned_run_gives_the_same_answers(trained, workspace, tmp_path):
    """--do_predict without --do_train takes the finetuned run directory as --init_checkpoint
    (the whole model, head included); a pretrained encoder is refused."""
    config = trained["config"]
    again = dataclasses.replace(config, do_train=False, output_dir=str(tmp_path / "again"),
                                init_checkpoint=config.output_dir)
    results = run(again, log=lambda _: None)
    assert results["exact_match"] == trained["results"]["exact_match"]
    assert (json.loads((tmp_path / "again" / "predictions.json").read_text())
            == json.loads(tf.io.gfile.GFile(config.output_dir + "/predictions.json").read()))
    with pytest.raises(ValueError, match="predicting without training needs a finetuned "
                                         "question_answering model"):
        run(dataclasses.replace(again, output_dir=str(tmp_path / "refused"),
                                init_checkpoint=str(workspace / "pretrain" / "ckpt-1")))


def test_question_and_context_batches_must_match(trained):
    model = tf.saved_model.load(trained["results"]["export"]).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"inputs question and context must hold the same number of texts; "
                             r"got\W+2\W+and\W+1\W"):
        model(question=tf.constant(["which color ?", "what ?"]), context=tf.constant(["Red."]))


# === Bad files ===

def test_bad_files_name_the_file_and_entry(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(InputFileError, match="bad.json: not a JSON file"):
        squad.read_squad(str(path), True)
    context = "the cat sat on the mat"
    path.write_text(json.dumps({"data": [{"paragraphs": [{"context": context, "qas": [
        {"id": "1", "question": "who?", "answers": [{"text": "cat", "answer_start": 0}]}]}]}]}))
    with pytest.raises(InputFileError, match=r"data\[0\].paragraphs\[0\].qas\[0\].answers\[0\]: "
                                             r"the answer 'cat' is not at answer_start=0"):
        squad.read_squad(str(path), True)
    path.write_text(json.dumps({"data": [{"paragraphs": [{"context": context, "qas": [
        {"id": "1", "answers": []}]}]}]}))
    with pytest.raises(InputFileError, match=r"qas\[0\]: no 'question'"):
        squad.read_squad(str(path), False)
    path.write_text(json.dumps({"data": []}))
    with pytest.raises(InputFileError, match="bad.json: no questions"):
        squad.read_squad(str(path), False)
    with pytest.raises(ValueError, match="give --do_train and/or --do_predict"):
        QuestionAnsweringConfig(output_dir="x")


def test_v2_predictions_with_one_best_on_an_unlabelled_test_set(trained, tmp_path):
    """--version_2_with_negative --n_best_size=1 (questions with no non-null candidate) on a
    test set without answers: predictions, null odds and the export are all written; no
    evaluation without answers."""
    dev = json.loads(open(trained["dev"]).read())
    for paragraph in dev["data"][0]["paragraphs"]:
        for qa in paragraph["qas"]:
            del qa["answers"], qa["is_impossible"]
    test = tmp_path / "test.json"
    test.write_text(json.dumps(dev))
    config = trained["config"]
    results = run(dataclasses.replace(
        config, do_train=False, output_dir=str(tmp_path / "v2"), init_checkpoint=config.output_dir,
        predict_file=str(test), version_2_with_negative=True, n_best_size=1),
        log=lambda _: None)
    null_odds = json.loads((tmp_path / "v2" / "null_odds.json").read_text())
    predictions = json.loads((tmp_path / "v2" / "predictions.json").read_text())
    assert set(null_odds) == set(predictions) and len(predictions) == 60
    assert all(isinstance(value, float) for value in null_odds.values())
    assert "exact_match" not in results and os.path.isdir(results["export"])


def write_squad(path, paragraphs):
    path.write_text(json.dumps({"data": [{"paragraphs": paragraphs}]}))
    return str(path)


def test_answers_are_checked_and_empty_ones_mean_no_answer_only_in_v2(tmp_path):
    context = "the cat sat on the mat"

    def one(answer, version_2=False, is_training=True):
        path = write_squad(tmp_path / "f.json", [{"context": context, "qas": [
            {"id": "q1", "question": "who?", "answers": [answer]}]}])
        return squad.read_squad(path, is_training, version_2)

    for empty in ({"text": "", "answer_start": -1}, {"text": "", "answer_start": 0}):
        with pytest.raises(InputFileError, match="question 'q1' has an empty answer; SQuAD v1.1"):
            one(empty)
        example, = one(empty, version_2=True)
        assert example.is_impossible and example.answers == []
    with pytest.raises(InputFileError, match=r"the answer 'mat' is not at answer_start=-3"):
        one({"text": "mat", "answer_start": -3})  # Python's negative slicing would find it
    with pytest.raises(InputFileError, match="answer_start must be a whole number, got 4.0"):
        one({"text": "cat", "answer_start": 4.0})
    example, = one({"text": "cat", "answer_start": 4})
    assert example.answer_text == "cat" and example.words[example.start_word] == "cat"
    path = write_squad(tmp_path / "dup.json", [{"context": context, "qas": [
        {"id": "q1", "question": "who?", "answers": []},
        {"id": "q1", "question": "where?", "answers": []}]}])
    with pytest.raises(InputFileError, match=r"qas\[1\]: question id 'q1' is also the id of "
                                             r"data\[0\].paragraphs\[0\].qas\[0\]"):
        squad.read_squad(path, False)
    path = write_squad(tmp_path / "empty.json", [{"context": "", "qas": [
        {"id": "q1", "question": "who?"}]}])
    with pytest.raises(InputFileError, match=r"paragraphs\[0\]: the context is empty"):
        squad.read_squad(path, False)
    path = write_squad(tmp_path / "test.json", [{"context": context, "qas": [
        {"id": "q1", "question": "who?"}]}])
    example, = squad.read_squad(path, False)  # a test set: no answers, nothing to evaluate
    assert not example.labelled and example.answers == []
    with pytest.raises(InputFileError, match=r"qas\[0\]: no 'answers'"):
        squad.read_squad(path, True)
