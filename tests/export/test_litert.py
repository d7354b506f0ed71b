"""LiteRT exports run in the LiteRT interpreter (with tensorflow-text's kernels) and give the
SavedModel's outputs: float to 1e-4, int8 predictions agreeing on a held-out set."""

import dataclasses
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from bert_tf import run_dir
from bert_tf.config import BertConfig
from bert_tf.export import litert
from bert_tf.export.classifier import export_classifier
from bert_tf.export.serving import ExportRequest
from bert_tf.finetuning.classification import run
from bert_tf.modeling import build_pretrainer
from bert_tf.modeling.heads import build_task_model
from bert_tf.modeling import BertEncoder
from bert_tf.text.tokenization import SPECIAL_TOKENS, load_vocab, write_vocab
from classification_fixtures import WORDS, make_workspace, values
import conftest
from conftest import REPO_ROOT, random_inputs

CONFIG = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=64, max_position_embeddings=64, initializer_range=0.2)
SEQ = 24
MODERNBERT = dataclasses.replace(CONFIG, **conftest.MODERNBERT, num_hidden_layers=3)
TEXTS = ["the cat sat on the mat .", "a very good dog , then a bad cat", "Tree House BIG",
         "the " * 40, "", "unknownword and the mat"]


def served(path, **texts):
    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    return {k: v.numpy() for k, v in signature(**{k: tf.constant(v)
                                                   for k, v in texts.items()}).items()}


