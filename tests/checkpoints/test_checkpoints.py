"""Checkpoint conversion against implementations we did not write.

The sources are made here: a TF1 checkpoint written with `tf.compat.v1` variables under google's
names (with Adam slots and global_step, as google's run_pretraining leaves them), and a
randomly initialised transformers `BertForPreTraining` saved as safetensors. References: the Model
Garden's own TF1 converter and `BertPretrainerV2` for google checkpoints, transformers (PyTorch,
CPU, in a subprocess: tests/hf_reference.py) for Hugging Face ones.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from safetensors.numpy import load_file, save_file

from bert_tf import run_dir as run_files
from bert_tf.checkpoints import names as checkpoints
from bert_tf.checkpoints.convert import convert
from bert_tf.checkpoints.names import google_shapes
from bert_tf.config import BertConfig, ConfigError
from bert_tf.export.runs import export_run
from bert_tf.finetuning import encoder_source
from bert_tf.modeling import task_encoder
from bert_tf.text.tokenization import SPECIAL_TOKENS, WordpieceTokenizer, load_vocab, write_vocab
from conftest import REPO_ROOT, assigned_unicode_texts, random_inputs

HF_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hf_reference.py")

WORDS = ["the", "quick", "brown", "fox", "jump", "##s", "##ed", "over", "lazy", "dog", "un",
         "##aff", "##able", "cafe", "café", "naive", "resume", "hello", "world", ",", ".", "!",
         "'", "(", ")", "-", "“", "”", "…", "中", "文", "字", "日", "本", "a", "b", "c", "##a",
         "##b", "##c", "x", "##x", "##xx", "##xxx", "s", "##s2", "$", "5", "+", "=", "€", "é",
         "##é", "Hello", "World", "The", "Café", "Über", "über", "straße"]
VOCAB = list(SPECIAL_TOKENS) + WORDS
CONFIG = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2,
                    num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                    initializer_range=0.2)

TEXTS = ["The quick brown fox jumped over the lazy dog!",
         "Héllo, Wörld! Café naïve résumé RÉSUMÉ Über straße STRASSE",
         "中文字符 and 日本語の テキスト mixed中文text",
         "unaffable " + "x" * 90 + " " + "x" * 250 + " " + "é" * 99,
         "tabs\tand\u00a0nbsp\u2003em space\r\nnewline “quotes” … (parens) $5 + 3 = 8 €",
         "ctrl\x07char zero\u200bwidth \ufffdrepl don't stop-believing", "", "   "]


def hf_reference(jobs, tmp_path):
    path = tmp_path / f"jobs-{os.getpid()}-{len(os.listdir(tmp_path))}.json"
    path.write_text(json.dumps(jobs))
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    result = subprocess.run([sys.executable, HF_SCRIPT, str(path)], capture_output=True,
                            text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]


def google_tf1_arrays(config, seed=0):
    """Random weights under google's names, LayerNorm scales near 1."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, shape in google_shapes(config).items():
        value = rng.normal(0, 0.2, shape)
        arrays[name] = (value / 2 + 1 if name.endswith("gamma") else value).astype(np.float32)
    return arrays


def write_tf1_checkpoint(prefix, arrays, with_optimizer=True):
    """As google's TF1 Estimator leaves it: variables by name, Adam slots, global_step."""
    with tf.Graph().as_default():
        variables = [tf.compat.v1.Variable(value, name=name) for name, value in arrays.items()]
        if with_optimizer:
            variables += [tf.compat.v1.Variable(np.zeros_like(value), name=f"{name}/adam_{s}")
                          for name, value in arrays.items() for s in "mv"]
            variables.append(tf.compat.v1.train.get_or_create_global_step())
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, str(prefix), write_meta_graph=False)


def load_pretrainer(output_dir):
    """(pretrainer, vocab, do_lower_case) of a run directory's latest checkpoint."""
    files = run_files.resolve(directory=output_dir)
    pretrainer, vocab = run_files.load_pretrainer(files)
    return pretrainer, vocab, files.do_lower_case


def model_inputs(config):
    inputs = random_inputs(config, batch=4, seq_length=20, lengths=[20, 13, 5, 1], seed=3)
    inputs["masked_lm_positions"] = np.array([[1, 7, 19], [0, 5, 12], [2, 4, 0], [0, 0, 0]],
                                             np.int32)
    return inputs


def our_outputs(run_dir, inputs):
    pretrainer, _, _ = load_pretrainer(output_dir=str(run_dir))
    heads = pretrainer(inputs, training=False)
    encoded = pretrainer.encoder({k: v for k, v in inputs.items() if k != "masked_lm_positions"},
                                 training=False)
    outputs = {name: np.asarray(value) for name, value in {**heads, **encoded}.items()
               if name != "encoder_outputs"}
    for i, value in enumerate(encoded["encoder_outputs"]):
        outputs[f"encoder_outputs_{i}"] = np.asarray(value)
    return outputs


