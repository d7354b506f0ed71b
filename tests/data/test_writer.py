"""End to end: real text -> vocab -> TFRecords, checked with google's feature spec and invariants."""

import dataclasses
import filecmp
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from bert_tf.data import schema
from bert_tf.text.vocab_learning import learn_vocab
from bert_tf.data.writer import DataCreationConfig, DataError, create_pretraining_data
from bert_tf.data.inspection import Statistics, read_examples
from bert_tf.data.input_pipeline import check_data, first_records
from bert_tf.data.instances import InstanceOptions
from bert_tf.text.tokenization import VocabError, WordpieceTokenizer, load_vocab, write_vocab
from conftest import REPO_ROOT
from bert_tf.data.sample_corpus import write_corpus

OPTIONS = InstanceOptions(max_seq_length=128, max_predictions_per_seq=20, dupe_factor=10)
SEED = 4242

# google-research/bert run_pretraining.py's name_to_features, written out as google has it.
GOOGLE_SPEC = {
    "input_ids": tf.io.FixedLenFeature([128], tf.int64),
    "input_mask": tf.io.FixedLenFeature([128], tf.int64),
    "segment_ids": tf.io.FixedLenFeature([128], tf.int64),
    "masked_lm_positions": tf.io.FixedLenFeature([20], tf.int64),
    "masked_lm_ids": tf.io.FixedLenFeature([20], tf.int64),
    "masked_lm_weights": tf.io.FixedLenFeature([20], tf.float32),
    "next_sentence_labels": tf.io.FixedLenFeature([1], tf.int64),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Python's own documentation: ~0.4 MB of real English, one sentence per line."""
    directory = tmp_path_factory.mktemp("corpus")
    path = directory / "topics.txt"
    write_corpus(str(path))
    vocab_path = directory / "vocab.txt"
    write_vocab(learn_vocab(str(path), vocab_size=4000), vocab_path)
    return {"text": str(path), "vocab": str(vocab_path), "dir": directory}


def make(corpus, output, **kwargs):
    args = dict(input_file=corpus["text"], output_file=str(output), vocab_file=corpus["vocab"],
                options=OPTIONS, random_seed=SEED, num_shards=2, num_workers=1, progress=False)
    args.update(kwargs)
    return create_pretraining_data(DataCreationConfig(**args))


@pytest.fixture(scope="module")
def dataset(corpus, tmp_path_factory):
    prefix = tmp_path_factory.mktemp("data") / "topics"
    summary = make(corpus, prefix)
    batches = list(read_examples(summary["shards"], 128, 20))
    examples = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    return {"prefix": str(prefix), "summary": summary, "examples": examples,
            "vocab": load_vocab(corpus["vocab"])}


def test_enough_examples_and_manifest(dataset, corpus):
    examples, summary = dataset["examples"], dataset["summary"]
    assert len(examples["input_ids"]) == summary["examples"] >= 10_000
    manifest = schema.read_manifest(schema.manifest_path(dataset["prefix"]))
    assert manifest["max_seq_length"] == 128 and manifest["max_predictions_per_seq"] == 20
    assert manifest["num_examples"] == summary["examples"]
    assert [s["file"] for s in manifest["shards"]] == [os.path.basename(p)
                                                       for p in summary["shards"]]
    assert sum(s["examples"] for s in manifest["shards"]) == summary["examples"]
    assert manifest["vocab"]["sha256"] == dataset["vocab"].sha256()
    assert manifest["vocab"]["do_lower_case"] is True
    assert manifest["random_seed"] == SEED and manifest["options"]["dupe_factor"] == 10
    assert manifest["schema"]["masked_lm_weights"] == {"dtype": "float32", "shape": [20]}
    copy = load_vocab(schema.vocab_copy_path(dataset["prefix"]))
    assert copy.tokens == dataset["vocab"].tokens


def test_schema_reads_with_googles_feature_spec(dataset):
    path = dataset["summary"]["shards"][0]
    for record in tf.data.TFRecordDataset(path).take(3):
        parsed = tf.io.parse_single_example(record, GOOGLE_SPEC)
        assert parsed["input_ids"].dtype == tf.int64
        assert parsed["masked_lm_weights"].dtype == tf.float32
    example = tf.train.Example.FromString(next(iter(tf.data.TFRecordDataset(path))).numpy())
    assert sorted(example.features.feature) == sorted(GOOGLE_SPEC)


def test_invariants(dataset):
    x, vocab = dataset["examples"], dataset["vocab"]
    ids, mask, segments = x["input_ids"], x["input_mask"], x["segment_ids"]
    lengths = mask.sum(1)
    n, seq = ids.shape
    assert set(np.unique(mask)) == {0, 1}
    assert (mask == (np.arange(seq)[None] < lengths[:, None])).all(), "mask is a prefix"
    assert (ids[mask == 0] == 0).all() and (segments[mask == 0] == 0).all()
    assert (ids[:, 0] == vocab.cls_id).all()
    is_sep = ids == vocab.sep_id
    assert (is_sep.sum(1) == 2).all()
    assert (ids[np.arange(n), lengths - 1] == vocab.sep_id).all()
    first_sep = is_sep.argmax(1)
    expected_segments = ((np.arange(seq)[None] > first_sep[:, None]) & (mask == 1))
    assert (segments == expected_segments).all(), "segments line up with [SEP]"

    weights = x["masked_lm_weights"] > 0
    positions, labels = x["masked_lm_positions"], x["masked_lm_ids"]
    counts = weights.sum(1)
    assert (weights == (np.arange(20)[None] < counts[:, None])).all()
    assert (counts >= 1).all()
    assert (positions[~weights] == 0).all() and (labels[~weights] == 0).all()
    for row in range(n):
        p = positions[row, :counts[row]]
        assert (np.diff(p) > 0).all(), "sorted and unique"
    shown = np.take_along_axis(ids, positions, 1)[weights]
    specials = [vocab.cls_id, vocab.sep_id, vocab.pad_id]
    assert not np.isin(shown, specials).any(), "special tokens are never masked"
    ordinary = vocab.ordinary_ids()
    assert np.isin(labels[weights], ordinary).all(), "labels are ordinary tokens"
    label = labels[weights]
    assert ((shown == vocab.mask_id) | (shown == label) | np.isin(shown, ordinary)).all()


def test_original_text_is_rebuilt_from_the_labels(dataset, corpus):
    vocab = dataset["vocab"]
    tokenizer = WordpieceTokenizer(vocab, do_lower_case=True)
    with open(corpus["text"], encoding="utf-8") as f:
        documents = [d.splitlines() for d in f.read().split("\n\n") if d.strip()]
    streams = [np.concatenate(tokenizer.tokenize(tf.constant(d)).flat_values.numpy()
                              [None]).astype(np.int32).tobytes() for d in documents]
    x = dataset["examples"]
    for row in range(0, len(x["input_ids"]), 97):
        ids = x["input_ids"][row].copy()
        weights = x["masked_lm_weights"][row] > 0
        ids[x["masked_lm_positions"][row][weights]] = x["masked_lm_ids"][row][weights]
        n = x["input_mask"][row].sum()
        first_sep = int(np.argmax(ids == vocab.sep_id))
        segment_a = ids[1:first_sep].astype(np.int32).tobytes()
        assert any(s.find(segment_a) % 4 == 0 for s in streams if segment_a in s), \
            "segment A is contiguous text of one document"
        assert vocab.mask_id not in ids[:n]


def test_statistics_on_real_text(dataset):
    vocab = dataset["vocab"]
    stats = Statistics(vocab.mask_id, {vocab.cls_id, vocab.sep_id, vocab.pad_id}, 128)
    stats.update(dataset["examples"])
    report = stats.report()
    assert report["examples"] >= 10_000
    assert report["masked_fraction"] == pytest.approx(0.15, abs=0.01)
    assert report["mask_fraction"] == pytest.approx(0.8, abs=0.02)
    assert report["random_fraction"] == pytest.approx(0.1, abs=0.02)
    assert report["keep_fraction"] == pytest.approx(0.1, abs=0.02)
    assert report["random_next_fraction"] == pytest.approx(0.5, abs=0.03)


@pytest.mark.slow
def test_deterministic_across_runs_and_workers(dataset, corpus, tmp_path):
    again = make(corpus, tmp_path / "again", num_workers=2)
    for a, b in zip(dataset["summary"]["shards"], again["shards"], strict=True):
        assert filecmp.cmp(a, b, shallow=False), f"{a} and {b} differ"
    other_seed = make(corpus, tmp_path / "other", random_seed=SEED + 1,
                      options=InstanceOptions(dupe_factor=1))
    assert not filecmp.cmp(dataset["summary"]["shards"][0], other_seed["shards"][0],
                           shallow=False)


def test_gzip_shards_hold_the_same_records(dataset, corpus, tmp_path):
    gz = make(corpus, tmp_path / "gz", gzip=True)
    assert all(p.endswith(".tfrecord.gz") for p in gz["shards"])
    assert re.search(r"-00001-of-00002\.tfrecord\.gz$", gz["shards"][1])
    for plain, zipped in zip(dataset["summary"]["shards"], gz["shards"]):
        a = [r.numpy() for r in tf.data.TFRecordDataset(plain)]
        b = [r.numpy() for r in tf.data.TFRecordDataset(zipped, compression_type="GZIP")]
        assert a == b
    assert os.path.getsize(gz["shards"][0]) < os.path.getsize(dataset["summary"]["shards"][0])
    assert sum(len(b["input_ids"]) for b in read_examples(gz["shards"], 128, 20)) == gz["examples"]


def test_whole_word_masking_masks_whole_words(corpus, tmp_path):
    options = InstanceOptions(max_seq_length=128, max_predictions_per_seq=20, dupe_factor=2,
                              do_whole_word_mask=True)
    summary = make(corpus, tmp_path / "wwm", options=options)
    vocab = load_vocab(corpus["vocab"])
    continuation = vocab.is_continuation()
    multi = 0
    for batch in read_examples(summary["shards"], 128, 20):
        for row in range(len(batch["input_ids"])):
            ids = batch["input_ids"][row].copy()
            w = batch["masked_lm_weights"][row] > 0
            chosen = set(batch["masked_lm_positions"][row][w].tolist())
            ids[batch["masked_lm_positions"][row][w]] = batch["masked_lm_ids"][row][w]
            for p in chosen:  # every piece after a chosen one that continues it is chosen too
                if p + 1 < len(ids) and continuation[ids[p + 1]]:
                    assert p + 1 in chosen
                    multi += 1
                if continuation[ids[p]] and ids[p - 1] not in (vocab.cls_id, vocab.sep_id):
                    assert p - 1 in chosen  # (a segment may start mid-word after truncation)
    assert multi > 50


def test_single_document_corpus(corpus, tmp_path):
    text = tmp_path / "one.txt"
    with open(corpus["text"], encoding="utf-8") as f:
        text.write_text(f.read().split("\n\n")[3] + "\n", encoding="utf-8")
    summary = make({**corpus, "text": str(text)}, tmp_path / "one",
                   options=InstanceOptions(max_seq_length=32, max_predictions_per_seq=5))
    assert summary["documents"] == 1 and summary["examples"] > 0


def test_model_garden_reads_ours_and_we_read_theirs(dataset, corpus, tmp_path):
    from official.nlp.data import create_pretraining_data as mg_data
    from official.nlp.data import pretrain_dataloader
    from official.nlp.tools import tokenization as mg_tokenization

    config = pretrain_dataloader.BertPretrainDataConfig(
        input_path=",".join(dataset["summary"]["shards"]), seq_length=128,
        max_predictions_per_seq=20, global_batch_size=4, is_training=False)
    batch = next(iter(pretrain_dataloader.BertPretrainDataLoader(config).load()))
    assert batch["input_word_ids"].shape == (4, 128)
    assert batch["masked_lm_positions"].shape == (4, 20)

    import random
    tokenizer = mg_tokenization.FullTokenizer(corpus["vocab"], do_lower_case=True)
    instances = mg_data.create_training_instances(
        [corpus["text"]], tokenizer, lambda x: x, 128, 1, 0.1, 0.15, 20, random.Random(1))
    theirs = str(tmp_path / "theirs.tfrecord")
    mg_data.write_instance_to_example_files(instances, tokenizer, 128, 20, [theirs], False,
                                            False)
    parsed = next(read_examples([theirs], 128, 20))
    assert parsed["input_ids"].shape[1] == 128 and len(parsed["input_ids"]) > 100

    # the same instances under the Model Garden's v2 feature names (input_word_ids,
    # input_type_ids): read alike, by the inspector and by the training input pipeline
    v2 = str(tmp_path / "theirs_v2.tfrecord")
    mg_data.write_instance_to_example_files(instances, tokenizer, 128, 20, [v2], False, True)
    first = tf.data.TFRecordDataset(v2).take(1).get_single_element().numpy()
    assert "input_word_ids" in tf.train.Example.FromString(first).features.feature
    assert check_data([v2], 128, 20) is None  # foreign data: checked by its first record
    renamed = next(read_examples([v2], 128, 20))
    for name, values in parsed.items():
        np.testing.assert_array_equal(renamed[name], values, err_msg=name)
    count = len(parsed["input_ids"])
    for path in (theirs, v2):
        inputs, labels = first_records(path, count, 128, 20)
        np.testing.assert_array_equal(inputs["input_word_ids"], parsed["input_ids"])
        np.testing.assert_array_equal(inputs["input_type_ids"], parsed["segment_ids"])
        np.testing.assert_array_equal(labels["masked_lm_ids"], parsed["masked_lm_ids"])


# === Failure safety ===

def test_existing_output_is_refused_without_overwrite(dataset, corpus):
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        make(corpus, dataset["prefix"])


def test_overwrite_replaces_shards_of_another_count(corpus, tmp_path):
    first = make(corpus, tmp_path / "d", num_shards=3, options=InstanceOptions(dupe_factor=1))
    second = make(corpus, tmp_path / "d", num_shards=2, overwrite=True,
                  options=InstanceOptions(dupe_factor=1))
    left = sorted(os.listdir(tmp_path))
    assert left == sorted(["d.manifest.json", "d.vocab.txt"]
                          + [os.path.basename(p) for p in second["shards"]])
    assert not set(first["shards"]) & set(p for p in left)


@pytest.mark.slow
def test_killed_run_leaves_nothing_finished_and_rerun_completes(dataset, corpus, tmp_path):
    prefix = tmp_path / "killed"
    command = [sys.executable, "-m", "bert_tf.create_pretraining_data",
               f"--input_file={corpus['text']}", f"--output_file={prefix}",
               f"--vocab_file={corpus['vocab']}", f"--random_seed={SEED}", "--num_shards=2",
               "--num_workers=1", "--dupe_factor=10", "--noprogress"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not any(".tmp-" in f for f in os.listdir(tmp_path)):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    names = os.listdir(tmp_path)
    assert any(".tmp-" in f for f in names), "the run was killed while writing"
    assert not [f for f in names if f.endswith((".tfrecord", ".manifest.json"))]

    # The re-run uses two workers, forked by the CLI: the same bytes as one worker in-process.
    command[command.index("--num_workers=1")] = "--num_workers=2"
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert not [f for f in os.listdir(tmp_path) if ".tmp-" in f], "stale temp files removed"
    for a, b in zip(dataset["summary"]["shards"],
                    sorted(str(p) for p in tmp_path.glob("killed-*.tfrecord")), strict=True):
        assert filecmp.cmp(a, b, shallow=False)


# === Bad input ===

def test_no_matching_files(corpus, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--input_file: no files match '.*nope\*.txt'"):
        make(corpus, tmp_path / "x", input_file=str(tmp_path / "nope*.txt"))


def test_empty_corpus(corpus, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n   \n")
    with pytest.raises(DataError, match=f"no text in {re.escape(str(empty))}"):
        make(corpus, tmp_path / "x", input_file=str(empty))
    assert not [f for f in os.listdir(tmp_path) if f.startswith("x")], "nothing left behind"


def test_missing_and_malformed_vocab(corpus, tmp_path):
    with pytest.raises(VocabError, match="vocab file not found"):
        make(corpus, tmp_path / "x", vocab_file=str(tmp_path / "none.txt"))
    bad = tmp_path / "bad_vocab.txt"
    bad.write_text("[PAD]\n[UNK]\nhello\n")
    with pytest.raises(VocabError, match=r"bad_vocab.txt: missing special token\(s\) \[CLS\]"):
        make(corpus, tmp_path / "x", vocab_file=str(bad))


def test_invalid_bytes_name_file_and_line(corpus, tmp_path):
    text = tmp_path / "bad.txt"
    text.write_bytes(b"A good line.\nAnother one.\n\nBroken \xff\xfe bytes here.\nMore.\n")
    with pytest.raises(DataError, match=re.escape(f"{text}:4: invalid UTF-8")):
        make(corpus, tmp_path / "x", input_file=str(text),
             options=InstanceOptions(max_seq_length=16, max_predictions_per_seq=3))
    summary = make(corpus, tmp_path / "x", input_file=str(text), errors="replace",
                   options=InstanceOptions(max_seq_length=16, max_predictions_per_seq=3))
    assert summary["examples"] > 0


def test_too_few_predictions_is_a_warning(corpus, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        make(corpus, tmp_path / "x", options=InstanceOptions(
            max_seq_length=128, max_predictions_per_seq=5, dupe_factor=1))
    assert "--max_predictions_per_seq=5 is below --masked_lm_prob" in caplog.text


@pytest.mark.slow
def test_cli_reports_and_rejects(corpus, tmp_path):
    base = [sys.executable, "-m", "bert_tf.create_pretraining_data",
            f"--input_file={corpus['text']}", f"--vocab_file={corpus['vocab']}",
            "--dupe_factor=1", "--num_workers=1"]
    ok = subprocess.run(base + [f"--output_file={tmp_path / 'cli'}"], cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert re.search(r"Wrote [\d,]+ examples from 79 documents", ok.stdout)
    assert "examples/s" in ok.stderr  # the progress line
    short = subprocess.run(base + [f"--output_file={tmp_path / 'short'}", "--max_seq_length=4"],
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert short.returncode != 0
    assert "max_seq_length must be at least 5" in short.stderr
    again = subprocess.run(base + [f"--output_file={tmp_path / 'cli'}"], cwd=REPO_ROOT,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "pass --overwrite" in again.stderr
    manifest = json.loads((tmp_path / "cli.manifest.json").read_text())
    assert manifest["flags"]["dupe_factor"] == 1


@pytest.fixture(scope="module")
def dynamic_dataset(corpus, tmp_path_factory):
    prefix = tmp_path_factory.mktemp("dynamic") / "topics"
    summary = make(corpus, prefix, options=dataclasses.replace(OPTIONS, dynamic_masking=True))
    return {"prefix": str(prefix), "summary": summary,
            "manifest": schema.read_manifest(schema.manifest_path(str(prefix)))}


def test_dynamic_masking_data_is_one_unmasked_pass(dynamic_dataset, dataset):
    manifest = dynamic_dataset["manifest"]
    assert manifest["masking"] == "dynamic" and manifest["options"]["dynamic_masking"]
    assert json.loads(open(schema.manifest_path(dataset["prefix"])).read())["masking"] == "static"
    batches = list(read_examples(dynamic_dataset["summary"]["shards"], 128, 20))
    examples = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    # one pass, not dupe_factor=10 copies; no masks stored
    assert len(examples["input_ids"]) * 8 < len(dataset["examples"]["input_ids"])
    assert not examples["masked_lm_weights"].any() and not examples["masked_lm_positions"].any()
    assert not (examples["input_ids"] == dataset["vocab"].mask_id).any()


def masked_stream(dynamic_dataset, vocab_file, batches, seed=7):
    from bert_tf.data.input_pipeline import PipelineOptions, make_dataset
    from bert_tf.data.masking import rules_from_manifest

    rules = rules_from_manifest(dynamic_dataset["manifest"], load_vocab(vocab_file))
    data = make_dataset(dynamic_dataset["summary"]["shards"], 64, 128, 20,
                        PipelineOptions(seed=seed, masking_rules=rules))
    names = {"input_word_ids": "input_ids", "input_type_ids": "segment_ids"}
    for features, labels in data.take(batches):
        yield {names.get(k, k): v.numpy() for k, v in {**features, **labels}.items()}


def test_dynamic_masks_follow_the_static_statistics(dynamic_dataset, dataset, corpus):
    vocab = dataset["vocab"]
    stats = Statistics(vocab.mask_id, {vocab.cls_id, vocab.sep_id, vocab.pad_id}, 128)
    ordinary = set(vocab.ordinary_ids().tolist())
    for batch in masked_stream(dynamic_dataset, corpus["vocab"], 60):
        stats.update(batch)
        weights = batch["masked_lm_weights"] > 0
        shown = np.take_along_axis(batch["input_ids"], batch["masked_lm_positions"], 1)[weights]
        replaced = shown[(shown != vocab.mask_id) & (shown != batch["masked_lm_ids"][weights])]
        assert set(replaced.tolist()) <= ordinary  # never special or [unusedN]
    report = stats.report()
    assert report["masked_fraction"] == pytest.approx(0.15, abs=0.01)
    assert report["mask_fraction"] == pytest.approx(0.8, abs=0.02)
    assert report["random_fraction"] == pytest.approx(0.1, abs=0.02)
    assert report["keep_fraction"] == pytest.approx(0.1, abs=0.02)


def test_dynamic_masks_are_new_each_read_and_fixed_by_the_seed(dynamic_dataset, corpus):
    def masks_by_example(seed, batches):
        masks = {}
        for batch in masked_stream(dynamic_dataset, corpus["vocab"], batches, seed):
            for row in range(len(batch["input_ids"])):
                original = batch["input_ids"][row].copy()
                weights = batch["masked_lm_weights"][row] > 0
                positions = batch["masked_lm_positions"][row][weights]
                original[positions] = batch["masked_lm_ids"][row][weights]
                masks.setdefault(original.tobytes(), []).append(tuple(positions))
        return masks

    examples = dynamic_dataset["summary"]["examples"]
    passes = masks_by_example(1, 3 * examples // 64)  # about 3 reads of every example
    again = masks_by_example(1, 3 * examples // 64)
    assert passes == again  # the seed fixes every mask
    repeated = [m for m in passes.values() if len(m) >= 2]
    assert len(repeated) > examples // 2
    assert sum(len(set(m)) > 1 for m in repeated) > 0.9 * len(repeated)  # new masks per read


def test_static_and_dynamic_data_are_not_mixed(dynamic_dataset, dataset):
    from bert_tf.data.input_pipeline import DataMismatchError, check_data

    files = dataset["summary"]["shards"] + dynamic_dataset["summary"]["shards"]
    with pytest.raises(DataMismatchError, match="--input_file: mixes data sets with static"):
        check_data(files, 128, 20)


def test_more_predictions_than_positions_are_allowed(corpus, tmp_path):
    """--max_predictions_per_seq above --max_seq_length (google's script takes it): the masked
    positions are at most the sequence's own, the rest is padding; dynamic data too."""
    from bert_tf.data import input_pipeline
    from bert_tf.data.pretraining_data import masking_rules

    text = tmp_path / "part.txt"
    with open(corpus["text"], encoding="utf-8") as f:
        text.write_text("\n\n".join(f.read().split("\n\n")[:40]) + "\n", encoding="utf-8")
    for dynamic in (False, True):
        summary = make({**corpus, "text": str(text)}, tmp_path / f"wide{dynamic}", num_shards=1,
                       options=InstanceOptions(max_seq_length=16, max_predictions_per_seq=20,
                                               dynamic_masking=dynamic))
        manifest = schema.read_manifest(schema.manifest_path(str(tmp_path / f"wide{dynamic}")))
        options = input_pipeline.PipelineOptions(
            is_training=False, masking_rules=masking_rules(summary["shards"], manifest))
        dataset = input_pipeline.make_dataset(summary["shards"], 8, 16, 20, options)
        for features, labels in dataset.take(3):
            weights = labels["masked_lm_weights"].numpy()
            real = features["input_mask"].numpy().sum(1)
            assert (weights.sum(1) >= 1).all() and (weights.sum(1) <= real - 2).all()
            positions = features["masked_lm_positions"].numpy()
            assert (positions < 16).all() and (positions[weights > 0] > 0).all()


def test_a_lower_casing_that_contradicts_the_vocab_is_refused(corpus, tmp_path):
    """The corpus's vocab was learned from lower-cased text: --do_lower_case=false would make
    every capitalised word [UNK] or pieces. Refused before anything is written, unless
    --allow_case_mismatch."""
    from bert_tf.text.tokenization import CaseMismatch

    output = tmp_path / "cased"
    with pytest.raises(CaseMismatch, match=r"--do_lower_case=false but .*vocab.txt is an "
                                           r"uncased vocab .*--allow_case_mismatch"):
        make(corpus, output, do_lower_case=False)
    assert not list(tmp_path.iterdir())
    cased = tmp_path / "cased_vocab.txt"
    cased.write_text(open(corpus["vocab"]).read() + "Python\n")
    with pytest.raises(CaseMismatch, match=r"--do_lower_case=true but .*cased_vocab.txt is a "
                                           r"cased vocab .*'Python'"):
        make(corpus, output, vocab_file=str(cased))
    make(corpus, output, do_lower_case=False, allow_case_mismatch=True, num_shards=1)
    assert (tmp_path / "cased.manifest.json").exists()
