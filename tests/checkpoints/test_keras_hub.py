"""keras-hub presets: what we write loads in keras-hub 0.32 (BertBackbone, BertTextClassifier,
BertTokenizer) with our outputs, and what keras-hub saves converts to bert_tf with its outputs."""

import dataclasses
import json
import shutil
import sys

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from bert_tf import run_dir as run_files
from bert_tf.checkpoints.convert import convert
from bert_tf.checkpoints.names import google_shapes, model_tensors
from bert_tf.checkpoints.native import write_bert_tf
from bert_tf.config import BertConfig
from bert_tf.modeling.heads import task_encoder
from bert_tf.text.preprocessing import Preprocessor
from bert_tf.text.tokenization import SPECIAL_TOKENS, load_vocab, write_vocab
from conftest import random_inputs

WORDS = ["the", "quick", "brown", "fox", "jump", "##s", "##ed", "over", "lazy", "dog", "un",
         "##aff", "##able", "hello", "world", ",", ".", "!", "The", "Hello", "a", "b", "##a"]
VOCAB = list(SPECIAL_TOKENS) + WORDS
CONFIG = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2,
                    num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                    initializer_range=0.2, hidden_act="gelu_tanh")
LABELS = ["neg", "pos", "neutral"]
TEXTS = ["The quick brown fox jumped over the lazy dog!", "hello, world", "unaffable",
         "Hello the dog jumps over a b", ""]


def quiet(_):
    pass


def make_run(directory, config=CONFIG, task=None, labels=(), seed=0):
    """A bert_tf run directory holding random weights (as a finetuning or pretraining run
    leaves it)."""
    keras.utils.set_random_seed(seed)
    model = run_files.build_model(config, task, labels)
    write_bert_tf(model, config, str(directory), False, {"format": "test"}, task, labels)
    write_vocab(VOCAB, directory / "vocab.txt")
    return directory


def our_model(directory):
    model, _ = run_files.load_model(run_files.resolve(directory=str(directory)))
    return model


def encoder_outputs(directory, inputs):
    got = task_encoder(our_model(directory))(inputs, training=False)
    return {name: np.asarray(got[name]) for name in ("sequence_output", "pooled_output")}


def keras_hub_inputs(inputs):
    return {"token_ids": inputs["input_word_ids"], "segment_ids": inputs["input_type_ids"],
            "padding_mask": inputs["input_mask"]}


def assert_close(got, expected, mask, atol=1e-5):
    np.testing.assert_allclose(np.asarray(got["pooled_output"]), expected["pooled_output"],
                               atol=atol, rtol=0)
    real = np.asarray(mask, bool)  # padded positions are not compared (each pads differently)
    np.testing.assert_allclose(np.asarray(got["sequence_output"])[real],
                               expected["sequence_output"][real], atol=atol, rtol=0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("keras_hub")
    for name in ("pretrained", "classifier", "exact_gelu"):
        (tmp / name).mkdir()
    return {"tmp": tmp, "pretrained": make_run(tmp / "pretrained"),
            "classifier": make_run(tmp / "classifier", task="classification", labels=LABELS,
                                   seed=1),
            "exact_gelu": make_run(tmp / "exact_gelu",
                                   dataclasses.replace(CONFIG, hidden_act="gelu"), seed=2),
            "inputs": random_inputs(CONFIG, batch=4, seq_length=20, lengths=[20, 13, 5, 1],
                                    seed=3)}


def test_our_pretrained_model_loads_in_keras_hub_with_our_outputs(runs):
    preset = runs["tmp"] / "pretrained_preset"
    report = convert("bert_tf", str(runs["pretrained"]), "keras_hub", str(preset), log=quiet)
    assert any("heads are not written" in note for note in report["notes"])
    assert json.loads((preset / "config.json").read_text())["registered_name"] == \
        "keras_hub>BertBackbone"
    backbone = keras_hub.models.Backbone.from_preset(str(preset))
    assert isinstance(backbone, keras_hub.models.BertBackbone)
    inputs = runs["inputs"]
    assert_close(backbone(keras_hub_inputs(inputs)),
                 encoder_outputs(runs["pretrained"], inputs), inputs["input_mask"])

    tokenizer = keras_hub.models.BertTokenizer.from_preset(str(preset))
    preprocessor = Preprocessor(load_vocab(str(preset / "vocab.txt")), False, 64)
    assert [[int(i) for i in row] for row in tokenizer(TEXTS)] == preprocessor.tokenize(TEXTS).to_list()
    assert not tokenizer.lowercase


def test_our_classifier_is_a_keras_hub_text_classifier_on_raw_strings(runs):
    preset = runs["tmp"] / "classifier_preset"
    convert("bert_tf", str(runs["classifier"]), "keras_hub", str(preset), log=quiet)
    classifier = keras_hub.models.TextClassifier.from_preset(str(preset))
    assert isinstance(classifier, keras_hub.models.BertTextClassifier)
    assert classifier.num_classes == len(LABELS)
    packed = classifier.preprocessor(tf.constant(TEXTS))
    preprocessor = Preprocessor(load_vocab(str(preset / "vocab.txt")), False,
                                CONFIG.max_position_embeddings)
    ours_packed = preprocessor.pack([preprocessor.tokenize(TEXTS)])
    # keras-hub's preprocessor lays out [CLS] text [SEP] exactly as our exports do
    np.testing.assert_array_equal(packed["token_ids"], ours_packed["input_word_ids"])
    np.testing.assert_array_equal(packed["padding_mask"], ours_packed["input_mask"])
    expected = our_model(runs["classifier"])(ours_packed, training=False)
    np.testing.assert_allclose(np.asarray(classifier(packed)), np.asarray(expected), atol=1e-5,
                               rtol=0)

    report = convert("keras_hub", str(preset), "bert_tf", str(runs["tmp"] / "classifier_back"),
                     log=quiet)
    assert report["task"] == "classification" and report["freshly_initialized"] == []
    back = run_files.resolve(directory=str(runs["tmp"] / "classifier_back"))
    assert back.record["labels"] == LABELS
    shapes = google_shapes(CONFIG, "classification", len(LABELS))
    original = model_tensors(our_model(runs["classifier"]), shapes)
    converted = model_tensors(our_model(runs["tmp"] / "classifier_back"), shapes)
    for name, value in original.items():
        assert converted[name].tobytes() == value.tobytes(), name


def keras_hub_backbone(seed=5):
    keras.utils.set_random_seed(seed)
    return keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCAB), num_layers=2, num_heads=4, hidden_dim=32,
        intermediate_dim=64, max_sequence_length=64, num_segments=2)


