"""Token classification: files, conlleval metrics against seqeval, chunking of long sentences,
a learnable task, the text-in export."""

import json
import random
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from bert_tf.finetuning.labelled_files import InputFileError
from bert_tf.finetuning.tagged_files import Sentence, read_tagged
from bert_tf.finetuning.tagging import TaggingConfig, make_features, predicted_tags, run
from bert_tf.finetuning.tagging_metrics import entities, tagging_metrics
from bert_tf.text.tokenization import WordpieceTokenizer, load_vocab
from classification_fixtures import NEUTRAL, make_workspace


PLAIN = [w for w in NEUTRAL if w not in ("table", "tree", "house")]


def tagged_sentence(rng):
    """Plain words with entities a tiny model learns word by word: COL (red, blue), QUAL (good,
    bad: one word, a plain word after it) and two-word LOC (table house, tree house)."""
    words, tags = [], []
    for _ in range(rng.randint(4, 10)):
        roll = rng.random()
        if roll < 0.12:
            words.append(rng.choice(["red", "blue"]))
            tags.append("B-COL")
        elif roll < 0.24:
            words.extend([rng.choice(["good", "bad"]), rng.choice(PLAIN)])
            tags.extend(["B-QUAL", "O"])
        elif roll < 0.34:
            words.extend([rng.choice(["table", "tree"]), "house"])
            tags.extend(["B-LOC", "I-LOC"])
        else:
            words.append(rng.choice(PLAIN))
            tags.append("O")
    return words, tags


def write_conll(path, sentences):
    path.write_text("-DOCSTART- -X- O O\n\n" + "".join(
        "".join(f"{w} NN {t}\n" for w, t in zip(words, tags)) + "\n"
        for words, tags in sentences))
    return str(path)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("tagging"))


def random_tags(rng, length, scheme):
    prefixes = ["B", "I"] + (["E", "S"] if scheme == "IOBES" else [])
    return [rng.choice(["O", "O"] + [f"{p}-{t}" for p in prefixes for t in ("PER", "LOC")])
            for _ in range(length)]


@pytest.mark.parametrize("scheme", ["BIO", "IOBES"])
def test_metrics_equal_seqeval_on_random_and_ill_formed_tags(scheme):
    from seqeval.metrics import classification_report

    rng = random.Random(scheme)
    gold = [random_tags(rng, rng.randint(1, 12), scheme) for _ in range(300)]
    predicted = [[t if rng.random() < 0.7 else rng.choice(["O", "B-PER", "I-LOC"]) for t in g]
                 for g in gold]
    ours = tagging_metrics(gold, predicted)
    theirs = classification_report(gold, predicted, output_dict=True, zero_division=0)
    for name in ("precision", "recall", "f1"):
        assert ours[name] == pytest.approx(theirs["micro avg"][name + "-score" if name == "f1"
                                                              else name])
        for kind in ("PER", "LOC"):
            key = name + "-score" if name == "f1" else name
            assert ours["per_type"][kind][name] == pytest.approx(theirs[kind][key])
    assert entities(["O", "I-PER", "I-PER", "B-PER", "I-LOC"]) == {
        ("PER", 1, 2), ("PER", 3, 3), ("LOC", 4, 4)}


def test_long_sentences_are_chunked_without_losing_a_word(workspace):
    tokenizer = WordpieceTokenizer(load_vocab(workspace / "pretrain" / "vocab.txt"), True)
    words = [random.Random(1).choice(PLAIN) for _ in range(50)]
    sentences = [Sentence(words, ["O"] * 50, 1), Sentence(["the", "cat"], ["O", "O"], 60)]
    features = make_features(sentences, tokenizer, ["O"], max_seq_length=16)
    assert len(features.sentence) == 5 and features.input_mask.sum(1).max() <= 16
    first = features.word[features.sentence == 0]
    assert sorted(first[first >= 0].tolist()) == list(range(50)), "every word once"
    logits = np.zeros(features.labels.shape + (1,))
    assert predicted_tags(features, logits, sentences, ["O"]) == [["O"] * 50, ["O", "O"]]


