"""SavedModel exports: signatures, equality with the Keras model in a TF-only process, layout."""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from bert_tf import export
from bert_tf import run_dir as run_files
from bert_tf.config import BertConfig
from bert_tf.data.sample_corpus import write_corpus
from bert_tf.export.text_model import FILL_MASK_SLOTS, FILL_MASK_TOP_K
from bert_tf.modeling import build_pretrainer
from bert_tf.text.tokenization import WordpieceTokenizer, write_vocab
from bert_tf.text.vocab_learning import learn_vocab

SEQ = 24
TEXTS = ["The quick brown fox.", "", "Héllo wörld, café naïve 中文 😀 emoji",
         "a very long text " * 200]


def load_pretrainer(directory=None, **files):
    """(pretrainer, vocab, do_lower_case) of a run, as the export command loads them."""
    resolved = run_files.resolve(directory=directory, **files)
    pretrainer, vocab = run_files.load_pretrainer(resolved, flag="--checkpoint")
    return pretrainer, vocab, resolved.do_lower_case


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory as run_pretraining leaves it: config, vocab, run_config, checkpoint."""
    directory = tmp_path_factory.mktemp("run")
    corpus = directory / "corpus.txt"
    write_corpus(str(corpus))
    write_vocab(learn_vocab(str(corpus), vocab_size=2000), directory / "vocab.txt")
    config = BertConfig(vocab_size=2000, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)
    config.to_json_file(directory / "bert_config.json")
    (directory / "run_config.json").write_text(json.dumps({"do_lower_case": True}))
    keras.utils.set_random_seed(3)
    pretrainer = build_pretrainer(config)
    tf.train.Checkpoint(model=pretrainer).write(str(directory / "ckpt-7"))
    with open(directory / "checkpoint", "w") as f:
        f.write('model_checkpoint_path: "ckpt-7"\n')
    return directory


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    pretrainer, vocab, lower = load_pretrainer(str(run_dir))
    export_dir = tmp_path_factory.mktemp("exports")
    paths = export.export_all(pretrainer, vocab, lower, SEQ, str(export_dir))
    return {"paths": paths, "pretrainer": pretrainer, "vocab": vocab, "dir": export_dir}


TF_ONLY_SCRIPT = """
import json, sys
import numpy as np
import tensorflow as tf
import tensorflow_text  # registers the ops; nothing from bert_tf
paths, texts, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
assert "bert_tf" not in sys.modules
results = {}
pre = tf.saved_model.load(paths["bert_preprocessor"])
inputs = pre.signatures["serving_default"](text=tf.constant(texts))
for k, v in inputs.items(): results["pre_" + k] = v.numpy()
pair = pre.signatures["pair"](text=tf.constant(texts), text_b=tf.constant(texts[::-1]))
for k, v in pair.items(): results["pair_" + k] = v.numpy()
enc = tf.saved_model.load(paths["bert_encoder"])
for k, v in enc.signatures["serving_default"](**inputs).items(): results["enc_" + k] = v.numpy()
text = tf.saved_model.load(paths["bert"])
for k, v in text.signatures["serving_default"](text=tf.constant(texts)).items():
    results["text_" + k] = v.numpy()
