"""Fuzzing every serving signature of every export (encoder, preprocessor, text-in, classifier,
question answering, tagging): seeded random batch sizes per input (so multi-input signatures get
mismatched batches), empty batches, empty strings, invalid UTF-8, NULs, very long strings, ids
outside the vocab and wrong dtypes. Every call returns a well-formed answer (one row per input
row, finite numbers, ids inside the vocab) or a clean error; the serving process never aborts.

The calls run in a TensorFlow-only child process, as a server would: an abort (std::length_error,
a CHECK failure) ends the child, not pytest, and the test names the call that did it.
"""

import json
import os
import re
import subprocess
import sys

import keras
import pytest

from bert_tf import export
from bert_tf.config import BertConfig
from bert_tf.data.sample_corpus import write_corpus
from bert_tf.export.classifier import export_classifier
from bert_tf.export.question_answering import export_question_answerer
from bert_tf.export.serving import ExportRequest, non_core_ops, saved_model_ops
from bert_tf.export.tagging import export_tagger
from bert_tf.modeling import build_classifier, build_question_answerer, build_tagger
from bert_tf.modeling import BertEncoder, build_pretrainer
from bert_tf.text.tokenization import load_vocab, write_vocab
from bert_tf.text.vocab_learning import learn_vocab

SEQ = 24
CALLS_PER_SIGNATURE = 30
SEED = 7

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Every kind of export of one tiny model: {name: SavedModel path}, and the vocab size."""
    root = tmp_path_factory.mktemp("fuzz")
    write_corpus(str(root / "corpus.txt"))
    write_vocab(learn_vocab(str(root / "corpus.txt"), vocab_size=1000), root / "vocab.txt")
    vocab = load_vocab(str(root / "vocab.txt"))
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)
    keras.utils.set_random_seed(0)
    paths = export.export_all(build_pretrainer(config), vocab, True, SEQ, str(root / "bert"))
    paths["classifier_pair"] = export_classifier(ExportRequest(
        "classification", build_classifier(BertEncoder(config), 3), vocab, True, SEQ,
        {"labels": ["a", "b", "c"], "pair": True}), str(root / "classifier"))
    windowing = {"doc_stride": 8, "max_query_length": 8, "max_answer_length": 10,
                 "version_2_with_negative": True, "null_score_diff_threshold": 0.0}
    paths["question_answering"] = export_question_answerer(ExportRequest(
        "question_answering", build_question_answerer(BertEncoder(config)), vocab, True, SEQ,
        {"flags": windowing}), str(root / "squad"))
    paths["tagging"] = export_tagger(ExportRequest(
        "tagging", build_tagger(BertEncoder(config), 3), vocab, True, SEQ,
        {"labels": ["O", "B-X", "I-X"]}), str(root / "tagger"))
    return {"paths": paths, "vocab_size": len(vocab)}


FUZZ_SCRIPT = r"""
import json, random, sys
import numpy as np
import tensorflow as tf
import tensorflow_text  # registers the ops; nothing from bert_tf

paths, vocab_size, calls, seed = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), \
    int(sys.argv[4])
rng = random.Random(seed)
STRINGS = [b"", b"hello world", b"The quick brown fox.", "Héllo wörld café 中文 😀".encode(),
           b"\xff\xfe\xfd invalid utf-8 \xc3", b"nul\x00inside", b"[MASK] [CLS] [SEP] [PAD]",
           b"a " * 5_000, b"x" * 20_000, "\u2028\u0085\x0c".encode(), b"?!.,;:" * 30,
           b"   ", b"\t\n\r"]
BATCHES = [0, 1, 1, 2, 3, 7]


def random_value(spec, batch, length):
    if rng.random() < 0.15:  # this input's own batch size
        batch = rng.choice(BATCHES)
    if rng.random() < 0.08:  # a wrong dtype
        return tf.constant(np.zeros([batch], np.float32))
    if spec.dtype == tf.string:
        return tf.constant([rng.choice(STRINGS) for _ in range(batch)], tf.string)
    if spec.shape.rank == 2 and spec.shape[1] is not None:
        length = spec.shape[1]
    elif rng.random() < 0.1:  # this input's own length
        length = rng.choice([0, 1, 5, 24])
    low, high = (-5, vocab_size + 5) if rng.random() < 0.1 else (0, 2)
    values = np.array([[rng.randint(low, high) for _ in range(length)] for _ in range(batch)])
    return tf.constant(values.reshape([batch, length]), spec.dtype)