@pytest.fixture(scope="module")
def trained(workspace):
    rng = random.Random(0)
    train = write_conll(workspace / "ner_train.txt", [tagged_sentence(rng) for _ in range(300)])
    dev = write_conll(workspace / "ner_dev.txt", [tagged_sentence(rng) for _ in range(80)])
    config = TaggingConfig(output_dir=str(workspace / "ner_out"),
                           init_checkpoint=str(workspace / "pretrain" / "ckpt-1"),
                           train_file=train, eval_file=dev, predict_file=dev, max_seq_length=24,
                           learning_rate=3e-3, num_train_epochs=4, train_batch_size=16,
                           random_seed=1, log_steps=10)
    lines = []
    return {"results": run(config, log=lines.append), "config": config, "lines": lines}


def test_the_job_reports_progress_as_it_goes(trained):
    """A line every --log_steps with the running loss and an ETA; the dev file evaluated after
    every epoch (its entity F1 on the epoch's line) and the epoch kept said; prediction
    announced and timed."""
    lines = trained["lines"]
    steps = [line for line in lines if line.startswith("step ")]
    assert steps and all("loss=" in line and "examples/s" in line and "ETA" in line
                         for line in steps), lines
    assert steps[0].startswith("step 10/")  # 300 sentences of 16: 18 steps an epoch, 4 epochs
    assert sum(line.startswith("epoch ") and " done in " in line for line in lines) == 4
    assert sum(line.startswith("epoch ") and " val_f1=" in line for line in lines) == 4
    assert any(line.startswith("kept epoch ") and " of 4 (score " in line for line in lines)
    assert "prediction: started" in lines
    assert any(line.startswith("prediction: done in") for line in lines), lines


def test_a_tagging_task_is_learned(trained):
    results = trained["results"]
    assert results["f1"] >= 0.95, results
    assert all(results["per_type"][kind]["f1"] >= 0.9 for kind in ("COL", "QUAL", "LOC"))
    out = trained["config"].output_dir
    saved = json.loads(tf.io.gfile.GFile(out + "/eval_results.json").read())
    assert saved["f1"] == pytest.approx(results["f1"])
    # the best epoch is chosen by entity F1, the score it reports, and kept in best/
    assert results["score"] == results["f1"] and len(results["epoch_scores"]) == 4
    info = json.loads(tf.io.gfile.GFile(out + "/best/info.json").read())
    assert (info["step"], info["metric"], info["value"]) == (
        results["epoch"], "score", results["f1"])
    assert info["value"] == max(results["epoch_scores"])
    predictions = tf.io.gfile.GFile(out + "/predictions.txt").read().split("\n\n")
    assert len([p for p in predictions if p.strip()]) == 80


TF_ONLY = """
import json, sys
import tensorflow as tf
import tensorflow_text  # registers the ops; nothing from bert_tf
assert "bert_tf" not in sys.modules
model = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
out = model(text=tf.constant(json.loads(sys.argv[2])))
print(json.dumps({k: [[x.decode() if isinstance(x, bytes) else x for x in row]
                      if isinstance(row, list) else row for row in v.numpy().tolist()]
                  for k, v in out.items()}))
"""