def model_garden_outputs(google_dir, tmp_path, inputs):
    """The Model Garden's TF1 converter + BertPretrainerV2; NSP from google's own weights."""
    from official.legacy.bert import configs
    from official.nlp.tools import tf1_bert_checkpoint_converter_lib as converter
    from official.nlp.tools import tf2_bert_encoder_checkpoint_converter as tf2_converter

    config = configs.BertConfig.from_json_file(str(google_dir / "bert_config.json"))
    renamed = str(tmp_path / "mg_renamed" / "ckpt")
    converter.convert(str(google_dir / "bert_model.ckpt"), renamed,
                      num_heads=config.num_attention_heads,
                      name_replacements=converter.BERT_V2_NAME_REPLACEMENTS,
                      permutations=converter.BERT_V2_PERMUTATIONS, exclude_patterns=["adam"])
    model = tf2_converter._create_bert_pretrainer_model(config)
    model.load_weights(renamed).assert_existing_objects_matched()
    got = model({k: tf.constant(v) for k, v in inputs.items()}, training=False)
    reader = tf.train.load_checkpoint(str(google_dir / "bert_model.ckpt"))
    pooled = got["pooled_output"].numpy()
    return {"sequence_output": got["sequence_output"].numpy(), "pooled_output": pooled,
            "masked_lm_logits": got["mlm_logits"].numpy(),
            "next_sentence_logits": pooled @ reader.get_tensor(
                "cls/seq_relationship/output_weights").T
            + reader.get_tensor("cls/seq_relationship/output_bias")}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Sources, every conversion, and the references' outputs, made once."""
    tmp = tmp_path_factory.mktemp("ckpt")
    google = tmp / "google"
    google.mkdir()
    write_tf1_checkpoint(google / "bert_model.ckpt", google_tf1_arrays(CONFIG))
    CONFIG.to_json_file(google / "bert_config.json")  # hidden_act "gelu", as google's files
    write_vocab(VOCAB, google / "vocab.txt")

    hf = tmp / "hf"
    hf_config = {**CONFIG.to_dict(), "layer_norm_eps": 1e-12}
    hf_reference([{"op": "create", "dir": str(hf), "config": hf_config, "seed": 0}], tmp)
    write_vocab(VOCAB, hf / "vocab.txt")
    (hf / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "BertTokenizer", "do_lower_case": False}))

    logs, reports = [], {}

    def run(name, *args, **kwargs):
        reports[name] = convert(*args, log=logs.append, **kwargs)
        return tmp / name

    run("google_to_bert_tf", "google_tf1", str(google / "bert_model.ckpt"), "bert_tf",
        str(tmp / "google_to_bert_tf"))
    run("google_to_hf", "google_tf1", str(google), "huggingface", str(tmp / "google_to_hf"))
    run("google_round_trip", "bert_tf", str(tmp / "google_to_bert_tf"), "google_tf1",
        str(tmp / "google_round_trip"))
    run("hf_to_bert_tf", "huggingface", str(hf), "bert_tf", str(tmp / "hf_to_bert_tf"))
    run("hf_round_trip", "bert_tf", str(tmp / "hf_to_bert_tf" / "ckpt-0"), "huggingface",
        str(tmp / "hf_round_trip"))

    inputs = model_inputs(CONFIG)
    np.savez(tmp / "inputs.npz", **inputs)
    jobs = [{"op": "run", "dir": str(tmp / d), "model": m, "inputs": str(tmp / "inputs.npz"),
             "outputs": str(tmp / f"{d}-{m}.npz")}
            for d, m in (("hf", "BertForPreTraining"), ("google_to_hf", "BertForPreTraining"),
                         ("google_to_hf", "BertModel"))]
    for d in ("hf", "hf_round_trip"):
        jobs.append({"op": "tokenize", "dir": str(tmp / d), "texts": TEXTS,
                     "output": str(tmp / f"{d}-tokens.json")})
    hf_reference(jobs, tmp)
    return {"tmp": tmp, "google": google, "hf": hf, "inputs": inputs, "reports": reports,
            "logs": logs}


def reference(work, name):
    return dict(np.load(work["tmp"] / f"{name}.npz"))


HEAD_OUTPUTS = ("sequence_output", "pooled_output", "masked_lm_logits", "next_sentence_logits")


def assert_outputs_close(got, expected, names, atol=1e-4):
    for name in names:
        np.testing.assert_allclose(got[name], expected[name], atol=atol, rtol=0, err_msg=name)


# === Outputs equal the source implementation's ===

def test_google_tf1_import_matches_the_model_garden(work):
    ours = our_outputs(work["tmp"] / "google_to_bert_tf", work["inputs"])
    expected = model_garden_outputs(work["google"], work["tmp"], work["inputs"])
    assert_outputs_close(ours, expected, HEAD_OUTPUTS)
    assert np.abs(expected["masked_lm_logits"]).max() > 1  # not a trivially small comparison


def test_google_tf1_import_report(work):
    report = work["reports"]["google_to_bert_tf"]
    assert report["converted"] == len(google_shapes(CONFIG))
    assert report["freshly_initialized"] == []
    assert report["skipped"] == 2 * len(google_shapes(CONFIG)) + 1  # adam_m, adam_v, global_step
    assert any("gelu_new" in note for note in report["notes"])
    assert BertConfig.from_json_file(work["tmp"] / "google_to_bert_tf" / "bert_config.json"
                                     ).hidden_act == "gelu_new"
    assert any(f"skipped {report['skipped']} " in line for line in work["logs"])


