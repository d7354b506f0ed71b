"""Weighted corpus mixing (--corpus, --corpus_weights, --sampling_exponent): realised shares in
the manifest within 1% of those requested, the same bytes from the local and the Beam runner,
and the vocab learner sampling the same mixture."""

import filecmp
import json
import os
import subprocess
import sys

import pytest

from bert_tf.build_vocab import VocabConfig, learn_mixed_vocab
from bert_tf.data import mixing
from bert_tf.data.instances import InstanceOptions
from bert_tf.data.sample_corpus import write_corpus
from bert_tf.data.writer import (DataCreationConfig, create_pretraining_data, plan_job,
                                 read_document_buffers)
from bert_tf.text.tokenization import write_vocab
from bert_tf.text.vocab_learning import learn_vocab
from conftest import REPO_ROOT

OPTIONS = InstanceOptions(max_seq_length=64, max_predictions_per_seq=10, dupe_factor=1)
BUFFER_MB = 0.02


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """Python's documentation as documents of 4 sentences, cut into a large corpus (3 files)
    and a small one (1 file, about a tenth of the size), and a vocab."""
    directory = tmp_path_factory.mktemp("corpora")
    path = directory / "all.txt"
    write_corpus(str(path))
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    documents = ["\n".join(lines[i:i + 4]) for i in range(0, len(lines), 4)]
    cut = len(documents) * 9 // 10
    for name, part in (("large", documents[:cut]), ("small", documents[cut:])):
        (directory / name).mkdir()
        chunks = [part] if name == "small" else [part[i::3] for i in range(3)]
        for i, chunk in enumerate(chunks):
            (directory / name / f"{i}.txt").write_text("\n\n".join(chunk) + "\n",
                                                       encoding="utf-8")
    vocab = directory / "vocab.txt"
    write_vocab(learn_vocab(str(path), vocab_size=2000), vocab)
    specs = (f"large:{directory / 'large' / '*.txt'}", f"small:{directory / 'small' / '*.txt'}")
    return {"specs": specs, "vocab": str(vocab), "dir": directory}


def config(corpora, output, **mixture):
    return DataCreationConfig(
        output_file=str(output), vocab_file=corpora["vocab"], options=OPTIONS, random_seed=3,
        num_shards=2, num_workers=1, document_buffer_mb=BUFFER_MB, progress=False,
        mixture=mixing.MixingSettings(corpus=corpora["specs"], **mixture))


def manifest(summary):
    with open(summary["manifest"]) as f:
        return json.load(f)


@pytest.mark.parametrize("mixture", [{"sampling_exponent": 0.7},
                                     {"corpus_weights": "large:1,small:1"},
                                     {"sampling_exponent": 0.0}],
                         ids=["exponent_0.7", "weights_1_1", "exponent_0"])
def test_realised_shares_are_within_one_percent(corpora, tmp_path, mixture):
    summary = create_pretraining_data(config(corpora, tmp_path / "mixed", **mixture))
    report = manifest(summary)["corpora"]
    sizes = {c.name: c.bytes for c in mixing.parse_corpora(corpora["specs"])}
    assert sizes["large"] > 7 * sizes["small"]
    if "sampling_exponent" in mixture:
        exponent = mixture["sampling_exponent"]
        raw = {name: size ** exponent for name, size in sizes.items()}
        expected = {name: value / sum(raw.values()) for name, value in raw.items()}
    else:
        expected = {"large": 0.5, "small": 0.5}
    for name, share in expected.items():
        assert report[name]["requested"] == pytest.approx(share)
        assert abs(report[name]["share"] - share) < 0.01 * share, (name, report[name])
        assert report[name]["examples"] > 0 and 0 < report[name]["example_share"] < 1
    # the small corpus is read more than once: its repeats are new examples, not copies
    assert report["small"]["text_bytes"] > sizes["small"]


