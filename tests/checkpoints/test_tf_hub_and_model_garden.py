"""TF Hub BERT SavedModels and Model Garden TF2 checkpoints in, against the Model Garden itself.

The sources are made here with tf-models-official: Model Garden BERTs of a small BERT's shape
(L-2_H-128_A-2) with every weight random (biases and LayerNorm too, so a misplaced tensor
shows), saved as the Model Garden saves them (`checkpoint_items` as its released checkpoints;
model + optimizer + global_step as its trainer) and exported with its own TF Hub export
(`export_tfhub_lib.export_model`) as "encoder" and "encoder with MLM". The TF1 Hub layout is a
graph-mode SavedModel with hub.Module's `tokens` and `mlm` signatures over variables under
google's names, its graph google-research/bert's modeling.py written out in `tf.compat.v1` ops.
Every output is compared in float32 within 1e-5.
"""

import json
import math
import os
import re

import numpy as np
import pytest
import tensorflow as tf
import yaml

from bert_tf import run_dir as run_files
from bert_tf.checkpoints.convert import Given, convert
from bert_tf.config import BertConfig
from bert_tf.export.runs import export_run
from bert_tf.text.tokenization import SPECIAL_TOKENS, write_vocab
from conftest import random_inputs

VOCAB = list(SPECIAL_TOKENS) + ["the", "quick", "brown", "fox", "##s", "jump", "over", "lazy",
                                "dog", ",", ".", "a", "b", "c", "##a", "##b"]
SMALL_BERT = dict(vocab_size=len(VOCAB), hidden_size=128, num_hidden_layers=2,
                  num_attention_heads=2, intermediate_size=512, max_position_embeddings=128,
                  type_vocab_size=2)
CONFIG = BertConfig(**SMALL_BERT, hidden_act="gelu_new")
ATOL = 1e-5
POSITIONS = np.array([[1, 7, 11], [0, 5, 9], [2, 4, 0]], np.int32)


def legacy_config():
    from official.legacy.bert import configs

    return configs.BertConfig(**SMALL_BERT, hidden_act="gelu")


def randomize(model, seed):
    """Every weight random at BERT's initial scale (0.02); biases too, LayerNorm scales near 1."""
    rng = np.random.default_rng(seed)
    for variable in model.variables:
        value = rng.normal(0, 0.02, variable.shape)
        if "gamma" in variable.name:
            value = 1 + 10 * value
        variable.assign(value.astype(np.float32))


def inputs(seed=3):
    return random_inputs(CONFIG, batch=3, seq_length=12, lengths=[12, 9, 2], seed=seed)


def source_outputs(model, feed):
    got = model({k: tf.constant(v) for k, v in feed.items()}, training=False)
    return {k: (np.asarray(v) if not isinstance(v, list) else [np.asarray(x) for x in v])
            for k, v in got.items()}


def model_garden_pretrainer(seed):
    from official.modeling import tf_utils
    from official.nlp.modeling import layers, models
    from official.nlp.tools import export_tfhub_lib

    encoder = export_tfhub_lib.get_bert_encoder(legacy_config())
    pretrainer = models.BertPretrainerV2(
        encoder_network=encoder, mlm_activation=tf_utils.get_activation("gelu"),
        classification_heads=[layers.ClassificationHead(inner_dim=128, num_classes=2,
                                                        name="next_sentence")])
    source_outputs(pretrainer, {**inputs(), "masked_lm_positions": POSITIONS})  # builds it
    randomize(pretrainer, seed)
    return pretrainer


def model_garden_classifier(seed):
    """BertClassifier over the encoder an experiment's `task.model.encoder` builds."""
    from official.nlp.configs import encoders
    from official.nlp.modeling import models

    encoder = encoders.build_encoder(encoders.EncoderConfig(
        type="bert", bert=encoders.BertEncoderConfig(**ENCODER_SETTINGS)))
    classifier = models.BertClassifier(encoder, num_classes=3)
    classifier({k: tf.constant(v) for k, v in inputs().items()})
    randomize(classifier, seed)
    return classifier


ENCODER_SETTINGS = {
    "vocab_size": len(VOCAB), "hidden_size": 128, "num_layers": 2, "num_attention_heads": 2,
    "intermediate_size": 512, "hidden_activation": "gelu", "dropout_rate": 0.1,
    "attention_dropout_rate": 0.1, "max_position_embeddings": 128, "type_vocab_size": 2,
    "initializer_range": 0.02, "embedding_size": None, "output_range": None,
    "norm_first": False, "return_all_encoder_outputs": False}