report = {}
for name, path in paths.items():
    model = tf.saved_model.load(path)
    for signature_name, function in model.signatures.items():
        specs = function.structured_input_signature[1]
        ok = errors = 0
        for call in range(calls):
            batch, length = rng.choice(BATCHES), rng.choice([0, 1, 5, 24])
            inputs = {key: random_value(spec, batch, length) for key, spec in specs.items()}
            if call == 0:  # at least one wrong dtype per signature
                inputs[next(iter(inputs))] = tf.constant(np.zeros([batch], np.float32))
            shapes = {k: (v.dtype.name, v.shape.as_list()) for k, v in inputs.items()}
            print(f"CALL {name}/{signature_name} #{call} {shapes}", flush=True)
            try:
                outputs = function(**inputs)
            except (tf.errors.InvalidArgumentError, TypeError, ValueError):
                errors += 1
                continue
            for key, value in outputs.items():
                value = value.numpy()
                problem = None
                if value.dtype.kind == "f" and not np.isfinite(value).all():
                    problem = "non-finite values"
                if "word_ids" in key and value.size and (value.min() < 0 or
                                                        value.max() >= vocab_size):
                    problem = f"ids outside [0, {vocab_size}): {value.min()}..{value.max()}"
                if problem:
                    print(f"BAD {name}/{signature_name} #{call} {key}: {problem}", flush=True)
                    sys.exit(3)
            first_rows = {v.shape[0] for v in inputs.values()}
            if len(first_rows) == 1:
                batch = first_rows.pop()
                wrong = {k: v.shape for k, v in outputs.items()
                         if v.shape.rank and v.shape[0] != batch}
                if wrong:
                    print(f"BAD {name}/{signature_name} #{call}: outputs {wrong} for a batch "
                          f"of {batch}", flush=True)
                    sys.exit(3)
            ok += 1
        report[f"{name}/{signature_name}"] = {"answers": ok, "clean_errors": errors}
print("REPORT " + json.dumps(report), flush=True)
"""


def test_every_signature_answers_or_fails_cleanly(exports):
    result = subprocess.run(
        [sys.executable, "-c", FUZZ_SCRIPT, json.dumps(exports["paths"]),
         str(exports["vocab_size"]), str(CALLS_PER_SIGNATURE), str(SEED)],
        capture_output=True, text=True, timeout=900,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    calls = [line for line in result.stdout.splitlines() if line.startswith("CALL ")]
    assert result.returncode == 0, (
        f"exit status {result.returncode} after {calls[-1] if calls else 'no call'}\n"
        f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    report = json.loads(result.stdout.split("REPORT ", 1)[1])
    expected = {"bert_encoder/serving_default", "bert_preprocessor/serving_default",
                "bert_preprocessor/pair", "bert/serving_default", "bert/pair",
                "classifier_pair/serving_default", "question_answering/serving_default",
                "tagging/serving_default"}
    assert expected <= set(report), sorted(report)
    for name, counts in report.items():
        # every signature both answered and refused some calls: the fuzz reached both paths
        assert counts["answers"] > 0 and counts["clean_errors"] > 0, (name, counts)
    print("\n" + "\n".join(f"{name}: {c['answers']} answers, {c['clean_errors']} clean errors"
                           for name, c in sorted(report.items())))


def documented_text_ops():
    """{export: tensorflow-text ops} from the table in docs/export-and-serving.md."""
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "docs",
                           "export-and-serving.md"), encoding="utf-8") as f:
        page = f.read()
    table = page[page.index("| export | tensorflow-text ops in its graph |"):].split("\n\n")[0]
    names = {"`bert_encoder`": ["bert_encoder"], "`bert_preprocessor`": ["bert_preprocessor"],
             "`bert`": ["bert"], "`classifier`": ["classifier_pair"],
             "question answering": ["question_answering"], "tagging": ["tagging"]}
    documented = {}
    for row in table.splitlines()[2:]:
        exports, ops = [cell.strip() for cell in row.strip("|").split("|")]
        for name in exports.split(", "):
            for key in names[name]:
                documented[key] = set(re.findall(r"`([^`]+)`", ops))
    return documented


def test_the_documented_serving_ops_are_the_exports_ops(exports):
    """What a TF Serving build must have registered: the docs' table is what the graphs hold."""
    found = {name: non_core_ops(saved_model_ops(path))
             for name, path in exports["paths"].items()}
    assert found == documented_text_ops()


