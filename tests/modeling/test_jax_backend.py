"""The model code on Keras's JAX backend: same weights, same outputs; fit() trains under XLA.

The encoder, heads and pretrainer use keras.layers / keras.ops only. Each test saves weights
(`.weights.h5`) and outputs from this TensorFlow-backend process, then runs a child process with
KERAS_BACKEND=jax that builds the same model from the same config, loads the weights and compares
(1e-5), or trains. The child also checks that the model code imported no TensorFlow.
jax and jaxlib (CPU) are pinned in requirements-dev.txt.
"""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bert_tf.modeling import BertEncoder, build_pretrainer
from conftest import MODERNBERT, REPO_ROOT, random_inputs, tiny_config

pytestmark = pytest.mark.slow

CHILD = r"""
import json, sys
import numpy as np
import keras
assert keras.backend.backend() == "jax", keras.backend.backend()
from bert_tf.config import BertConfig
from bert_tf.modeling import BertEncoder, build_pretrainer

results = []
for job in json.loads(sys.argv[1]):
    config = BertConfig(**job["config"])
    inputs = dict(np.load(job["inputs"]))
    result = {}
    if job["op"] == "outputs":
        if job["model"] in ("encoder", "modern_encoder"):
            model = BertEncoder(config)
        else:
            model = build_pretrainer(config, packed=job["model"] == "packed_pretrainer",
                                     next_sentence=job["model"] != "modernbert_pretrainer")
        model.load_weights(job["weights"])
        outputs = model(inputs)
        np.savez(job["outputs"], **{k: keras.ops.convert_to_numpy(v)
                                    for k, v in outputs.items() if not isinstance(v, list)})
    elif job["op"] == "attention":  # each implementation: logits and weight gradients
        import jax
        model = build_pretrainer(config, next_sentence=False)
        model.load_weights(job["weights"])
        trainable = [v.value for v in model.trainable_variables]
        fixed = [v.value for v in model.non_trainable_variables]
        probe = np.random.default_rng(0).normal(size=(*inputs["masked_lm_positions"].shape,
                                                      config.vocab_size)).astype("float32")

        def loss(weights):
            outputs, _ = model.stateless_call(weights, fixed, inputs)
            return (outputs["masked_lm_logits"] * probe).sum(), outputs["masked_lm_logits"]

        for name in job["implementations"]:
            model.encoder.set_attention(name)
            (_, logits), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(trainable)
            np.savez(job["outputs"].replace(".npz", f"_{name}.npz"), logits=np.asarray(logits),
                     **{f"grad_{i}": np.asarray(g) for i, g in enumerate(grads)})
    elif job["op"] == "fit":
        labels = dict(np.load(job["labels"]))
        keras.utils.set_random_seed(0)
        model = build_pretrainer(config)
        model.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=True)
        history = model.fit(inputs, labels, batch_size=8, epochs=job["epochs"], verbose=0)
        result["loss"] = history.history["loss"]
        result["metrics"] = sorted(history.history)
        result["jit_compile"] = bool(model.jit_compile)
    # before any fit(), whose data adapters import TensorFlow when it is there (Keras's choice)
    result["tensorflow_imported"] = "tensorflow" in sys.modules
    results.append(result)
print("RESULT " + json.dumps(results))
"""


