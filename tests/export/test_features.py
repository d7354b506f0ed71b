"""extract_features: google's JSON lines and the compact formats agree with the encoder export's
outputs on the same texts (singles and `a ||| b` pairs), every line in order, written whole."""

import json

import numpy as np
import pytest
import tensorflow as tf

from bert_tf import run_dir
from bert_tf.export.features import FeatureOptions, extract, parse_layers
from bert_tf.extract_features import FeatureConfig, run
from bert_tf.text.preprocessing import Preprocessor
from bert_tf.text.tokenization import CaseMismatch
from classification_fixtures import make_workspace

LINES = ["the cat sat on the mat .", "the dog ran ||| a big tree with a red house",
         "", "very good " * 20, "a ||| b", "Tree Is Big ."]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A run directory, its encoder export, and a text file of LINES."""
    from bert_tf.export.encoder import EncoderExport
    from bert_tf.export.serving import save_version

    root = tmp_path_factory.mktemp("features")
    workspace = make_workspace(root)
    files = run_dir.resolve(str(workspace / "pretrain" / "ckpt-1"))
    pretrainer, vocab = run_dir.load_pretrainer(files)
    module = EncoderExport(pretrainer.encoder, vocab, True)  # the encoder export alone
    export = save_version(module, {"serving_default": module.serve},
                          str(root / "exports" / "bert_encoder"), 1)
    text = root / "input.txt"
    text.write_text("\n".join(LINES) + "\n")
    return workspace / "pretrain" / "ckpt-1", export, text, vocab, root


def expected_outputs(export, vocab, lines, max_seq_length=16):
    """The export's serving signature on the lines (pairs through the preprocessor's pair)."""
    preprocessor = Preprocessor(vocab, True, max_seq_length)
    loaded = tf.saved_model.load(export)
    rows = []
    for line in lines:
        if " ||| " in line:
            a, b = line.split(" ||| ")
            inputs = preprocessor.pair(tf.constant([a]), tf.constant([b]))
        else:
            inputs = preprocessor.single(tf.constant([line]))
        outputs = loaded.signatures["serving_default"](**inputs)
        length = int(inputs["input_mask"].numpy().sum())
        rows.append((outputs, length, inputs["input_word_ids"].numpy()[0, :length]))
    return rows


@pytest.mark.parametrize("from_export", [False, True])
def test_json_lines_match_the_encoder_export(source, from_export, tmp_path):
    checkpoint, export, text, vocab, _ = source
    output = tmp_path / "features.jsonl"
    given = (dict(encoder_saved_model=export) if from_export
             else dict(init_checkpoint=str(checkpoint)))
    count = run(FeatureConfig(input_file=str(text), output_file=str(output), layers="-1,-2,0",
                              max_seq_length=16, batch_size=4, **given), log=lambda _: None)
    assert count == len(LINES)
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["linex_index"] for r in records] == list(range(len(LINES)))
    for record, (outputs, length, ids) in zip(records, expected_outputs(export, vocab, LINES)):
        tokens = record["features"]
        assert [t["token"] for t in tokens] == [vocab.tokens[i] for i in ids]
        assert len(tokens) == length
        for j, layer in enumerate((-1, -2, 0)):
            index = {-1: 1, -2: 0, 0: 0}[layer]  # the fixture's encoder has 2 layers
            want = outputs[f"encoder_outputs_{index}"].numpy()[0, :length]
            got = np.array([t["layers"][j]["values"] for t in tokens])
            assert [t["layers"][j]["index"] for t in tokens] == [layer] * length
            np.testing.assert_allclose(got, want, atol=1e-5)


def test_compact_formats_and_pooling_agree_with_the_json(source, tmp_path):
    checkpoint, export, text, vocab, _ = source
    from bert_tf.export.encoder import load_encoder_export

    rows = expected_outputs(export, vocab, LINES)
    encoder, _ = load_encoder_export(export)
    preprocessor = Preprocessor(vocab, True, 16)
    for pooling in ("none", "cls", "mean"):
        npz, records = tmp_path / f"{pooling}.npz", tmp_path / f"{pooling}.tfrecord"
        for output, output_format in ((npz, "npz"), (records, "tfrecord")):
            extract(encoder, preprocessor, str(text), str(output),
                    FeatureOptions([-1], 4, output_format, pooling), log=lambda _: None)
        arrays = np.load(npz)
        assert arrays["layers"].tolist() == [-1]
        examples = [tf.train.Example.FromString(r.numpy())
                    for r in tf.data.TFRecordDataset(str(records))]
        assert len(examples) == len(LINES) == (len(arrays["offsets"]) - 1 if pooling == "none"
                                               else len(arrays["features"]))
        for i, (outputs, length, ids) in enumerate(rows):
            sequence = outputs["encoder_outputs_1"].numpy()[0, :length]  # [T, H]
            want = {"none": sequence, "cls": sequence[0], "mean": sequence.mean(0)}[pooling]
            if pooling == "none":  # every line's tokens one after another
                start, end = arrays["offsets"][i], arrays["offsets"][i + 1]
                assert end - start == length
                got = arrays["features"][start:end, 0]
                assert arrays["input_word_ids"][start:end].tolist() == ids.tolist()
            else:
                got = arrays["features"][i, 0]
            np.testing.assert_allclose(got, want, atol=1e-5)
            feature = examples[i].features.feature
            shape = list(feature["shape"].int64_list.value)
            np.testing.assert_allclose(
                np.array(feature["features"].float_list.value).reshape(shape)[0], want,
                atol=1e-5)
            assert feature["linex_index"].int64_list.value[0] == i
            if pooling == "none":
                assert list(feature["input_word_ids"].int64_list.value) == ids.tolist()


def test_any_path_and_bad_input(source, tmp_path):
    checkpoint, export, text, vocab, _ = source
    from bert_tf.export.encoder import load_encoder_export

    encoder, _ = load_encoder_export(export)
    preprocessor = Preprocessor(vocab, True, 16)
    tf.io.gfile.makedirs("ram://features/in")
    tf.io.gfile.copy(str(text), "ram://features/in/input.txt", overwrite=True)
    for output_format in ("jsonl", "npz", "tfrecord"):
        target = f"ram://features/out.{output_format}"
        assert extract(encoder, preprocessor, "ram://features/in/input.txt", target,
                       FeatureOptions([-1], output_format=output_format, pooling="cls"),
                       log=lambda _: None) == len(LINES)
        assert tf.io.gfile.exists(target)
    assert not [n for n in tf.io.gfile.listdir("ram://features/") if ".tmp-" in n]
    with pytest.raises(ValueError, match=r"--layers=-3: the encoder has 2 layers .*-3. out of "
                                         r"range"):
        parse_layers("-3", 2)
    with pytest.raises(ValueError, match="--layers must be a comma list"):
        parse_layers("last", 2)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nbro\xffken\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: not valid UTF-8"):
        extract(encoder, preprocessor, str(bad), str(tmp_path / "x.jsonl"), FeatureOptions([-1]),
                log=lambda _: None)
    assert not list(tmp_path.glob("*x.jsonl*"))  # nothing half-written left
    with pytest.raises(CaseMismatch, match="--do_lower_case=false contradicts the run of "
                                           "--init_checkpoint"):
        run(FeatureConfig(input_file=str(text), output_file=str(tmp_path / "y.jsonl"),
                          init_checkpoint=str(checkpoint), do_lower_case=False))
    # refused before any work: its own input as output, a folder, more positions than the
    # encoder has, an empty input
    base = dict(input_file=str(text), init_checkpoint=str(checkpoint), max_seq_length=16,
                layers="-1")
    before = text.read_bytes()
    for output, message in ((str(text), "is --input_file"),
                            (f"{text.parent}/./{text.name}", "is --input_file"),
                            (str(tmp_path), "is a folder"),
                            (str(tmp_path / "missing" / "x.npz"), "cannot write there")):
        with pytest.raises(ValueError, match=f"--output_file .*{message}"):
            run(FeatureConfig(output_file=output, **base))
    assert text.read_bytes() == before
    with pytest.raises(ValueError, match="--max_seq_length=65 exceeds max_position_embeddings"):
        run(FeatureConfig(output_file=str(tmp_path / "z.jsonl"), **{**base,
                                                                     "max_seq_length": 65}))
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty.txt: no lines"):
        run(FeatureConfig(output_file=str(tmp_path / "e.npz"), output_format="npz",
                          **{**base, "input_file": str(empty)}))
    assert not list(tmp_path.glob("*e.npz*"))


def test_the_command_line(source, tmp_path):
    import subprocess
    import sys

    from conftest import REPO_ROOT

    checkpoint, export, text, vocab, _ = source
    output = tmp_path / "cls.npz"
    result = subprocess.run(
        [sys.executable, "-m", "bert_tf.extract_features", f"--input_file={text}",
         f"--output_file={output}", f"--init_checkpoint={checkpoint}", "--layers=-1",
         "--max_seq_length=16", "--output_format=npz", "--pooling=cls"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"features of {len(LINES)} lines" in result.stdout
    rows = expected_outputs(export, vocab, LINES)
    np.testing.assert_allclose(np.load(output)["features"][:, 0],
                               [r[0]["encoder_outputs_1"].numpy()[0, 0] for r in rows], atol=1e-5)