def test_huggingface_import_matches_transformers(work):
    ours = our_outputs(work["tmp"] / "hf_to_bert_tf", work["inputs"])
    expected = reference(work, "hf-BertForPreTraining")
    layers = [f"encoder_outputs_{i}" for i in range(CONFIG.num_hidden_layers)]
    assert_outputs_close(ours, expected, HEAD_OUTPUTS + tuple(layers))
    report = work["reports"]["hf_to_bert_tf"]
    assert report["freshly_initialized"] == [] and report["do_lower_case"] is False


def test_huggingface_export_loads_in_transformers_with_the_same_outputs(work):
    """google TF1 -> Hugging Face; transformers' BertForPreTraining and BertModel agree with the
    Model Garden's reading of the same TF1 checkpoint."""
    expected = model_garden_outputs(work["google"], work["tmp"], work["inputs"])
    assert_outputs_close(reference(work, "google_to_hf-BertForPreTraining"), expected,
                         HEAD_OUTPUTS)
    assert_outputs_close(reference(work, "google_to_hf-BertModel"), expected,
                         ("sequence_output", "pooled_output"))


# transformers 4.x's TF names (models/bert/modeling_tf_bert.py: TFBertMainLayer "bert",
# TFBertMLMHead "mlm___cls", TFBertNSPHead "nsp___cls") for the PyTorch names of the same weights
TF_BERT_NAMES = [
    (r"^bert\.embeddings\.word_embeddings\.weight$", "bert/embeddings/word_embeddings/weight"),
    (r"^bert\.embeddings\.(position|token_type)_embeddings\.weight$",
     r"bert/embeddings/\1_embeddings/embeddings"),
    (r"^cls\.predictions\.bias$", "mlm___cls/predictions/bias"),
    (r"^cls\.predictions\.", "mlm___cls/predictions/"), (r"^cls\.seq_relationship\.",
                                                          "nsp___cls/seq_relationship/"),
    (r"LayerNorm\.weight$", "LayerNorm/gamma"), (r"LayerNorm\.bias$", "LayerNorm/beta"),
    (r"\.weight$", "/kernel"), (r"\.", "/"),
    (r"^bert/encoder/layer/(\d+)/", r"bert/encoder/layer_._\1/")]


def write_tf_model_h5(path, torch_arrays, scope="tf_bert_for_pre_training"):
    """tf_model.h5 as TFBertForPreTraining.save_pretrained wrote it: Keras 2's HDF5 weights
    (tf_keras' hdf5_format.save_weights_to_hdf5_group: `layer_names`, a group per layer with
    its `weight_names`), TF variable names, kernels [in, out]; the attention kernels in the
    EinsumDense form some 4.x releases had ([H, heads, head size])."""
    import h5py

    layers = {}
    for name, value in torch_arrays.items():
        if name.startswith("cls.predictions.decoder"):
            continue  # tied: TF has the one embedding table
        tf_name = name
        for pattern, replacement in TF_BERT_NAMES:
            tf_name = re.sub(pattern, replacement, tf_name)
        if tf_name.endswith("/kernel") and "_embeddings" not in tf_name:
            value = value.T
            if re.search(r"attention/self/\w+/kernel$", tf_name):
                value = value.reshape(value.shape[0], CONFIG.num_attention_heads, -1)
        layers.setdefault(tf_name.split("/")[0], {})[f"{scope}/{tf_name}:0"] = value
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [name.encode() for name in layers]
        for layer, weights in sorted(layers.items()):
            group = f.create_group(layer)
            group.attrs["weight_names"] = [name.encode() for name in weights]
            for name, value in weights.items():
                group.create_dataset(name, data=value)


def test_tensorflow_classes_tf_model_h5_converts_with_transformers_outputs(work, tmp_path):
    """What transformers' TFBert* classes saved (removed in transformers 5): the same weights
    as the transformers model of `work`, written as its TF twin would, give its outputs."""
    tf_dir = copy_into(tmp_path / "tf_saved", work["hf"], names=("vocab.txt",
                                                                 "tokenizer_config.json"))
    write_tf_model_h5(tf_dir / "tf_model.h5", load_file(work["hf"] / "model.safetensors"))
    config = json.loads((work["hf"] / "config.json").read_text())
    (tf_dir / "config.json").write_text(json.dumps(
        {**config, "architectures": ["TFBertForPreTraining"]}))
    report = convert("huggingface", str(tf_dir), "bert_tf", str(tmp_path / "ours"),
                     log=lambda _: None)
    assert report["freshly_initialized"] == [] and report["skipped"] == 0
    ours = our_outputs(tmp_path / "ours", work["inputs"])
    layers = [f"encoder_outputs_{i}" for i in range(CONFIG.num_hidden_layers)]
    assert_outputs_close(ours, reference(work, "hf-BertForPreTraining"),
                         HEAD_OUTPUTS + tuple(layers))


