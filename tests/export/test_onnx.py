"""ONNX exports (ids in) run in ONNX Runtime with the Keras model's outputs, at any batch and
length."""

import dataclasses
import json
import sys

import keras
import numpy as np
import onnxruntime
import pytest

from bert_tf.config import BertConfig
from bert_tf.export import onnx as onnx_export
from bert_tf.export.serving import ExportRequest
from bert_tf.modeling import BertEncoder, build_pretrainer
from bert_tf.modeling.heads import build_task_model
from bert_tf.text.tokenization import SPECIAL_TOKENS, load_vocab, write_vocab
import conftest
from conftest import random_inputs

CONFIG = BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=64, max_position_embeddings=64, initializer_range=0.2)
MODERNBERT = dataclasses.replace(CONFIG, **conftest.MODERNBERT, num_hidden_layers=3)


@pytest.mark.parametrize("task, config", [(None, CONFIG), ("classification", CONFIG),
                                          ("question_answering", CONFIG), (None, MODERNBERT)],
                         ids=["pretrained", "classification", "question_answering",
                              "modernbert"])
def test_onnx_model_matches_keras_at_any_batch_and_length(task, config, tmp_path):
    write_vocab(list(SPECIAL_TOKENS) + [f"w{i}" for i in range(35)], tmp_path / "vocab.txt")
    keras.utils.set_random_seed(3)
    model = (build_pretrainer(config, next_sentence=config is CONFIG) if task is None
             else build_task_model(task, BertEncoder(config), ["a", "b", "c"]))
    labels = ["a", "b", "c"] if task == "classification" else []
    request = ExportRequest(task, model, load_vocab(str(tmp_path / "vocab.txt")), True, 16,
                            {"labels": labels})
    path = onnx_export.export_onnx(request, str(tmp_path / "out"), log=lambda _: None)
    manifest = json.loads((tmp_path / "out" / "1" / "onnx.json").read_text())
    assert manifest["inputs"] == ["input_word_ids", "input_mask", "input_type_ids"]
    session = onnxruntime.InferenceSession(f"{path}/model.onnx",
                                           providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    assert sorted(names) == manifest["outputs"]
    for batch, length in ((1, 8), (5, 33)):
        inputs = random_inputs(config, batch=batch, seq_length=length, seed=length)
        expected = (model.encoder(inputs, training=False) if task is None
                    else model(inputs, training=False))
        expected = expected if isinstance(expected, dict) else {"logits": expected}
        for name, got in zip(names, session.run(None, inputs)):
            np.testing.assert_allclose(got, np.asarray(expected[name]), atol=1e-4,
                                       err_msg=name)


def test_missing_converter_is_named(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # as if not installed
    with pytest.raises(ValueError, match="pip install tf2onnx"):
        onnx_export.to_onnx(None, build_pretrainer(CONFIG))