fill = text.signatures["fill_mask"](text=tf.constant(["the [MASK] is [MASK] .", "no masks"]))
for k, v in fill.items(): results["fill_" + k] = v.numpy()
np.savez(out, **results)
"""


def test_exports_agree_with_keras_in_a_tensorflow_only_process(exported, tmp_path):
    out = tmp_path / "results.npz"
    result = subprocess.run(
        [sys.executable, "-c", TF_ONLY_SCRIPT, json.dumps(exported["paths"]),
         json.dumps(TEXTS), str(out)], cwd=str(tmp_path), capture_output=True, text=True,
        timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    r = dict(np.load(out, allow_pickle=True))
    vocab, pretrainer = exported["vocab"], exported["pretrainer"]

    # The preprocessor gives the data pipeline tokenizer's ids, laid out and truncated.
    tokenizer = WordpieceTokenizer(vocab, do_lower_case=True)
    for row, text in enumerate(TEXTS):
        ids = tokenizer.tokenize(tf.constant([text])).to_list()[0][:SEQ - 2]
        expected = [vocab.cls_id] + ids + [vocab.sep_id]
        assert r["pre_input_word_ids"][row].tolist() == expected + [0] * (SEQ - len(expected))
        assert r["pre_input_mask"][row].sum() == len(expected)
    assert r["pre_input_word_ids"].shape == (len(TEXTS), SEQ)
    assert (r["pair_input_type_ids"].max(1) == 1).all()
    assert r["pair_input_mask"][3].sum() == SEQ  # the long pair is trimmed to fit

    inputs = {k.removeprefix("pre_"): v for k, v in r.items() if k.startswith("pre_")}
    expected = pretrainer.encoder(inputs, training=False)
    np.testing.assert_allclose(r["enc_pooled_output"], expected["pooled_output"], atol=1e-5)
    np.testing.assert_allclose(r["enc_sequence_output"], expected["sequence_output"], atol=1e-5)
    np.testing.assert_allclose(r["enc_encoder_outputs_0"], expected["encoder_outputs"][0],
                               atol=1e-5)
    np.testing.assert_allclose(r["text_pooled_output"], expected["pooled_output"], atol=1e-5)
    mask = inputs["input_mask"][:, :, None].astype("float32")
    mean = (np.array(expected["sequence_output"]) * mask).sum(1) / mask.sum(1)
    np.testing.assert_allclose(r["text_sentence_embedding"],
                               mean / np.linalg.norm(mean, axis=1, keepdims=True), atol=1e-5)

    assert r["fill_mask_positions"][0, :2].tolist() == [2, 4]
    assert (r["fill_mask_positions"][0, 2:] == -1).all() and (r["fill_mask_positions"][1] == -1).all()
    assert r["fill_top_tokens"].shape == (2, FILL_MASK_SLOTS, FILL_MASK_TOP_K)
    scores = r["fill_top_scores"][0, 0]
    assert (np.diff(scores) <= 0).all() and 0 < scores[0] <= 1


def test_tf_serving_layout_and_versions(exported, run_dir):
    for name, path in exported["paths"].items():
        assert path == os.path.join(str(exported["dir"]), name, "1")
        assert os.path.exists(os.path.join(path, "saved_model.pb"))
    assert os.path.exists(os.path.join(exported["paths"]["bert_preprocessor"], "assets",
                                       "vocab.txt"))
    pretrainer, vocab, lower = load_pretrainer(str(run_dir))
    again = export.export_all(pretrainer, vocab, lower, SEQ, str(exported["dir"]))
    assert all(p.endswith(os.sep + "2") for p in again.values())
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        export.export_all(pretrainer, vocab, lower, SEQ, str(exported["dir"]), version=1)
    leftovers = [d for name in exported["paths"]
                 for d in os.listdir(os.path.join(str(exported["dir"]), name)) if "tmp" in d]
    assert not leftovers


def test_edge_inputs_and_batches(exported):
    model = tf.saved_model.load(exported["paths"]["bert"])
    serve = model.signatures["serving_default"]
    for batch in (1, 64):
        texts = (TEXTS * 16)[:batch]
        out = serve(text=tf.constant(texts))
        assert out["sentence_embedding"].shape == (batch, 32)
        assert np.isfinite(out["sentence_embedding"].numpy()).all()
        np.testing.assert_allclose(np.linalg.norm(out["sentence_embedding"], axis=1), 1,
                                   atol=1e-5)
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)):
        serve(text=tf.constant([1, 2]))


def mismatch_error(first, second, a, b):
    return (rf"inputs {first} and {second} must hold the same number of texts; got\W+{a}\W+and"
            rf"\W+{b}\W")


def test_pair_signatures_refuse_batches_of_different_sizes(exported):
    """A pair with 2 texts and 1 text_b once read out of bounds (garbage ids that changed from
    call to call, or an aborted process): now a clean error naming both inputs, in the graph."""
    for name in ("bert_preprocessor", "bert"):
        pair = tf.saved_model.load(exported["paths"][name]).signatures["pair"]
        for a, b in ((["hello world", "the cat sat"], ["ok"]), (["x"], ["a", "b", "c"]),
                     ([], ["a"])):
            with pytest.raises(tf.errors.InvalidArgumentError,
                               match=mismatch_error("text", "text_b", len(a), len(b))):
                pair(text=tf.constant(a, tf.string), text_b=tf.constant(b, tf.string))
        ok = pair(text=tf.constant(["hello world"]), text_b=tf.constant(["the cat"]))
        assert all(np.isfinite(v.numpy()).all() for v in ok.values())


def test_rest_payloads_through_the_signature(exported):
    """Row and column REST bodies (the two forms TF Serving decodes) give the same result."""
    model = tf.saved_model.load(exported["paths"]["bert"])
    row = json.loads('{"instances": [{"text": "hello world"}, {"text": "the [MASK] sat"}]}')
    columns = json.loads('{"inputs": {"text": ["hello world", "the [MASK] sat"]}}')
    by_rows = {k: [i[k] for i in row["instances"]] for k in row["instances"][0]}
    a = model.signatures["serving_default"](**{k: tf.constant(v) for k, v in by_rows.items()})
    b = model.signatures["serving_default"](**{k: tf.constant(v) for k, v in
                                               columns["inputs"].items()})
    np.testing.assert_allclose(a["sentence_embedding"], b["sentence_embedding"])


@pytest.mark.slow
def test_saved_model_cli_show_and_run(exported):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    path = exported["paths"]["bert"]
    show = subprocess.run([cli, "show", "--all", "--dir", path], capture_output=True,
                          text=True, timeout=300)
    assert show.returncode == 0, show.stderr
    for name in ("serving_default", "pair", "fill_mask", "sentence_embedding", "DT_STRING"):
        assert name in show.stdout
    # saved_model_cli itself, with tensorflow-text's ops registered first (as the standard
    # tensorflow/serving build has them); the plain command cannot load tf-text ops.
    with_text_ops = ("import sys, tensorflow_text; "
                     "from tensorflow.python.tools.saved_model_cli import main; "
                     "sys.argv[0] = 'saved_model_cli'; sys.exit(main())")
    run = subprocess.run([sys.executable, "-c", with_text_ops, "run", "--dir", path,
                          "--tag_set", "serve", "--signature_def", "serving_default",
                          "--input_exprs", 'text=["hello world", "the [MASK] sat"]'],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "sentence_embedding" in run.stdout


def test_encoder_export_finetunes(exported):
    encoder = tf.saved_model.load(exported["paths"]["bert_encoder"])
    preprocessor = tf.saved_model.load(exported["paths"]["bert_preprocessor"])
    inputs = preprocessor.signatures["serving_default"](text=tf.constant(["fine tuning"]))
    with tf.GradientTape() as tape:
        outputs = encoder(inputs, training=True)
        loss = tf.reduce_sum(outputs["pooled_output"] ** 2)
    gradients = tape.gradient(loss, encoder.trainable_variables)
    assert len(gradients) == len(encoder.trainable_variables) > 10
    assert all(g is not None for g in gradients)
    layer = keras.layers.TFSMLayer(exported["paths"]["bert_encoder"],
                                   call_endpoint="serve", trainable=True)
    assert layer(dict(inputs))["pooled_output"].shape == (1, 32)
    assert len(layer.trainable_weights) == len(encoder.trainable_variables)


def test_bad_inputs(run_dir, tmp_path):
    config = json.loads((run_dir / "bert_config.json").read_text())
    config["intermediate_size"] = 48
    (tmp_path / "bert_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="intermediate"):
        load_pretrainer(checkpoint=str(run_dir / "ckpt-7"),
                               bert_config_file=str(tmp_path / "bert_config.json"),
                               vocab_file=str(run_dir / "vocab.txt"), do_lower_case=True)
    with pytest.raises(ValueError, match=r"nope\.txt: vocab file not found"):
        load_pretrainer(str(run_dir), vocab_file=str(tmp_path / "nope.txt"))
    # a run whose checkpoint lost its .data file but kept its .index
    broken = tmp_path / "broken_run"
    shutil.copytree(run_dir, broken)
    for data_file in broken.glob("ckpt-7.data-*"):
        data_file.unlink()
    with pytest.raises(ValueError, match=r"ckpt-7: the checkpoint is incomplete \(its \.index "
                                         r"is there, its \.data file is not\)"):
        load_pretrainer(str(broken))


def test_encoder_export_rebuilds_as_keras(exported):
    encoder, lower = export.load_encoder_export(exported["paths"]["bert_encoder"])
    assert lower is True and encoder.config == exported["pretrainer"].config
    ids = np.array([[2, 40, 41, 3, 0]], "int32")
    inputs = {"input_word_ids": ids, "input_mask": (ids > 0).astype("int32"),
              "input_type_ids": np.zeros_like(ids)}
    np.testing.assert_allclose(encoder(inputs)["sequence_output"],
                               exported["pretrainer"].encoder(inputs)["sequence_output"],
                               atol=1e-6)


def test_versions_below_1_are_refused(tmp_path):
    """TF Serving loads versions 1 and up: 0 and -1 are errors, never another number."""
    from bert_tf.export.__main__ import ExportConfig
    from bert_tf.export.serving import save_version
    for version in (0, -1):
        with pytest.raises(ValueError, match=f"--version must be at least 1, got {version}"):
            ExportConfig(output_dir="run", export_dir="out", version=version)
        with pytest.raises(ValueError, match=f"--version={version}: TF Serving loads versions 1"):
            save_version(tf.Module(), {}, str(tmp_path / "model"), version)
    assert not (tmp_path / "model").exists() or not [
        p for p in os.listdir(tmp_path / "model") if not p.startswith(".")]


def test_preprocessor_tokenize_and_bert_pack_inputs_match_the_model_garden(exported):
    """TF Hub's preprocessor API on the export: `tokenize`, then `bert_pack_inputs` of 1 to 3
    segments at any length, gives what the Model Garden's BertPackInputs gives on the same
    tokens; at max_seq_length it is what `serving_default` and `pair` give."""
    from official.nlp.modeling.layers import BertPackInputs

    vocab = exported["vocab"]
    loaded = tf.saved_model.load(exported["paths"]["bert_preprocessor"])
    texts = [tf.constant(t) for t in (
        ["the cat sat on the mat and then it ran away", "a", ""],
        ["Python's documentation is long and detailed", "b c d e f g h", "x"],
        ["a third segment", "", "with several words in it"])]
    tokens = [loaded.tokenize(t) for t in texts]
    assert isinstance(tokens[0], tf.RaggedTensor) and tokens[0].dtype == tf.int32
    for count in (1, 2, 3):
        for seq_length in (8, 16, 40):
            ours = loaded.bert_pack_inputs(tokens[:count], seq_length=seq_length)
            theirs = BertPackInputs.bert_pack_inputs(
                tokens[:count], seq_length, start_of_sequence_id=vocab.cls_id,
                end_of_segment_id=vocab.sep_id, padding_id=vocab.pad_id)
            for name in ("input_word_ids", "input_mask", "input_type_ids"):
                assert ours[name].dtype == tf.int32 and ours[name].shape == (3, seq_length)
                np.testing.assert_array_equal(ours[name], theirs[name], err_msg=(count, name))
    pieces = tokens[0].flat_values  # TF Hub's word-split form: [batch, (words), (pieces)]
    words = tokens[0].with_flat_values(tf.RaggedTensor.from_row_lengths(
        pieces, tf.ones_like(pieces, tf.int64)))
    np.testing.assert_array_equal(loaded.bert_pack_inputs([words], seq_length=16)["input_word_ids"],
                                  loaded.bert_pack_inputs([tokens[0]], 16)["input_word_ids"])
    single = loaded.signatures["serving_default"](text=texts[0])
    pair = loaded.signatures["pair"](text=texts[0], text_b=texts[1])
    for expected, count in ((single, 1), (pair, 2)):
        packed = loaded.bert_pack_inputs(tokens[:count], seq_length=SEQ)
        for name in packed:
            np.testing.assert_array_equal(packed[name], expected[name])
    with pytest.raises(Exception, match="same number of texts"):
        loaded.bert_pack_inputs([tokens[0], tokens[1][:2]], seq_length=16)