def write_experiment(path, **model):
    """An experiment's params.yaml as the Model Garden's train.py writes it into model_dir
    (the keys read: task.model.encoder, mlm_activation)."""
    path.write_text(yaml.safe_dump({
        "task": {"init_checkpoint": "", "model": {
            "encoder": {"type": "bert", "bert": ENCODER_SETTINGS}, **model}},
        "trainer": {"train_steps": 10, "steps_per_loop": 5}}))


# === TF1 Hub layout ===

def write_tf1_hub_module(directory, arrays, vocab_file):
    """hub.Module's layout as google's TF1 BERT modules have it: `tokens` and `mlm`
    signatures, variables under google's names, assets/vocab.txt. The graph: google-research/
    bert's modeling.py (post-LN, tanh-approximate gelu, -10000 on padded keys)."""
    v1 = tf.compat.v1
    H, N = CONFIG.hidden_size, CONFIG.num_attention_heads  # noqa: N806
    d = H // N
    with tf.Graph().as_default():
        w = {name: v1.get_variable(name, initializer=tf.constant(value))
             for name, value in arrays.items()}
        ids = v1.placeholder(tf.int32, [None, None], "input_ids")
        mask = v1.placeholder(tf.int32, [None, None], "input_mask")
        segments = v1.placeholder(tf.int32, [None, None], "segment_ids")
        positions = v1.placeholder(tf.int32, [None, None], "mlm_positions")
        batch, length = tf.shape(ids)[0], tf.shape(ids)[1]

        def norm(x, prefix):
            mean, variance = tf.nn.moments(x, [-1], keepdims=True)
            return ((x - mean) * tf.math.rsqrt(variance + 1e-12) * w[prefix + "/gamma"]
                    + w[prefix + "/beta"])

        def dense(x, prefix):
            return tf.einsum("...i,ij->...j", x, w[prefix + "/kernel"]) + w[prefix + "/bias"]

        def gelu(x):
            return 0.5 * x * (1 + tf.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))

        def split(x):
            return tf.transpose(tf.reshape(x, [batch, length, N, d]), [0, 2, 1, 3])

        x = (tf.gather(w["bert/embeddings/word_embeddings"], ids)
             + tf.gather(w["bert/embeddings/token_type_embeddings"], segments)
             + w["bert/embeddings/position_embeddings"][None, :length])
        x = norm(x, "bert/embeddings/LayerNorm")
        adder = (1.0 - tf.cast(mask[:, None, None, :], tf.float32)) * -10000.0
        for i in range(CONFIG.num_hidden_layers):
            p = f"bert/encoder/layer_{i}"
            q, k, v = (split(dense(x, f"{p}/attention/self/{n}"))
                       for n in ("query", "key", "value"))
            probs = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) / math.sqrt(d) + adder)
            context = tf.reshape(tf.transpose(tf.matmul(probs, v), [0, 2, 1, 3]),
                                 [batch, length, H])
            x = norm(dense(context, f"{p}/attention/output/dense") + x,
                     f"{p}/attention/output/LayerNorm")
            x = norm(dense(gelu(dense(x, f"{p}/intermediate/dense")), f"{p}/output/dense") + x,
                     f"{p}/output/LayerNorm")
        pooled = tf.tanh(dense(x[:, 0], "bert/pooler/dense"))
        picked = tf.gather(x, positions, batch_dims=1)
        transformed = norm(gelu(dense(picked, "cls/predictions/transform/dense")),
                           "cls/predictions/transform/LayerNorm")
        mlm_logits = (tf.matmul(transformed, w["bert/embeddings/word_embeddings"],
                                transpose_b=True) + w["cls/predictions/output_bias"])
        signature = v1.saved_model.signature_def_utils.predict_signature_def
        tokens = {"input_ids": ids, "input_mask": mask, "segment_ids": segments}
        with v1.Session() as session:
            session.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(directory))
            builder.add_meta_graph_and_variables(session, [], signature_def_map={
                "tokens": signature(tokens, {"pooled_output": pooled, "sequence_output": x}),
                "mlm": signature({**tokens, "mlm_positions": positions},
                                 {"pooled_output": pooled, "sequence_output": x,
                                  "mlm_logits": mlm_logits})})
            builder.save()
    tf.io.gfile.makedirs(str(directory / "assets"))
    tf.io.gfile.copy(str(vocab_file), str(directory / "assets" / "vocab.txt"))