def run_litert(path, **inputs):
    runner = litert.interpreter(path).get_signature_runner("serving_default")
    return runner(**{k: np.array(v, dtype=object) if isinstance(v[0], str) else v
                     for k, v in inputs.items()})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The single-sentence task learned (as the finetuning tests' own), exported both ways
    through the command line."""
    workspace = make_workspace(tmp_path_factory.mktemp("litert"))
    result = run(values(workspace, "single", workspace / "out", num_train_epochs=4),
                 log=lambda _: None)
    command = [sys.executable, "-m", "bert_tf.export", f"--output_dir={workspace / 'out'}",
               f"--export_dir={workspace / 'exports'}", "--format=litert"]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    dev = [line.split("\t")[0] for line in
           (workspace / "single_dev.tsv").read_text().splitlines()[1:]]
    return {"workspace": workspace, "savedmodel": result["export"], "stdout": done.stdout,
            "stderr": done.stderr,
            "litert": workspace / "exports" / "classifier_litert" / "1", "dev": dev,
            "accuracy": result["accuracy"]}


def test_text_in_classifier_agrees_with_its_saved_model(trained):
    directory = trained["litert"]
    assert sorted(os.listdir(directory)) == ["litert.json", "model.tflite",
                                            "model_int8.tflite", "vocab.txt"]
    manifest = json.loads((directory / "litert.json").read_text())
    assert manifest["inputs"] == ["text"] and manifest["text_in"]
    assert manifest["labels"] == ["negative", "positive"]
    assert set(manifest["custom_ops"]) <= set(litert.TEXT_OPS)  # no Flex (TensorFlow) ops
    assert "classifier_litert:" in trained["stdout"]
    # the converter's narration (~20 lines a model) is held back when it succeeds
    assert not [line for line in trained["stderr"].splitlines()
                if "tf_tfl_flatbuffer_helpers" in line or "Custom ops" in line], trained["stderr"]

    texts = trained["dev"] + TEXTS
    expected = served(trained["savedmodel"], text=texts)
    got = run_litert(directory / "model.tflite", text=texts)
    np.testing.assert_allclose(got["probabilities"], expected["probabilities"], atol=1e-4)
    assert [x.decode() for x in got["label"]] == [x.decode() for x in expected["label"]]

    int8 = run_litert(directory / "model_int8.tflite", text=trained["dev"])
    agree = np.mean(int8["label_id"] == expected["label_id"][:len(trained["dev"])])
    sizes = {name: os.path.getsize(directory / name) for name in ("model.tflite",
                                                                   "model_int8.tflite")}
    print(f"int8 agrees with the SavedModel on {agree:.1%} of {len(trained['dev'])} held-out "
          f"sentences; sizes {sizes}")
    assert agree >= 0.97
    assert sizes["model_int8.tflite"] < sizes["model.tflite"]
    assert manifest["bytes"] == sizes


def test_pair_classifier_and_object_store(tmp_path):
    """A pair task's text and text_b, trimmed and packed as the SavedModel does; written to
    an object store."""
    write_vocab(list(SPECIAL_TOKENS) + WORDS + [".", ","], tmp_path / "vocab.txt")
    vocab = load_vocab(str(tmp_path / "vocab.txt"))
    keras.utils.set_random_seed(1)
    model = build_task_model("classification", BertEncoder(CONFIG), ["no", "yes"])
    request = ExportRequest("classification", model, vocab, True, SEQ,
                            {"labels": ["no", "yes"], "pair": True})
    saved = export_classifier(request, str(tmp_path / "saved"))
    path = litert.export_litert(request, "ram://litert/pair", log=lambda _: None)
    assert path == "ram://litert/pair/1"
    first = TEXTS + ["the cat"]
    second = ["the dog " * 20, "", "a b c", "the mat", "Good", "the " * 30, "x"]
    expected = served(saved, text=first, text_b=second)
    got = run_litert(f"{path}/model.tflite", text=first, text_b=second)
    np.testing.assert_allclose(got["probabilities"], expected["probabilities"], atol=1e-4)
    manifest = json.loads(tf.io.gfile.GFile(f"{path}/litert.json").read())
    assert manifest["inputs"] == ["text", "text_b"]


MISMATCHED = """
import sys
import numpy as np
from bert_tf.export import litert
for file in ("model.tflite", "model_int8.tflite"):
    runner = litert.interpreter(sys.argv[1] + "/" + file).get_signature_runner()
    for a, b in ((3, 2), (2, 3), (1, 0), (0, 1)):
        try:
            runner(text=np.array(["the cat"] * a, object), text_b=np.array(["a"] * b, object))
            print("answered", file, a, b)
        except RuntimeError as e:
            print("refused", file, a, b, str(e).splitlines()[0])
"""


def test_a_pair_request_whose_texts_differ_in_number_is_refused_not_a_crash(tmp_path):
    """text and text_b of different batch sizes: an error from the interpreter (the trimmer's
    kernel read past the shorter batch: a segmentation fault, or rows silently lost)."""
    write_vocab(list(SPECIAL_TOKENS) + WORDS + [".", ","], tmp_path / "vocab.txt")
    vocab = load_vocab(str(tmp_path / "vocab.txt"))
    model = build_task_model("classification", BertEncoder(CONFIG), ["no", "yes"])
    path = litert.export_litert(
        ExportRequest("classification", model, vocab, True, SEQ,
                      {"labels": ["no", "yes"], "pair": True}),
        str(tmp_path / "pair"), log=lambda _: None)
    done = subprocess.run([sys.executable, "-c", MISMATCHED, path], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]  # -11: the crash
    lines = done.stdout.splitlines()
    assert len(lines) == 8 and all(line.startswith("refused") for line in lines), lines
    assert all("num_input_elements != num_output_elements" in line for line in lines), lines


@pytest.mark.parametrize("task, config", [(None, CONFIG), ("question_answering", CONFIG),
                                          ("tagging", CONFIG), (None, MODERNBERT)],
                         ids=["pretrained", "question_answering", "tagging", "modernbert"])
def test_ids_in_models_agree_with_keras(task, config, tmp_path):
    write_vocab(list(SPECIAL_TOKENS) + WORDS + [".", ","], tmp_path / "vocab.txt")
    vocab = load_vocab(str(tmp_path / "vocab.txt"))
    keras.utils.set_random_seed(2)
    labels = ["O", "B-X", "I-X"] if task == "tagging" else []
    model = (build_pretrainer(config, next_sentence=config is CONFIG) if task is None
             else build_task_model(task, BertEncoder(config), labels))
    logs = []
    path = litert.export_litert(ExportRequest(task, model, vocab, True, SEQ, {"labels": labels}),
                                str(tmp_path / "out"), log=logs.append)
    manifest = json.loads((tmp_path / "out" / "1" / "litert.json").read_text())
    assert manifest["inputs"] == ["input_word_ids", "input_mask", "input_type_ids"]
    assert not manifest["text_in"] and manifest["custom_ops"] == []
    assert (task is None) or any("the caller tokenizes" in line for line in logs)
    inputs = random_inputs(config, batch=3, seq_length=SEQ, seed=5)
    expected = (model.encoder(inputs, training=False) if task is None
                else model(inputs, training=False))
    expected = expected if isinstance(expected, dict) else {"logits": expected}
    for name in ("model.tflite", "model_int8.tflite"):
        got = run_litert(os.path.join(path, name), **inputs)
        assert set(manifest["outputs"]) <= set(got)
        for output in manifest["outputs"]:
            want = np.asarray(expected[output])
            if name == "model.tflite":
                np.testing.assert_allclose(got[output], want, atol=1e-4, err_msg=output)
            else:  # weights in int8: close, not equal
                assert np.abs(got[output] - want).max() < 0.25 * np.abs(want).max(), output


def test_lite_packer_equals_the_saved_model_preprocessor_on_ordinary_text(tmp_path):
    from bert_tf.text.preprocessing import Preprocessor

    write_vocab(list(SPECIAL_TOKENS) + WORDS + [".", ","], tmp_path / "vocab.txt")
    vocab = load_vocab(str(tmp_path / "vocab.txt"))
    for lower in (True, False):
        ours = Preprocessor(vocab, lower, SEQ)
        lite = litert.LitePacker(vocab, lower, SEQ)
        to_longest = litert.LitePacker(vocab, lower, SEQ, to_longest=True)
        for texts in ([TEXTS], [TEXTS, list(reversed(TEXTS))], [TEXTS[1:3]], [[""], [""]]):
            segments = [ours.tokenizer.tokenize(t) for t in texts]
            for packer, expected in ((lite, ours.pack(segments)),
                                     (to_longest, ours.pack_to_longest(segments))):
                got = packer([tf.constant(t) for t in texts])
                for name in expected:
                    np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
        assert ours.pack_to_longest([ours.tokenizer.tokenize(TEXTS[1:3])])[
            "input_word_ids"].shape[1] == 11  # [CLS] + the 9 words of the longer + [SEP]


def test_bad_exports_are_refused_and_leave_nothing(tmp_path):
    from bert_tf.export.runs import export_run

    pretrain = make_workspace(tmp_path) / "pretrain"
    files = run_dir.resolve(str(pretrain / "ckpt-1"), str(pretrain))
    exports = tmp_path / "exports"
    with pytest.raises(ValueError, match="--max_seq_length=65 exceeds max_position_embeddings"):
        export_run(files, str(exports), max_seq_length=65, format="litert")
    assert not exports.exists()
    paths = export_run(files, str(exports), max_seq_length=16, format="litert")
    assert paths == {"bert_encoder_litert": str(exports / "bert_encoder_litert" / "1")}
    with pytest.raises(FileExistsError, match="exists; pass --overwrite"):
        export_run(files, str(exports), max_seq_length=16, format="litert", version=1)
    assert os.listdir(exports / "bert_encoder_litert") == ["1"]  # no temporary left