# === Round trips are exact ===

def test_huggingface_round_trip_is_bit_identical(work):
    source = load_file(work["hf"] / "model.safetensors")
    back = load_file(work["tmp"] / "hf_round_trip" / "model.safetensors")
    assert sorted(back) == sorted(source)
    for name, value in source.items():
        assert back[name].dtype == value.dtype and back[name].tobytes() == value.tobytes(), name
    with open(work["tmp"] / "hf_round_trip" / "config.json") as f:
        config = json.load(f)
    assert checkpoints.config_from_huggingface(config, "config.json") == CONFIG


def test_google_tf1_round_trip_is_bit_identical(work):
    source = tf.train.load_checkpoint(str(work["google"] / "bert_model.ckpt"))
    back = tf.train.load_checkpoint(str(work["tmp"] / "google_round_trip" / "bert_model.ckpt"))
    names = sorted(back.get_variable_to_shape_map())
    assert names == sorted(google_shapes(CONFIG))
    for name in names:
        assert back.get_tensor(name).tobytes() == source.get_tensor(name).tobytes(), name
    # google's name for the tanh GELU again
    assert BertConfig.from_json_file(work["tmp"] / "google_round_trip" / "bert_config.json"
                                     ) == CONFIG


# === Tokenizer: ours gives the checkpoint's own ids ===

def test_tokenizer_agrees_with_the_checkpoints_own(work):
    """transformers' AutoTokenizer on the source directory and on our Hugging Face export (its
    tokenizer_config.json) gives our tensorflow-text tokenizer's ids."""
    ours = WordpieceTokenizer(load_vocab(work["hf"] / "vocab.txt"), do_lower_case=False)
    expected = ours.tokenize(tf.constant(TEXTS)).to_list()
    for directory in ("hf", "hf_round_trip"):
        with open(work["tmp"] / f"{directory}-tokens.json") as f:
            theirs = json.load(f)
        for text, got, want in zip(TEXTS, expected, theirs["ids"], strict=True):
            assert got == want, (directory, text)
    flat = [i for ids in expected for i in ids]
    vocab = load_vocab(work["hf"] / "vocab.txt")
    assert vocab.unk_id in flat and vocab.id("##aff") in flat and vocab.id("中") in flat


def test_lower_cased_tokenizer_agrees_with_transformers(tmp_path):
    directory = tmp_path / "uncased"
    directory.mkdir()
    words = [w for w in VOCAB if w == w.lower() or w.startswith("[")]
    write_vocab(words, directory / "vocab.txt")
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "BertTokenizer", "do_lower_case": True}))
    hf_reference([{"op": "tokenize", "dir": str(directory), "texts": TEXTS,
                   "output": str(tmp_path / "tokens.json")}], tmp_path)
    with open(tmp_path / "tokens.json") as f:
        theirs = json.load(f)["ids"]
    ours = WordpieceTokenizer(load_vocab(directory / "vocab.txt"), do_lower_case=True)
    assert ours.tokenize(tf.constant(TEXTS)).to_list() == theirs


def test_tokenizers_differ_only_on_characters_new_to_unicode(work, tmp_path):
    """Character by character over the Unicode sample of test_tokenization: transformers' Rust
    tokenizer classifies ~35 characters added to Unicode since version 9 (new punctuation,
    format marks) differently from google's Python tokenizer, which ours follows. Words of
    101-200 characters are [UNK] in transformers and split by google and us."""

    chars = sorted({c for t in assigned_unicode_texts(1500, 0) for c in t})
    texts = ["a" + c + "a" for c in chars] + ["x" * 150]
    hf_reference([{"op": "tokenize", "dir": str(work["hf"]), "texts": texts,
                   "output": str(tmp_path / "chars.json")}], tmp_path)
    with open(tmp_path / "chars.json") as f:
        theirs = json.load(f)["ids"]
    ours = WordpieceTokenizer(load_vocab(work["hf"] / "vocab.txt"), do_lower_case=False)
    got = ours.tokenize(tf.constant(texts)).to_list()
    differ = [c for c, a, b in zip(chars, got, theirs) if a != b]
    import unicodedata
    assert len(chars) > 5000 and len(differ) <= 40, [hex(ord(c)) for c in differ]
    assert {unicodedata.category(c) for c in differ} <= {"Po", "Ps", "Pe", "Pd", "Cf", "So"}
    vocab = load_vocab(work["hf"] / "vocab.txt")
    assert theirs[-1] == [vocab.unk_id] and got[-1] != [vocab.unk_id]


# === Partial sources, bad input ===

def copy_into(target_dir, source_dir, names=("config.json", "vocab.txt")):
    """A new directory holding copies of `names` from `source_dir`."""
    target_dir.mkdir()
    for name in names:
        (target_dir / name).write_bytes((source_dir / name).read_bytes())
    return target_dir