def randomize(model, seed):
    """keras-hub initialises biases and LayerNorms to 0 and 1: every weight random instead, so
    a variable moved to the wrong place shows."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        variable.assign(rng.normal(0, 0.2, variable.shape).astype("float32")
                        + (1 if variable.path.endswith("gamma") else 0))


def test_keras_hub_presets_convert_to_bert_tf_with_equal_outputs(runs, tmp_path):
    backbone = keras_hub_backbone()
    randomize(backbone, 6)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCAB, lowercase=True)
    classifier = keras_hub.models.BertTextClassifier(
        backbone, num_classes=2,
        preprocessor=keras_hub.models.BertTextClassifierPreprocessor(tokenizer,
                                                                     sequence_length=20))
    randomize(classifier.output_dense, 7)
    classifier.save_to_preset(str(tmp_path / "theirs"))
    report = convert("keras_hub", str(tmp_path / "theirs"), "bert_tf", str(tmp_path / "ours"),
                     log=quiet)
    assert report["do_lower_case"] is True and report["task"] == "classification"
    files = run_files.resolve(directory=str(tmp_path / "ours"))
    assert files.record["labels"] == ["LABEL_0", "LABEL_1"]
    # keras-hub's BertBackbone computes the tanh GELU: so does the converted config
    assert BertConfig.from_json_file(files.bert_config_file).hidden_act == "gelu_tanh"
    inputs = runs["inputs"]
    expected = {k: np.asarray(v) for k, v in backbone(keras_hub_inputs(inputs)).items()}
    assert_close(encoder_outputs(tmp_path / "ours", inputs), expected, inputs["input_mask"])
    np.testing.assert_allclose(np.asarray(our_model(tmp_path / "ours")(inputs, training=False)),
                               np.asarray(classifier(keras_hub_inputs(inputs))), atol=1e-5,
                               rtol=0)

    masked_lm = keras_hub.models.BertMaskedLM(
        backbone, preprocessor=keras_hub.models.BertMaskedLMPreprocessor(tokenizer))
    randomize(masked_lm.masked_lm_head, 8)
    masked_lm.save_to_preset(str(tmp_path / "masked_lm"))
    report = convert("keras_hub", str(tmp_path / "masked_lm"), "bert_tf",
                     str(tmp_path / "ours_mlm"), log=quiet)
    assert report["freshly_initialized"] == ["next-sentence head"]
    assert any("masked-LM logits differ slightly" in note for note in report["notes"])
    pretrainer, _ = run_files.load_model(run_files.resolve(directory=str(tmp_path / "ours_mlm")))
    head = masked_lm.masked_lm_head
    np.testing.assert_array_equal(
        pretrainer.get_layer("masked_lm_output_bias").weights[0].numpy(), head._bias.numpy())


def test_exact_gelu_models_move_to_keras_hub_with_a_stated_difference(runs):
    preset = runs["tmp"] / "exact_preset"
    report = convert("bert_tf", str(runs["exact_gelu"]), "keras_hub", str(preset), log=quiet)
    assert any("tanh approximation of GELU" in note for note in report["notes"])
    inputs = runs["inputs"]
    got = keras_hub.models.BertBackbone.from_preset(str(preset))(keras_hub_inputs(inputs))
    expected = encoder_outputs(runs["exact_gelu"], inputs)
    real = inputs["input_mask"].astype(bool)
    difference = np.abs(np.asarray(got["sequence_output"])[real]
                        - expected["sequence_output"][real]).max()
    print(f"exact vs tanh GELU, max |sequence_output difference|: {difference:.2e}")
    assert 1e-6 < difference < 5e-2


def test_our_huggingface_export_loads_with_keras_hub_from_preset(runs):
    hf = runs["tmp"] / "hf"
    convert("bert_tf", str(runs["pretrained"]), "huggingface", str(hf), log=quiet)
    backbone = keras_hub.models.BertBackbone.from_preset(str(hf))
    inputs = runs["inputs"]
    assert_close(backbone(keras_hub_inputs(inputs)),
                 encoder_outputs(runs["pretrained"], inputs), inputs["input_mask"])


def test_presets_on_an_object_store_round_trip(runs):
    convert("bert_tf", str(runs["classifier"]), "keras_hub", "ram://keras_hub/preset", log=quiet)
    assert tf.io.gfile.exists("ram://keras_hub/preset/assets/tokenizer/vocabulary.txt")
    convert("keras_hub", "ram://keras_hub/preset", "bert_tf", "ram://keras_hub/back", log=quiet)
    back = our_model("ram://keras_hub/back")
    inputs = runs["inputs"]
    np.testing.assert_array_equal(np.asarray(back(inputs, training=False)),
                                  np.asarray(our_model(runs["classifier"])(inputs,
                                                                           training=False)))


def test_what_keras_hub_cannot_hold_is_refused(runs, tmp_path, monkeypatch):
    (tmp_path / "squad").mkdir()
    squad = make_run(tmp_path / "squad", task="question_answering")
    with pytest.raises(ValueError, match="keras-hub has no BERT question-answering task"):
        convert("bert_tf", str(squad), "keras_hub", str(tmp_path / "out"), log=quiet)
    assert not (tmp_path / "out").exists()

    other = tmp_path / "gpt2"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"registered_name": "keras_hub>GPT2Backbone",
                                                   "config": {}}))
    with pytest.raises(ValueError, match="registered_name is 'keras_hub>GPT2Backbone'"):
        convert("keras_hub", str(other), "bert_tf", str(tmp_path / "out"), log=quiet)

    preset = tmp_path / "classifier"
    convert("bert_tf", str(runs["classifier"]), "keras_hub", str(preset), log=quiet)
    (preset / "labels.json").write_text(json.dumps(["neg", "pos"]))  # the model has 3
    with pytest.raises(ValueError, match="labels.json must list the classifier's 3 label"):
        convert("keras_hub", str(preset), "bert_tf", str(tmp_path / "out"), log=quiet)
    assert not (tmp_path / "out").exists()

    monkeypatch.setitem(sys.modules, "keras_hub", None)  # as if not installed
    with pytest.raises(ValueError, match="pip install keras-hub"):
        convert("bert_tf", str(runs["pretrained"]), "keras_hub", str(tmp_path / "out"),
                log=quiet)


def test_a_damaged_or_partial_preset_is_named_not_converted_with_random_parts(runs, tmp_path):
    """A task preset without task.weights.h5 converts as its backbone alone (keras-hub would
    give a random head); damaged files, weights of another size than config.json says and
    labels that cannot be a classifier's are errors naming the preset's file."""
    preset = tmp_path / "classifier"
    convert("bert_tf", str(runs["classifier"]), "keras_hub", str(preset), log=quiet)

    def damaged(name, text=None, cut=None, base=preset):
        copy = tmp_path / f"damaged_{len(list(tmp_path.iterdir()))}"
        shutil.copytree(base, copy)
        if text is not None:
            (copy / name).write_text(text)
        elif cut is not None:
            data = (copy / name).read_bytes()
            (copy / name).write_bytes(data[:len(data) // cut])
        else:
            (copy / name).unlink()
        return copy

    headless = damaged("task.weights.h5")
    report = convert("keras_hub", str(headless), "bert_tf", str(tmp_path / "out"), log=quiet)
    assert report["task"] is None
    assert any("no task.weights.h5" in s for s in report["skipped_examples"])
    assert run_files.resolve(directory=str(tmp_path / "out")).record.get("task") is None
    expected = encoder_outputs(runs["classifier"], runs["inputs"])
    assert_close(encoder_outputs(tmp_path / "out", runs["inputs"]), expected,
                 runs["inputs"]["input_mask"])

    cases = [(damaged("task.json", cut=2), r"task.json: not valid JSON"),
             (damaged("labels.json", cut=2), r"labels.json: not valid JSON"),
             (damaged("labels.json", text='["x", "x", "y"]'), r"distinct, non-empty strings"),
             (damaged("labels.json", text='[1, 2, 3]'), r"distinct, non-empty strings"),
             (damaged("model.weights.h5", cut=3), r"model.weights.h5: not a readable weights"),
             (damaged("task.weights.h5", cut=3), r"task.weights.h5: not a readable weights")]
    config = json.loads((preset / "config.json").read_text())
    config["config"]["vocabulary_size"] += 7
    cases.append((damaged("config.json", text=json.dumps(config)),
                  r"match its weights"))
    for copy, message in cases:
        with pytest.raises(ValueError, match=rf"--input .*{copy.name}.*{message}"):
            convert("keras_hub", str(copy), "bert_tf", str(tmp_path / "refused"), log=quiet)
        assert not (tmp_path / "refused").exists()