def test_text_in_export_tags_words_and_finds_entities(trained):
    texts = ["the  good cat sat on the red tree house .", "",
             " ".join(["the cat sat on the mat"] * 6) + " blue"]  # several windows
    result = subprocess.run([sys.executable, "-c", TF_ONLY, trained["results"]["export"],
                             json.dumps(texts)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["num_words"] == [10, 0, 37]
    assert out["words"][0][:3] == ["the", "good", "cat"]
    found = [(out["entities"][0][i], out["entity_types"][0][i]) for i in
             range(out["num_entities"][0])]
    assert found == [("good", "QUAL"), ("red", "COL"), ("tree house", "LOC")], out
    for text, starts, ends, names, n in zip(texts, out["entity_start"], out["entity_end"],
                                            out["entities"], out["num_entities"]):
        assert [text[s:e] for s, e in zip(starts[:n], ends[:n])] == names[:n]
    assert out["num_entities"][1] == 0
    assert out["entities"][2][out["num_entities"][2] - 1] == "blue", "the last window too"


def test_bad_files_name_the_file_and_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("the O\ncat E-PER\n")
    with pytest.raises(InputFileError, match=r"bad.txt:2: tag 'E-PER' is not in the BIO scheme"
                                             r".*--tag_scheme=IOBES"):
        read_tagged(str(path), "conll")
    assert read_tagged(str(path), "conll", "IOBES")[0].tags == ["O", "E-PER"]
    path.write_text('{"tokens": ["a", "b"], "tags": ["O"]}\n')
    with pytest.raises(InputFileError, match="bad.txt:1: 2 tokens but 1 tags"):
        read_tagged(str(path), "jsonl")
    path.write_text("\n\n")
    with pytest.raises(InputFileError, match="bad.txt: no sentences"):
        read_tagged(str(path), "conll")
    path.write_text("the\n")
    with pytest.raises(InputFileError, match="bad.txt:1: expected a word and its tag"):
        read_tagged(str(path), "conll")


def test_a_tag_set_of_no_scheme_exports_and_groups_runs(workspace, tmp_path):
    """transformers' default labels (LABEL_0, ...) or plain tags (CAP, O): each tag other than
    O is a type, and consecutive words of one tag make one entity."""
    import keras

    from bert_tf.config import BertConfig
    from bert_tf.export.serving import ExportRequest
    from bert_tf.export.tagging import export_tagger
    from bert_tf.modeling import BertEncoder, build_tagger

    vocab = load_vocab(workspace / "pretrain" / "vocab.txt")
    config = BertConfig.from_json_file(workspace / "pretrain" / "bert_config.json")
    labels = ["LABEL_0", "LABEL_1", "CAP", "O"]
    keras.utils.set_random_seed(3)
    path = export_tagger(ExportRequest("tagging", build_tagger(BertEncoder(config), len(labels)),
                                       vocab, True, 16, {"labels": labels}),
                         str(tmp_path / "tagger"))
    served = tf.saved_model.load(path).signatures["serving_default"]
    texts = [" ".join(random.Random(i).choice(PLAIN) for _ in range(30)) for i in range(4)]
    out = {k: v.numpy() for k, v in served(text=tf.constant(texts)).items()}
    seen = set()
    for row in range(len(texts)):
        words = [w.decode() for w in out["words"][row][:out["num_words"][row]]]
        tags = [t.decode() for t in out["tags"][row][:out["num_words"][row]]]
        seen.update(tags)
        runs, previous = [], "O"
        for word, tag in zip(words, tags):
            if tag != "O" and tag == previous:
                runs[-1] = (runs[-1][0] + " " + word, tag)
            elif tag != "O":
                runs.append((word, tag))
            previous = tag
        n = out["num_entities"][row]
        assert [(e.decode(), t.decode()) for e, t in zip(out["entities"][row][:n],
                                                         out["entity_types"][row][:n])] == runs
    assert len(seen - {"O"}) >= 2, "the random head tags with several of the labels"


def test_conll_columns_split_on_spaces_and_tabs_only(tmp_path):
    path = tmp_path / "nbsp.txt"
    path.write_text("costs O\n10\u00a0000 B-NUM\neuros\tO\n", encoding="utf-8")
    sentence, = read_tagged(str(path), "conll")
    assert sentence.words == ["costs", "10\u00a0000", "euros"]
    assert sentence.tags == ["O", "B-NUM", "O"]