def test_the_local_and_beam_runners_write_the_same_mixture(corpora, tmp_path):
    from bert_tf.data.beam_pipeline import create_pretraining_data_beam, pipeline_options

    local = create_pretraining_data(config(corpora, tmp_path / "local" / "mixed",
                                           sampling_exponent=0.7))
    beam = create_pretraining_data_beam(
        config(corpora, tmp_path / "beam" / "mixed", sampling_exponent=0.7),
        pipeline_options("DirectRunner", ["--direct_num_workers=2",
                                          "--direct_running_mode=multi_processing"]))
    assert all(filecmp.cmp(a, b, shallow=False)
               for a, b in zip(local["shards"], beam["shards"], strict=True))
    assert manifest(local)["corpora"] == manifest(beam)["corpora"]


def test_the_vocab_learner_samples_the_same_mixture(corpora, tmp_path):
    settings = mixing.MixingSettings(corpus=corpora["specs"], sampling_exponent=0.5)
    _, units, requested = plan_job(None, settings, 10 ** 6)
    read = {"large": 0, "small": 0}
    for key, documents, _ in read_document_buffers(units, 10 ** 6):
        read[mixing.corpus_of(key)] += sum(len(line.encode()) for d in documents for line in d)
    for name, share in requested.items():
        assert abs(read[name] / sum(read.values()) - share) < 0.01 * share
    vocab_config = VocabConfig(output_file=str(tmp_path / "vocab.txt"), vocab_size=500,
                               mixture=settings)
    tokens = learn_mixed_vocab(vocab_config)
    assert tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] and len(tokens) <= 500
    result = subprocess.run(
        [sys.executable, "-m", "bert_tf.build_vocab", f"--corpus={corpora['specs'][0]}",
         f"--corpus={corpora['specs'][1]}", "--sampling_exponent=0.5", "--vocab_size=500",
         f"--output_file={tmp_path / 'cli_vocab.txt'}"],
        cwd=REPO_ROOT, capture_output=True, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "cli_vocab.txt").read_text().split("\n")[:len(tokens)] == tokens


def test_bad_mixing_flags_are_named(corpora, tmp_path):
    large, small = corpora["specs"]
    cases = [({"corpus": ("large",)}, "expected NAME:GLOB"),
             ({"corpus": (large, large)}, "the name large is given twice"),
             ({"corpus": (large, small), "corpus_weights": "large:1"},
              "give a weight for each --corpus"),
             ({"corpus": (large, small), "corpus_weights": "large:1,small:-1"},
              "positive weights"),
             ({"corpus": (large, f"empty:{tmp_path / 'empty.txt'}")}, "its files are empty"),
             ({"corpus": (large, f"blank:{tmp_path / 'blank.txt'}")}, "its files are empty"),
             ({"corpus": (large, small), "corpus_weights": "large:1,small:inf"},
              "positive weights .finite numbers."),
             ({"corpus": (large, small), "corpus_weights": "large:1,small:1,large:2"},
              "large is given twice"),
             ({"corpus": (large, "a,b:" + small.split(":", 1)[1])}, "without '/', ':' or ','")]
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "blank.txt").write_text("\n \n\t\n" * 1000)
    for values, message in cases:
        with pytest.raises(ValueError, match=message):
            create_pretraining_data(DataCreationConfig(
                output_file=str(tmp_path / "x"), vocab_file=corpora["vocab"], progress=False,
                mixture=mixing.MixingSettings(**values)))
    with pytest.raises(FileNotFoundError, match="--corpus=none:.* no files match"):
        mixing.parse_corpora((f"none:{tmp_path / 'none*.txt'}",))
    with pytest.raises(ValueError, match="not both"):
        mixing.MixingSettings(corpus=(large,), corpus_weights="large:1", sampling_exponent=0.7)
    with pytest.raises(ValueError, match="mix corpora given by --corpus"):
        mixing.MixingSettings(sampling_exponent=0.7)
    with pytest.raises(ValueError, match="give --input_file or --corpus=NAME:GLOB"):
        DataCreationConfig(input_file="a.txt", output_file="x", vocab_file="v",
                           mixture=mixing.MixingSettings(corpus=(large,)))
    with pytest.raises(ValueError, match="give --input_file, or --corpus"):
        DataCreationConfig(output_file="x", vocab_file="v")