# === Sources, conversions and references, made once ===

@pytest.fixture(scope="module")
def work(tmp_path_factory):
    from official.nlp.tools import export_tfhub_lib
    import tf_keras

    tmp = tmp_path_factory.mktemp("mg")
    write_vocab(VOCAB, tmp / "vocab.txt")
    feed = inputs()

    # BertPretrainerV2: a released checkpoint (checkpoint_items, bert_config.json, vocab.txt)
    # and a pretraining run's model_dir (model, optimizer, global_step; params.yaml)
    pretrainer = model_garden_pretrainer(seed=0)
    released = tmp / "released"
    items = tf.train.Checkpoint(**pretrainer.checkpoint_items)
    items.save_counter  # noqa: B018  created on first access; the TF Hub export restores it
    prefix = items.write(str(released / "bert_model.ckpt"))
    (released / "bert_config.json").write_text(legacy_config().to_json_string())
    write_vocab(VOCAB, released / "vocab.txt")
    trainer = tmp / "trainer"
    optimizer = tf_keras.optimizers.Adam()
    optimizer.build(pretrainer.trainable_variables)
    tf.train.CheckpointManager(
        tf.train.Checkpoint(model=pretrainer, optimizer=optimizer,
                            global_step=tf.Variable(7, dtype=tf.int64)),
        str(trainer), max_to_keep=1).save(checkpoint_number=7)
    write_experiment(trainer / "params.yaml", mlm_activation="gelu", cls_heads=[
        {"activation": "tanh", "inner_dim": 128, "name": "next_sentence", "num_classes": 2}])
    pretrained = source_outputs(pretrainer, {**feed, "masked_lm_positions": POSITIONS})
    encoder_only = tmp / "encoder_only"  # tf.train.Checkpoint(encoder=...), its own pooler
    tf.train.Checkpoint(encoder=pretrainer.encoder_network).write(str(encoder_only / "ckpt"))
    (encoder_only / "bert_config.json").write_text(legacy_config().to_json_string())
    write_vocab(VOCAB, encoder_only / "vocab.txt")
    encoded = source_outputs(pretrainer.encoder_network, feed)

    # TF Hub's two forms and a preprocessor, by the Model Garden's own export
    for form, with_mlm in (("hub_encoder", False), ("hub_mlm", True)):
        export_tfhub_lib.export_model(str(tmp / form), bert_config=legacy_config(),
                                      model_checkpoint_path=prefix, with_mlm=with_mlm,
                                      copy_pooler_dense_to_encoder=True,
                                      vocab_file=str(tmp / "vocab.txt"), do_lower_case=False)
    export_tfhub_lib.export_preprocessing(str(tmp / "preprocessor"),
                                          vocab_file=str(tmp / "vocab.txt"), do_lower_case=True,
                                          tokenize_with_offsets=False, default_seq_length=16)
    hub = tf.saved_model.load(str(tmp / "hub_mlm"))
    hub_out = source_outputs(hub, feed)
    hub_mlm = source_outputs(hub.mlm, {**feed, "masked_lm_positions": POSITIONS})

    # A finetuned BertClassifier in a bert/sentence_prediction model_dir
    classifier = model_garden_classifier(seed=1)
    finetuned = tmp / "finetuned"
    tf.train.CheckpointManager(tf.train.Checkpoint(model=classifier), str(finetuned),
                               max_to_keep=1).save(checkpoint_number=3)
    write_experiment(finetuned / "params.yaml", num_classes=3)
    classified = np.asarray(classifier({k: tf.constant(v) for k, v in feed.items()},
                                       training=False))

    # TF1 Hub layout from google-named arrays
    from test_checkpoints import google_tf1_arrays
    arrays = google_tf1_arrays(CONFIG, seed=5)
    write_tf1_hub_module(tmp / "hub_tf1", arrays, tmp / "vocab.txt")
    tf1 = tf.saved_model.load(str(tmp / "hub_tf1"), tags=[])
    tf1_tokens = tf1.signatures["tokens"](input_ids=tf.constant(feed["input_word_ids"]),
                                          input_mask=tf.constant(feed["input_mask"]),
                                          segment_ids=tf.constant(feed["input_type_ids"]))
    tf1_mlm = tf1.signatures["mlm"](input_ids=tf.constant(feed["input_word_ids"]),
                                    input_mask=tf.constant(feed["input_mask"]),
                                    segment_ids=tf.constant(feed["input_type_ids"]),
                                    mlm_positions=tf.constant(POSITIONS))

    logs, reports = [], {}
    vocab = Given(vocab_file=str(tmp / "vocab.txt"))
    for name, fmt, source, given in (
            ("from_hub_encoder", "tf_hub", tmp / "hub_encoder", Given()),
            ("from_hub_mlm", "tf_hub", tmp / "hub_mlm", Given()),
            ("from_hub_preprocessor", "tf_hub", tmp / "hub_mlm",
             Given(vocab_file=str(tmp / "preprocessor"))),
            ("from_hub_tf1", "tf_hub", tmp / "hub_tf1", Given()),
            ("from_released", "tf_models", released / "bert_model.ckpt", Given()),
            ("from_encoder_only", "tf_models", encoder_only / "ckpt", Given()),
            ("from_trainer", "tf_models", trainer, vocab),
            ("from_finetuned", "tf_models", finetuned, vocab)):
        reports[name] = convert(fmt, str(source), "bert_tf", str(tmp / name), given=given,
                                log=logs.append)
    return {"tmp": tmp, "feed": feed, "pretrained": pretrained, "encoded": encoded, "hub": hub_out,
            "hub_mlm": hub_mlm, "classified": classified, "reports": reports, "logs": logs,
            "tf1": {k: v.numpy() for k, v in {**tf1_tokens, **tf1_mlm}.items()}}