LONG_SCRIPT = r"""
import json, sys, time
import tensorflow as tf
import tensorflow_text  # registers the ops; nothing from bert_tf


def memory(field):
    with open("/proc/self/status") as f:  # VmRSS: resident now, VmHWM: its peak, in kB
        return next(int(l.split()[1]) for l in f if l.startswith(field + ":")) * 1024


def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:  # "5": VmHWM starts again from VmRSS
        f.write("5")


paths = json.loads(sys.argv[1])
words = "The Python Software Foundation holds the copyright of Python since 2001 . "
long_words = ("x" * 300 + " ") * 4
rows = []
for name, path in paths.items():
    model = tf.saved_model.load(path)
    for signature, function in model.signatures.items():
        specs = function.structured_input_signature[1]
        if any(spec.dtype != tf.string for spec in specs.values()):
            continue
        for size in (10_000, 100_000, 1_000_000, 4_000_000):
            for kind, unit in (("words", words), ("long words", long_words)):
                text = (unit * (size // len(unit) + 1))[:size].encode()
                inputs = {key: tf.constant([text if key in ("text", "context") else b"who?"])
                          for key in specs}
                reset_peak()
                before, start = memory("VmRSS"), time.perf_counter()
                outputs = function(**inputs)
                rows.append({"call": f"{name}/{signature}", "kind": kind, "bytes": size,
                             "seconds": time.perf_counter() - start,
                             "peak_rss_growth": max(memory("VmHWM") - before, 0),
                             "rows": {k: int(v.shape[0]) for k, v in outputs.items()
                                      if v.shape.rank}})
                print(json.dumps(rows[-1]), flush=True)
print("REPORT " + json.dumps(rows), flush=True)
"""


def test_long_texts_cost_bounded_memory_per_call(exports):
    """Texts of 10 kB to 4 MB (words, and words of over 200 characters) through every text-in
    signature: each answers one row, and its peak memory grows by a bounded amount (texts are
    read up to 1 MiB, long-text windows are capped, and no step copies the text per word)."""
    text_in = {name: path for name, path in exports["paths"].items() if name != "bert_encoder"}
    result = subprocess.run([sys.executable, "-c", LONG_SCRIPT, json.dumps(text_in)],
                            capture_output=True, text=True, timeout=900,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    rows = json.loads(result.stdout.split("REPORT ", 1)[1])
    assert {row["call"] for row in rows} >= {"tagging/serving_default", "bert/fill_mask",
                                              "question_answering/serving_default"}
    print()
    for row in rows:
        print(f"{row['call']:38s} {row['kind']:10s} {row['bytes']:>9,} B "
              f"{row['seconds']:7.2f} s  peak RSS +{row['peak_rss_growth'] / 2**20:7.1f} MiB")
        assert all(n == 1 for n in row["rows"].values()), row
        # before: a 1 MB text took the tagger to 21.8 GB; now bounded by the 1 MiB read
        assert row["peak_rss_growth"] < 512 * 2**20, row


def test_every_export_carries_warmup_requests_that_its_signatures_answer(exports):
    """assets.extra/tf_serving_warmup_requests, read with tensorflow-serving-api's
    PredictionLog: every signature of every SavedModel has requests of one text and of a batch
    at each length bucket, and answers each of them with one result per text."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    from bert_tf.export.warmup import BATCH_SIZES, WARMUP_FILE, read_warmup
    from bert_tf.text.preprocessing import length_buckets

    for name, path in exports["paths"].items():
        records = list(tf.data.TFRecordDataset(os.path.join(path, WARMUP_FILE)))
        assert 0 < len(records) <= 1000, name
        for record in records:
            log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            assert log.WhichOneof("log_type") == "predict_log", name
        requests = read_warmup(path)
        loaded = tf.saved_model.load(path)
        assert {s for s, _ in requests} == set(loaded.signatures), name
        lengths = set()
        for signature, inputs in requests:
            batch = len(next(iter(inputs.values())))
            assert batch in BATCH_SIZES
            outputs = loaded.signatures[signature](**{k: tf.constant(v)
                                                      for k, v in inputs.items()})
            for output, value in outputs.items():
                assert value.shape[0] == batch, (name, signature, output, value.shape)
            if "input_word_ids" in inputs:
                lengths.add(inputs["input_word_ids"].shape[1])
            elif signature == "serving_default" and name == "bert_preprocessor":
                lengths.add(int(outputs["input_mask"].numpy().sum(-1).max()))
        if name == "bert_encoder":
            assert lengths == set(length_buckets(SEQ))
        if name == "bert_preprocessor":  # the texts fill each bucket
            assert lengths == set(length_buckets(SEQ)), lengths