def strip_to_bert_model(source_dir, target_dir, keep_pooler):
    """A BertModel-style directory (no `bert.` prefix, no heads) from a BertForPreTraining one."""
    copy_into(target_dir, source_dir)
    arrays = {name.removeprefix("bert."): value
              for name, value in load_file(source_dir / "model.safetensors").items()
              if name.startswith("bert.") and (keep_pooler or ".pooler." not in name)}
    save_file(arrays, target_dir / "model.safetensors", metadata={"format": "pt"})


def test_missing_pooler_and_heads_are_fresh_and_reported(work, tmp_path):
    strip_to_bert_model(work["hf"], tmp_path / "bert_model", keep_pooler=False)
    logs = []
    report = convert("huggingface", str(tmp_path / "bert_model"), "bert_tf",
                     str(tmp_path / "out"), log=logs.append)
    assert report["freshly_initialized"] == ["pooler", "masked-LM head", "next-sentence head"]
    assert sum("freshly initialised" in line for line in logs) == 3
    # no tokenizer_config.json: lower-casing is inferred from the vocab's upper-case tokens
    assert report["do_lower_case"] is False and any("inferred" in n for n in report["notes"])
    ours = our_outputs(tmp_path / "out", work["inputs"])
    expected = reference(work, "hf-BertForPreTraining")
    assert_outputs_close(ours, expected, ("sequence_output", "encoder_outputs_0"))
    assert not np.allclose(ours["pooled_output"], expected["pooled_output"], atol=1e-2)


def expect_error(match, *args, **kwargs):
    with pytest.raises((ValueError, OSError)) as error:
        convert(*args, log=lambda _: None, **kwargs)
    assert match in str(error.value), str(error.value)
    return str(error.value)


def test_bad_sources_name_the_variable_or_file(work, tmp_path):
    google, hf = work["google"], work["hf"]
    # a config that does not fit the weights: the variable and both shapes
    bad = copy_into(tmp_path / "google_bad", google, os.listdir(google))
    BertConfig(**{**CONFIG.to_dict(), "intermediate_size": 48}).to_json_file(
        bad / "bert_config.json")
    message = expect_error("variable bert/encoder/layer_0/intermediate/dense/", "google_tf1",
                           str(bad), "bert_tf", str(tmp_path / "o1"))
    assert "(64,)" in message and "(48,)" in message
    # the same for Hugging Face, under its own name
    hf_bad = tmp_path / "hf_bad"
    strip_to_bert_model(hf, hf_bad, keep_pooler=True)
    config = json.loads((hf / "config.json").read_text())
    (hf_bad / "config.json").write_text(json.dumps({**config, "intermediate_size": 48}))
    expect_error("variable encoder.layer.0.intermediate.dense.", "huggingface", str(hf_bad),
                 "bert_tf", str(tmp_path / "o2"))
    # an incomplete encoder
    (hf_bad / "config.json").write_text(json.dumps(config))
    arrays = load_file(hf_bad / "model.safetensors")
    del arrays["encoder.layer.1.output.dense.bias"]
    save_file(arrays, hf_bad / "model.safetensors", metadata={"format": "pt"})
    expect_error("encoder is incomplete", "huggingface", str(hf_bad), "bert_tf",
                 str(tmp_path / "o3"))
    # the wrong --input_format
    expect_error("is --input_format right?", "google_tf1", str(work["tmp"] / "hf_to_bert_tf"),
                 "bert_tf", str(tmp_path / "o4"))
    # a model that is not BERT
    (hf_bad / "config.json").write_text(json.dumps({**config, "model_type": "roberta"}))
    with pytest.raises(ConfigError, match="model_type='roberta'"):
        convert("huggingface", str(hf_bad), "bert_tf", str(tmp_path / "o5"))
    # a PyTorch-only directory
    torch_only = tmp_path / "torch_only"
    torch_only.mkdir()
    (torch_only / "config.json").write_text(json.dumps(config))
    (torch_only / "pytorch_model.bin").write_bytes(b"")
    expect_error("pytorch_model.bin", "huggingface", str(torch_only), "bert_tf",
                 str(tmp_path / "o6"))
    # an untied decoder cannot be represented
    untied = copy_into(tmp_path / "untied", hf)
    arrays = load_file(hf / "model.safetensors")
    arrays["cls.predictions.decoder.weight"] = arrays["bert.embeddings.word_embeddings.weight"] + 1
    save_file(arrays, untied / "model.safetensors", metadata={"format": "pt"})
    expect_error("cls.predictions.decoder.weight differs", "huggingface", str(untied),
                 "bert_tf", str(tmp_path / "o7"))
    # an existing output is kept unless --overwrite
    expect_error("--overwrite", "huggingface", str(hf), "bert_tf",
                 str(work["tmp"] / "hf_to_bert_tf"))
    # nothing partial is left behind by the failures
    leftovers = [n for n in os.listdir(tmp_path) if n.startswith(("o", "."))]
    assert leftovers == [], leftovers