def ours(work, name, positions=True):
    """Our converted model's outputs: encoder, and the pretraining heads."""
    files = run_files.resolve(directory=str(work["tmp"] / name))
    pretrainer, _ = run_files.load_pretrainer(files)
    feed = work["feed"]
    encoded = pretrainer.encoder(feed, training=False)
    got = {k: np.asarray(v) for k, v in encoded.items() if k != "encoder_outputs"}
    got["encoder_outputs"] = [np.asarray(v) for v in encoded["encoder_outputs"]]
    heads = pretrainer({**feed, "masked_lm_positions": POSITIONS}, training=False)
    got.update({k: np.asarray(v) for k, v in heads.items() if "logits" in k})
    return got


def close(got, expected, name):
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0, err_msg=name)
    assert np.abs(expected).max() > 1000 * ATOL, name  # not a trivially small comparison


# === TF Hub ===

def test_tf_hub_encoder_export_converts_with_every_output_equal(work):
    got = ours(work, "from_hub_encoder")
    for name in ("sequence_output", "pooled_output"):
        close(got[name], work["hub"][name], name)
    assert len(got["encoder_outputs"]) == len(work["hub"]["encoder_outputs"]) == 2
    for i, (a, b) in enumerate(zip(got["encoder_outputs"], work["hub"]["encoder_outputs"])):
        close(a, b, f"encoder_outputs[{i}]")
    report = work["reports"]["from_hub_encoder"]
    assert report["freshly_initialized"] == ["masked-LM head", "next-sentence head"]
    assert report["do_lower_case"] is False  # the SavedModel's do_lower_case variable


def test_tf_hub_export_with_mlm_converts_its_head(work):
    got = ours(work, "from_hub_mlm")
    close(got["masked_lm_logits"], work["hub_mlm"]["mlm_logits"], "mlm_logits")
    close(got["sequence_output"], work["hub_mlm"]["sequence_output"], "sequence_output")
    assert work["reports"]["from_hub_mlm"]["freshly_initialized"] == ["next-sentence head"]


def test_the_companion_preprocessor_gives_vocab_and_lower_casing(work):
    report = work["reports"]["from_hub_preprocessor"]
    assert report["do_lower_case"] is True  # the preprocessor's, not the encoder's False
    got = ours(work, "from_hub_preprocessor")
    close(got["pooled_output"], work["hub"]["pooled_output"], "pooled_output")


def test_tf1_hub_module_converts_with_every_output_equal(work):
    got, tf1 = ours(work, "from_hub_tf1"), work["tf1"]
    for name in ("sequence_output", "pooled_output"):
        close(got[name], tf1[name], name)
    close(got["masked_lm_logits"], tf1["mlm_logits"], "mlm_logits")
    notes = " ".join(work["reports"]["from_hub_tf1"]["notes"])
    assert "num_attention_heads=2 taken as hidden_size / 64" in notes