def run_on_jax(jobs):
    """Runs `jobs` in one KERAS_BACKEND=jax child; returns their results."""
    result = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(jobs)], cwd=REPO_ROOT, capture_output=True,
        text=True, timeout=600,
        env={**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
             "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.split("RESULT ", 1)[1])


def pretraining_features(config, batch=4, seq=16, predictions=5, seed=0):
    rng = np.random.default_rng(seed)
    features = random_inputs(config, batch, seq, seed=seed)
    features["masked_lm_positions"] = np.stack([
        rng.choice(np.arange(1, int(features["input_mask"][b].sum())), predictions,
                   replace=False) for b in range(batch)]).astype("int32")
    return features


def packed_features(config):
    """Two rows of 16: row 0 packs sequences of 7 and 6 tokens, row 1 holds one of 10."""
    mask = np.zeros((2, 16), "int32")
    mask[0, :7], mask[0, 7:13], mask[1, :10] = 1, 2, 1
    rng = np.random.default_rng(3)
    ids = rng.integers(5, config.vocab_size, (2, 16)).astype("int32") * (mask > 0)
    types = np.zeros((2, 16), "int32")
    types[0, 4:7], types[0, 10:13], types[1, 5:10] = 1, 1, 1
    return {"input_word_ids": ids, "input_mask": mask, "input_type_ids": types,
            "masked_lm_positions": np.array([[2, 9, 11], [3, 8, 0]], "int32"),
            "next_sentence_positions": np.array([[0, 7], [0, 0]], "int32")}


# the options beyond BERT: pre-norm, RMSNorm, GEGLU, no biases, rotary positions, a local
# (sliding window) layer after a global one
MODERN = dict(layer_norm="pre", norm_type="rms_norm", hidden_act="geglu", use_bias=False,
              position_embedding_type="rope", local_attention_window=4,
              global_attention_every_n_layers=2)


MODELS = {"encoder": lambda config: BertEncoder(config),
          "modern_encoder": lambda config: BertEncoder(config),
          "modernbert_pretrainer": lambda config: build_pretrainer(config, next_sentence=False),
          "pretrainer": lambda config: build_pretrainer(config),
          "packed_pretrainer": lambda config: build_pretrainer(config, packed=True)}


@pytest.fixture(scope="module")
def on_both(tmp_path_factory):
    """Each model's outputs on the TensorFlow backend and, from its saved weights, on JAX (all
    in one child process, before the fit() job, so the TensorFlow-free check holds)."""
    tmp = tmp_path_factory.mktemp("jax")
    config = tiny_config()
    options = {"modern_encoder": MODERN, "modernbert_pretrainer": MODERNBERT}
    configs = {name: dataclasses.replace(config, **options.get(name, {})) for name in MODELS}
    features = {"encoder": random_inputs(config, batch=3, seq_length=16),
                "modern_encoder": random_inputs(config, batch=3, seq_length=16, seed=1),
                "modernbert_pretrainer": pretraining_features(config),
                "pretrainer": pretraining_features(config),
                "packed_pretrainer": packed_features(config)}
    expected, jobs = {}, []
    for name, make in MODELS.items():
        model = make(configs[name])
        model.save_weights(str(tmp / f"{name}.weights.h5"))
        np.savez(tmp / f"{name}_inputs.npz", **features[name])
        expected[name] = {k: np.asarray(v) for k, v in model(features[name]).items()
                          if not isinstance(v, list)}
        jobs.append({"op": "outputs", "model": name, "config": configs[name].to_dict(),
                     "weights": str(tmp / f"{name}.weights.h5"),
                     "inputs": str(tmp / f"{name}_inputs.npz"),
                     "outputs": str(tmp / f"{name}_jax.npz")})
    reports = run_on_jax(jobs)
    return {name: {"expected": expected[name], "got": dict(np.load(tmp / f"{name}_jax.npz")),
                   "report": report, "config": config}
            for name, report in zip(MODELS, reports)}


def assert_agree(result):
    # The model code pulls in no TensorFlow on JAX: it runs where TensorFlow is not installed.
    assert not result["report"]["tensorflow_imported"]
    assert set(result["got"]) == set(result["expected"])
    for name, expected in result["expected"].items():
        np.testing.assert_allclose(result["got"][name], expected, atol=1e-5, rtol=1e-5,
                                   err_msg=name)


def test_encoder_outputs_agree_on_jax(on_both):
    assert_agree(on_both["encoder"])
    assert {"sequence_output", "pooled_output"} <= set(on_both["encoder"]["expected"])


def test_encoder_options_beyond_bert_agree_on_jax(on_both):
    assert_agree(on_both["modern_encoder"])


def test_modernbert_pretrainer_agrees_on_jax(on_both):
    assert_agree(on_both["modernbert_pretrainer"])
    assert set(on_both["modernbert_pretrainer"]["got"]) == {"masked_lm_logits"}


def test_pretrainer_outputs_agree_on_jax(on_both):
    assert_agree(on_both["pretrainer"])
    config = on_both["pretrainer"]["config"]
    assert on_both["pretrainer"]["got"]["masked_lm_logits"].shape == (4, 5, config.vocab_size)


def test_packed_batch_outputs_agree_on_jax(on_both):
    assert_agree(on_both["packed_pretrainer"])
    assert on_both["packed_pretrainer"]["got"]["next_sentence_logits"].shape == (2, 2, 2)


def test_fused_attention_kernels_agree_with_einsum_on_jax(tmp_path):
    """The splash kernel (in its interpreter: no TPU here) and jax.nn.dot_product_attention
    give the einsum path's logits and weight gradients, with packed rows, padding, rotary
    positions and a sliding-window layer, under jit. (cuDNN's kernel needs a GPU.)"""
    config = dataclasses.replace(tiny_config(max_position_embeddings=128), **MODERNBERT)
    mask = np.zeros((2, 128), "int32")
    mask[0, :50], mask[0, 50:90], mask[1, :128] = 1, 2, 1  # packed and padded; full
    rng = np.random.default_rng(4)
    features = {"input_word_ids": rng.integers(5, config.vocab_size, (2, 128)).astype("int32")
                * (mask > 0), "input_mask": mask, "input_type_ids": np.zeros((2, 128), "int32"),
                "masked_lm_positions": np.array([[3, 49, 50, 89, 70], [0, 1, 64, 100, 127]],
                                                "int32")}
    model = build_pretrainer(config, next_sentence=False)
    model.save_weights(str(tmp_path / "model.weights.h5"))
    np.savez(tmp_path / "inputs.npz", **features)
    expected = np.asarray(model(features)["masked_lm_logits"])
    implementations = ("einsum", "xla", "splash")
    (report,) = run_on_jax([{"op": "attention", "config": config.to_dict(),
                             "implementations": implementations,
                             "weights": str(tmp_path / "model.weights.h5"),
                             "inputs": str(tmp_path / "inputs.npz"),
                             "outputs": str(tmp_path / "out.npz")}])
    assert not report["tensorflow_imported"]
    results = {name: dict(np.load(tmp_path / f"out_{name}.npz")) for name in implementations}
    reference = results["einsum"]
    assert len(reference) == 1 + len(model.trainable_variables)
    for name in implementations:
        np.testing.assert_allclose(results[name]["logits"], expected, atol=1e-5, rtol=1e-5,
                                   err_msg=name)
        for key, gradient in reference.items():
            scale = np.abs(gradient).max()
            assert scale > 0, key  # every weight takes part
            np.testing.assert_allclose(results[name][key] / scale, gradient / scale,
                                       atol=1e-5, err_msg=f"{name} {key}")


def test_fit_trains_on_jax_under_xla(tmp_path):
    config = tiny_config()
    features = pretraining_features(config, batch=16, seed=1)
    rng = np.random.default_rng(1)
    labels = {"masked_lm_ids": rng.integers(5, config.vocab_size, (16, 5)).astype("int32"),
              "masked_lm_weights": np.ones((16, 5), "float32"),
              "next_sentence_labels": rng.integers(0, 2, (16, 1)).astype("int32")}
    np.savez(tmp_path / "inputs.npz", **features)
    np.savez(tmp_path / "labels.npz", **labels)
    (report,) = run_on_jax([{"op": "fit", "config": config.to_dict(), "epochs": 30,
                             "inputs": str(tmp_path / "inputs.npz"),
                             "labels": str(tmp_path / "labels.npz")}])
    assert report["jit_compile"]
    assert {"masked_lm_loss", "masked_lm_accuracy", "next_sentence_loss",
            "next_sentence_accuracy"} <= set(report["metrics"])
    losses = report["loss"]
    assert np.isfinite(losses).all() and losses[-1] < 0.5 * losses[0], losses