def test_files_named_by_a_source_stay_in_its_directory(work, tmp_path):
    """A model.safetensors.index.json's weight_map names files beside it, nothing else; a
    broken safetensors file is named in one line."""
    hf = work["hf"]
    other = copy_into(tmp_path / "other", hf, ("config.json", "vocab.txt", "model.safetensors"))
    sharded = copy_into(tmp_path / "sharded", hf)
    names = list(load_file(hf / "model.safetensors"))
    for target in ("/etc/passwd", "../other/model.safetensors", str(other / "model.safetensors"),
                   "sub/../../other/model.safetensors"):
        (sharded / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {}, "weight_map": dict.fromkeys(names, target)}))
        expect_error("is not a file name; the files this one lists must be beside it",
                     "huggingface", str(sharded), "bert_tf", str(tmp_path / "o"))
    data = (hf / "model.safetensors").read_bytes()
    broken = copy_into(tmp_path / "broken", hf)
    (broken / "model.safetensors").write_bytes(data[:len(data) // 2])  # truncated
    message = expect_error("not a complete safetensors file", "huggingface", str(broken),
                           "bert_tf", str(tmp_path / "o"))
    assert str(broken / "model.safetensors") in message
    header = json.dumps({"x": {"dtype": "F32", "shape": [2 ** 60],
                               "data_offsets": [0, 2 ** 62]}}).encode()
    (broken / "model.safetensors").write_bytes(
        len(header).to_bytes(8, "little") + header + bytes(16))  # claims 2^62 bytes
    expect_error("not a complete safetensors file", "huggingface", str(broken), "bert_tf",
                 str(tmp_path / "o"))
    assert not (tmp_path / "o").exists()


def test_tied_decoder_copy_is_accepted(work, tmp_path):
    """Checkpoints saved with the tied decoder written out (older transformers) convert too."""
    tied = copy_into(tmp_path / "tied", work["hf"])
    arrays = load_file(work["hf"] / "model.safetensors")
    arrays["cls.predictions.decoder.weight"] = arrays["bert.embeddings.word_embeddings.weight"]
    arrays["cls.predictions.decoder.bias"] = arrays.pop("cls.predictions.bias")
    for name in list(arrays):  # pytorch-pretrained-bert's LayerNorm names
        if name.endswith("LayerNorm.weight"):
            arrays[name.replace("LayerNorm.weight", "LayerNorm.gamma")] = arrays.pop(name)
    save_file(arrays, tied / "model.safetensors", metadata={"format": "pt"})
    report = convert("huggingface", str(tied), "bert_tf", str(tmp_path / "out"),
                     log=lambda _: None)
    assert report["freshly_initialized"] == [] and report["skipped"] == 2  # the tied copies
    assert_outputs_close(our_outputs(tmp_path / "out", work["inputs"]),
                         reference(work, "hf-BertForPreTraining"), HEAD_OUTPUTS)


def test_half_precision_sources_convert(work, tmp_path):
    """bfloat16 and float16 safetensors (common on the hub) are read and widened to float32."""
    import ml_dtypes

    source = load_file(work["hf"] / "model.safetensors")
    for dtype in (ml_dtypes.bfloat16, np.float16):
        half = copy_into(tmp_path / np.dtype(dtype).name, work["hf"],
                         ("config.json", "vocab.txt", "tokenizer_config.json"))
        save_file({k: v.astype(dtype) for k, v in source.items()}, half / "model.safetensors",
                  metadata={"format": "pt"})
        convert("huggingface", str(half), "huggingface", str(half) + "_out", log=lambda _: None)
        back = load_file(f"{half}_out/model.safetensors")
        for name, value in source.items():
            assert back[name].dtype == np.float32
            np.testing.assert_array_equal(back[name], value.astype(dtype).astype(np.float32))


def test_integer_and_int8_safetensors_are_refused(work, tmp_path):
    """An integer file, or one quantized tensor: named, nothing written (not cast to garbage)."""
    source = load_file(work["hf"] / "model.safetensors")
    name = sorted(n for n in source if n.endswith("query.weight"))[0]
    for label, arrays in (("int32", {k: v.astype(np.int32) for k, v in source.items()}),
                          ("int8", {**source, name: source[name].astype(np.int8)})):
        bad = copy_into(tmp_path / label, work["hf"],
                        ("config.json", "vocab.txt", "tokenizer_config.json"))
        save_file(arrays, bad / "model.safetensors", metadata={"format": "pt"})
        with pytest.raises(ValueError, match=rf"tensor \S+ is {label}; bert_tf reads float"):
            convert("huggingface", str(bad), "bert_tf", str(tmp_path / f"{label}_out"),
                    log=lambda _: None)
        assert not (tmp_path / f"{label}_out").exists()


# === The command line and the rest of the pipeline ===

def test_cli_converts_and_reports(work, tmp_path):
    command = [sys.executable, "-m", "bert_tf.convert_checkpoint", "--input_format=google_tf1",
               f"--input={work['google']}", "--output_format=huggingface",
               f"--output={tmp_path / 'hf'}"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    count = len(google_shapes(CONFIG))
    assert f"{count} variables converted" in result.stdout, result.stdout
    assert f"skipped {2 * count + 1}" in result.stdout
    assert sorted(os.listdir(tmp_path / "hf")) == ["config.json", "model.safetensors",
                                                   "tokenizer_config.json", "vocab.txt"]
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 1 and "--overwrite" in again.stderr


@pytest.mark.slow
def test_imported_checkpoint_finetunes_and_exports(tmp_path):
    """Hugging Face -> bert_tf -> run_classifier --init_checkpoint (config, vocab and
    lower-casing found beside it) -> the text-in classifier export; the encoder export of the
    converted checkpoint gives transformers' pooled output. The classifier's output_dir is a run
    directory: exported again, converted to a transformers BertForSequenceClassification with
    the same logits, and the --init_checkpoint of another classification job (its encoder)."""
    from bert_tf.export import export_all
    from bert_tf.finetuning.classification import run
    from classification_fixtures import make_workspace, values

    (tmp_path / "cls").mkdir()
    workspace = make_workspace(tmp_path / "cls")
    vocab = workspace / "pretrain" / "vocab.txt"
    hf = tmp_path / "hf"
    config = {**BertConfig.from_json_file(workspace / "pretrain" / "bert_config.json").to_dict(),
              "layer_norm_eps": 1e-12}
    hf_reference([{"op": "create", "dir": str(hf), "config": config, "seed": 1}], tmp_path)
    (hf / "vocab.txt").write_bytes(vocab.read_bytes())
    (hf / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    convert("huggingface", str(hf), "bert_tf", str(tmp_path / "imported"), log=lambda _: None)

    result = run(values(workspace, "single", tmp_path / "finetuned",
                        init_checkpoint=str(tmp_path / "imported" / "ckpt-0")),
                 log=lambda _: None)
    assert result["accuracy"] >= 0.9, result
    exported = tmp_path / "finetuned" / "export" / "classifier"
    assert os.listdir(exported) == ["1"]
    loaded = tf.saved_model.load(str(exported / "1"))
    probabilities = loaded.signatures["serving_default"](
        text=tf.constant(["the cat sat on a good mat ."]))["probabilities"]
    assert probabilities.shape == (1, 2)

    finetuned = run_files.resolve(directory=str(tmp_path / "finetuned"))
    assert finetuned.record["task"] == "classification"
    assert finetuned.record["labels"] == ["negative", "positive"]
    again = export_run(finetuned, str(tmp_path / "again"))["classifier"]
    texts = tf.constant(["the cat sat on a good mat .", "a bad dog ran ."])
    np.testing.assert_allclose(
        tf.saved_model.load(again).signatures["serving_default"](text=texts)["probabilities"],
        loaded.signatures["serving_default"](text=texts)["probabilities"], atol=1e-6)
    convert("bert_tf", str(tmp_path / "finetuned"), "huggingface", str(tmp_path / "hf_cls"),
            log=lambda _: None)
    classifier, _ = run_files.load_model(finetuned)
    cls_inputs = random_inputs(task_encoder(classifier).config, batch=3, seq_length=10, seed=6)
    np.savez(tmp_path / "cls_inputs.npz", **cls_inputs)
    hf_reference([{"op": "run", "dir": str(tmp_path / "hf_cls"),
                   "model": "BertForSequenceClassification",
                   "inputs": str(tmp_path / "cls_inputs.npz"),
                   "outputs": str(tmp_path / "hf_cls.npz")}], tmp_path)
    np.testing.assert_allclose(classifier(cls_inputs, training=False),
                               np.load(tmp_path / "hf_cls.npz")["logits"], atol=1e-4)
    # another task's labels: a job with it as --init_checkpoint starts from its encoder (the
    # job's whole run on a run directory's encoder is tested above, from the converted one)
    pair = values(workspace, "pair", tmp_path / "second",
                  init_checkpoint=str(tmp_path / "finetuned"))
    assert not encoder_source.continues(encoder_source.encoder_source(pair), "classification",
                                 ["both", "not_both"])
    encoder = encoder_source.load_encoder(encoder_source.encoder_source(pair))
    for ours, theirs in zip(encoder.weights, task_encoder(classifier).weights, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert encoder_source.continues(encoder_source.encoder_source(pair), "classification",
                             ["negative", "positive"])  # the same task and labels: the whole model

    pretrainer, vocab_loaded, lower = load_pretrainer(output_dir=str(tmp_path / "imported"))
    export_all(pretrainer, vocab_loaded, lower, 32, str(tmp_path / "exports"))
    encoder = tf.saved_model.load(str(tmp_path / "exports" / "bert_encoder" / "1"))
    inputs = random_inputs(pretrainer.config, batch=2, seq_length=12, seed=5)
    np.savez(tmp_path / "inputs.npz", **inputs, masked_lm_positions=np.zeros((2, 1), np.int32))
    hf_reference([{"op": "run", "dir": str(hf), "model": "BertModel",
                   "inputs": str(tmp_path / "inputs.npz"),
                   "outputs": str(tmp_path / "hf.npz")}], tmp_path)
    got = encoder({k: tf.constant(v) for k, v in inputs.items()}, training=False)
    np.testing.assert_allclose(got["pooled_output"].numpy(),
                               np.load(tmp_path / "hf.npz")["pooled_output"], atol=1e-4)


def test_init_checkpoint_with_a_google_checkpoint_says_how_to_convert(work):
    from bert_tf.modeling import build_pretrainer

    with pytest.raises(ValueError, match="convert_checkpoint --input_format=google_tf1"):
        run_files.load_model_weights(build_pretrainer(CONFIG), str(work["google"] / "bert_model.ckpt"))


# === Finetuned heads: sequence classification, question answering, token classification ===

TASK_MODELS = {"classification": ("BertForSequenceClassification",
                                  {"num_labels": 2, "id2label": {"0": "neg", "1": "pos"}}),
               "question_answering": ("BertForQuestionAnswering", {}),
               "tagging": ("BertForTokenClassification",
                           {"num_labels": 3, "id2label": {"0": "O", "1": "B-PER", "2": "I-PER"}})}


@pytest.mark.slow
@pytest.mark.parametrize("task", list(TASK_MODELS))
def test_huggingface_finetuned_heads_import_serve_and_export_back(task, tmp_path):
    """A transformers BertForSequenceClassification / BertForQuestionAnswering /
    BertForTokenClassification -> bert_tf: the same logits (1e-4); back to Hugging Face bit for
    bit; and, through `python -m bert_tf.export`, the task's text-in SavedModel."""
    architecture, extra = TASK_MODELS[task]
    hf = tmp_path / "hf"
    hf_reference([{"op": "create", "dir": str(hf), "model": architecture, "seed": 3,
                   "config": {**CONFIG.to_dict(), "layer_norm_eps": 1e-12, **extra}}], tmp_path)
    write_vocab(VOCAB, hf / "vocab.txt")
    (hf / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    report = convert("huggingface", str(hf), "bert_tf", str(tmp_path / "ours"),
                     log=lambda _: None)
    # transformers' question-answering and token-classification models have no pooler
    assert report["task"] == task
    assert report["freshly_initialized"] == ([] if task == "classification" else ["pooler"])
    convert("bert_tf", str(tmp_path / "ours"), "huggingface", str(tmp_path / "back"),
            log=lambda _: None)

    inputs = random_inputs(CONFIG, batch=3, seq_length=12, seed=4)
    np.savez(tmp_path / "inputs.npz", **inputs)
    hf_reference([{"op": "run", "dir": str(hf), "model": architecture,
                   "inputs": str(tmp_path / "inputs.npz"),
                   "outputs": str(tmp_path / "hf.npz")}], tmp_path)
    expected = dict(np.load(tmp_path / "hf.npz"))
    files = run_files.resolve(directory=str(tmp_path / "ours"))
    model, _ = run_files.load_model(files)
    ours = model(inputs, training=False)
    if task == "question_answering":
        for name in ("start_logits", "end_logits"):
            np.testing.assert_allclose(ours[name], expected[name], atol=1e-4)
    else:
        np.testing.assert_allclose(ours, expected["logits"], atol=1e-4)
        assert files.record["labels"] == list(extra["id2label"].values())

    original, back = load_file(hf / "model.safetensors"), load_file(
        tmp_path / "back" / "model.safetensors")
    assert set(back) == set(original)
    for name, value in original.items():
        assert back[name].tobytes() == value.tobytes(), name
    back_config = json.loads((tmp_path / "back" / "config.json").read_text())
    assert back_config["architectures"] == [architecture]

    result = subprocess.run([sys.executable, "-m", "bert_tf.export",
                             f"--output_dir={tmp_path / 'ours'}",
                             f"--export_dir={tmp_path / 'exports'}", "--max_seq_length=32"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    name = {"classification": "classifier", "question_answering": "squad",
            "tagging": "tagger"}[task]
    served = tf.saved_model.load(str(tmp_path / "exports" / name / "1")).signatures[
        "serving_default"]
    if task == "classification":
        labelled = served(text=tf.constant(["the quick fox"]))
        assert labelled["label"].numpy()[0].decode() in ("neg", "pos")
    elif task == "question_answering":
        answer = served(question=tf.constant(["who?"]), context=tf.constant(["the quick fox"]))
        assert answer["answer"].numpy()[0].decode() in "the quick fox"
    else:
        tagged = served(text=tf.constant(["the quick fox"]))
        assert int(tagged["num_words"][0]) == 3


def test_checkpoint_formats_refuse_a_model_beyond_bert(tmp_path):
    """Pre-norm, RMSNorm, gated or bias-free encoders (BertConfig's options beyond BERT) are
    bert_tf's own: the checkpoint formats hold BERT only, and conversion says so."""
    config = BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=40, max_position_embeddings=32)
    write_tf1_checkpoint(tmp_path / "bert_model.ckpt", google_tf1_arrays(config),
                         with_optimizer=False)
    write_vocab(list(SPECIAL_TOKENS) + [f"w{i}" for i in range(55)], tmp_path / "vocab.txt")
    (tmp_path / "bert_config.json").write_text(json.dumps({**config.to_dict(),
                                                           "layer_norm": "pre"}))
    with pytest.raises(ValueError, match="not google's BERT .layer_norm='pre'"):
        convert("google_tf1", str(tmp_path), "huggingface", str(tmp_path / "out"),
                log=lambda _: None)
    assert not (tmp_path / "out").exists()