def test_converted_hub_model_exports_back_to_tf_hub_signatures(work, tmp_path):
    files = run_files.resolve(directory=str(work["tmp"] / "from_hub_mlm"))
    paths = export_run(files, str(tmp_path), max_seq_length=12)
    exported = tf.saved_model.load(paths["bert_encoder"])
    feed = {k: tf.constant(v) for k, v in work["feed"].items()}
    served = exported.signatures["serving_default"](**feed)
    for name in ("sequence_output", "pooled_output"):
        close(served[name].numpy(), work["hub"][name], name)
    called = exported(feed)  # TF Hub's reusable SavedModel API: `training` optional
    close(np.asarray(called["pooled_output"]), work["hub"]["pooled_output"], "called")


# === Model Garden checkpoints ===

def test_model_garden_pretrainer_checkpoint_converts_with_its_heads(work):
    got, expected = ours(work, "from_trainer"), work["pretrained"]
    close(got["sequence_output"], expected["sequence_output"], "sequence_output")
    close(got["masked_lm_logits"], expected["mlm_logits"], "mlm_logits")
    close(got["next_sentence_logits"], expected["next_sentence"], "next_sentence")
    report = work["reports"]["from_trainer"]
    assert report["freshly_initialized"] == []
    # the encoder's untrained pooler_transform gives way to the next-sentence head's dense
    assert any("pooler_transform" in n for n in report["notes"])
    assert sorted(report["skipped_examples"]) == ["pooler_transform/bias",
                                                  "pooler_transform/kernel"]


def test_model_garden_encoder_checkpoint_converts_with_its_own_pooler(work):
    got, expected = ours(work, "from_encoder_only"), work["encoded"]
    for name in ("sequence_output", "pooled_output"):
        close(got[name], expected[name], name)
    assert work["reports"]["from_encoder_only"]["freshly_initialized"] == [
        "masked-LM head", "next-sentence head"]


def test_model_garden_released_checkpoint_pools_as_its_tf_hub_export(work):
    """checkpoint_items keep the head's pooler but not its output layer."""
    got = ours(work, "from_released")
    close(got["pooled_output"], work["hub"]["pooled_output"], "pooled_output")
    close(got["masked_lm_logits"], work["pretrained"]["mlm_logits"], "mlm_logits")
    assert work["reports"]["from_released"]["freshly_initialized"] == ["next-sentence head"]


def test_model_garden_classifier_converts_with_params_yaml(work):
    files = run_files.resolve(directory=str(work["tmp"] / "from_finetuned"))
    model, _ = run_files.load_model(files)
    close(np.asarray(model(work["feed"], training=False)), work["classified"], "logits")
    assert files.record["labels"] == ["LABEL_0", "LABEL_1", "LABEL_2"]
    assert work["reports"]["from_finetuned"]["task"] == "classification"


# === What bert_tf does not have is refused, named ===

def expect_refusal(match, *args, **kwargs):
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        convert(*args, log=lambda _: None, **kwargs)


def test_sources_bert_tf_cannot_hold_are_refused_by_name(work, tmp_path):
    tmp = work["tmp"]
    # a pre-LN experiment
    values = yaml.safe_load((tmp / "finetuned" / "params.yaml").read_text())
    values["task"]["model"]["encoder"]["bert"]["norm_first"] = True
    (tmp_path / "pre_ln.yaml").write_text(yaml.safe_dump(values))
    expect_refusal(r"norm_first=True is not supported", "tf_models", str(tmp / "finetuned"),
                   "bert_tf", str(tmp_path / "a"),
                   given=Given(bert_config_file=str(tmp_path / "pre_ln.yaml")))
    # another encoder type
    values["task"]["model"]["encoder"] = {"type": "albert", "albert": {}}
    (tmp_path / "albert.yaml").write_text(yaml.safe_dump(values))
    expect_refusal(r"encoder.type='albert'", "tf_models", str(tmp / "finetuned"), "bert_tf",
                   str(tmp_path / "b"), given=Given(bert_config_file=str(tmp_path / "albert.yaml")))
    # an activation bert_tf does not have
    config = json.loads((tmp / "released" / "bert_config.json").read_text())
    (tmp_path / "swish.json").write_text(json.dumps({**config, "hidden_act": "swish"}))
    expect_refusal(r"activation 'swish'", "tf_models", str(tmp / "released"), "bert_tf",
                   str(tmp_path / "c"), given=Given(bert_config_file=str(tmp_path / "swish.json")))
    # a head bert_tf does not have: a variable outside the map, named
    from official.nlp.modeling import models
    from official.nlp.modeling.networks import bert_encoder
    encoder = bert_encoder.BertEncoder(vocab_size=len(VOCAB), hidden_size=128, num_layers=1,
                                       num_attention_heads=2, inner_dim=64,
                                       max_sequence_length=128)
    span = models.BertSpanLabeler(encoder)
    span({k: tf.constant(v) for k, v in inputs().items()})
    tf.train.Checkpoint(model=span).save(str(tmp_path / "span" / "ckpt"))
    write_vocab(VOCAB, tmp_path / "span" / "vocab.txt")
    expect_refusal(r"variable predictions/transform/logits/\w+ .* is not part of", "tf_models",
                   str(tmp_path / "span"), "bert_tf", str(tmp_path / "d"),
                   given=Given(bert_config_file=str(tmp / "released" / "bert_config.json")))
    # a google TF1 checkpoint given as tf_models, and a directory that is no SavedModel
    expect_refusal(r"not a SavedModel directory", "tf_hub", str(tmp / "released"), "bert_tf",
                   str(tmp_path / "e"))
    assert not any(os.path.exists(tmp_path / d) for d in "abcde")  # nothing written


# === The pages' commands, as written ===

# the directory names the pages use -> the stand-ins made above
PAGE_INPUTS = {"bert_en_uncased_L-12_H-768_A-12_4": "hub_mlm",
               "bert_en_uncased_preprocess_3": "preprocessor",
               "bert_uncased_L-12_H-768_A-12_1": "hub_tf1",
               "model_dir": "trainer", "uncased_L-12_H-768_A-12_tf2": "released",
               "sst2_model_dir": "finetuned", "vocab.txt": "vocab.txt"}


RUN_FROM_PAGES = ("bert_tf.convert_checkpoint", "bert_tf.extract_features")


def page_commands(page):
    """The page's commands of the tools above, from `-m` on."""
    from test_docs import logical_lines, read

    return [line[line.index("-m "):] for _, line in logical_lines(read(page))
            if any(f"python -m {tool} " in line for tool in RUN_FROM_PAGES)]


@pytest.mark.slow
@pytest.mark.parametrize("page,count", [("docs/from-tf-hub.md", 4),
                                        ("docs/from-model-garden.md", 3)])
def test_the_pages_commands_run_as_written(work, page, count, tmp_path):
    import shlex
    import subprocess
    import sys

    from conftest import REPO_ROOT

    for name, target in PAGE_INPUTS.items():
        (tmp_path / name).symlink_to(work["tmp"] / target)
    (tmp_path / "sentences.txt").write_text("the quick brown fox\na lazy dog .\n")
    commands = page_commands(page)
    assert len(commands) == count, commands
    environment = {**os.environ, "PYTHONPATH": REPO_ROOT}
    for command in commands:
        result = subprocess.run([sys.executable, *shlex.split(command)], cwd=tmp_path,
                                env=environment, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
        if "extract_features" in command:
            features = np.load(tmp_path / "features.npz")["features"]
            assert features.shape == (2, 1, CONFIG.hidden_size)
            continue
        output = re.search(r"--output=(\S+)", command).group(1)
        files = run_files.resolve(directory=str(tmp_path / output))
        assert files.record["converted_from"]["format"] in ("tf_hub", "tf_models")


def test_load_encoder_export_of_a_tf_hub_encoder_says_how_to_convert(work):
    from bert_tf.export.encoder import load_encoder_export

    with pytest.raises(ValueError, match="convert_checkpoint --input_format=tf_hub"):
        load_encoder_export(str(work["tmp"] / "hub_encoder"))


def test_a_tf_hub_encoder_serves_as_encoder_saved_model_directly(work):
    """Finetuning and extract_features start from a TF Hub SavedModel as from an export."""
    from bert_tf.finetuning.encoder_source import encoder_source, load_encoder
    from bert_tf.finetuning.job_settings import EncoderSettings

    source = encoder_source(EncoderSettings(encoder_saved_model=str(work["tmp"] / "hub_mlm")))
    assert source.do_lower_case is False and source.vocab_file.endswith("vocab.txt")
    assert source.bert_config.hidden_act == "gelu_new"
    encoder = load_encoder(source)
    got = encoder(work["feed"], training=False)
    for name in ("sequence_output", "pooled_output"):
        close(np.asarray(got[name]), work["hub"][name], name)
    with pytest.raises(ValueError, match="neither a bert_tf encoder export nor a TF Hub BERT"):
        encoder_source(EncoderSettings(encoder_saved_model=str(work["tmp"] / "preprocessor")))
