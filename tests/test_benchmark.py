"""tools/benchmark.py: its FLOP count matches the model, and the train part runs side by side."""

import os
import sys

import numpy as np
import pytest

from bert_tf.config import BertConfig
from bert_tf.modeling.pretrainer import build_pretrainer
from conftest import CONFIGS_DIR, REPO_ROOT

sys.path.insert(0, os.path.join(REPO_ROOT, "tools"))
import benchmark  # noqa: E402


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_flop_count_uses_the_models_own_parameter_count(name):
    config = BertConfig.from_json_file(os.path.join(CONFIGS_DIR, f"bert_{name}.json"))
    model = build_pretrainer(config)
    block_params = sum(int(np.prod(w.shape)) for w in model.weights
                       if "transformer_layer_" in w.path)
    seq, predictions = 128, 20
    H, V = config.hidden_size, config.vocab_size
    expected = (6 * block_params * seq + 12 * config.num_hidden_layers * H * seq * seq
                + 6 * predictions * (H * H + H * V))
    assert benchmark.train_flops_per_sequence(config, seq, predictions) == expected


@pytest.mark.slow
def test_train_part_times_ours_and_the_model_garden(monkeypatch):
    benchmark.FLAGS(["benchmark", "--configs=tiny", "--jit=off", "--peers=model_garden",
                     "--seq_length=32", "--batch_size=8", "--predictions=5", "--seconds=0.2",
                     "--repeats=2", "--precisions=float32,mixed_bfloat16",
                     "--matmul_size=256"])
    lines = []
    result = benchmark.bench_train(lines.append)
    rows = {(row["implementation"], row["precision"]): row for row in result["rows"]}
    assert set(rows) == {(name, policy) for name in ("bert_tf", "model_garden")
                         for policy in ("float32", "mixed_bfloat16")}
    for row in rows.values():
        assert row["sequences_per_second"] > 0 and 0 < row["mfu"] < 1
    assert set(result["matmul_peaks_gflops"]) == {"float32", "bfloat16"}
    assert result["matmul_peak_gflops"] > 1 and result["matmul_bf16_ratio"] > 0
    ratios = {row["implementation"]: row["bf16_ratio"] for row in result["precision_ratios"]}
    assert set(ratios) == {"bert_tf", "model_garden"}
    expected = (rows["bert_tf", "mixed_bfloat16"]["sequences_per_second"]
                / rows["bert_tf", "float32"]["sequences_per_second"])
    assert ratios["bert_tf"] == pytest.approx(expected)
    ours = next(r for r in result["precision_ratios"] if r["implementation"] == "bert_tf")
    f32, bf16 = (rows["bert_tf", p]["seconds_per_step_rounds"]
                 for p in ("float32", "mixed_bfloat16"))
    assert len(ours["bf16_ratio_rounds"]) == 2 and ours["bf16_ratio_rounds"] == pytest.approx(
        [f / b for f, b in zip(f32, bf16)])
    assert any("bf16 step / fp32 step" in line for line in lines)


@pytest.mark.slow
def test_time_to_accuracy_part_gives_curves_for_packed_and_unpacked():
    benchmark.FLAGS(["benchmark", "--tta_seconds=0.1", "--tta_eval_every=3",
                     "--tta_eval_batches=2"])
    lines = []
    result = benchmark.bench_time_to_accuracy(lines.append)
    curves = result["curves"]
    assert set(curves) == {"unpacked", "packed"}
    for curve in curves.values():
        assert curve and curve[0]["steps"] == 3 and 0 <= curve[0]["masked_lm_accuracy"] <= 1
    # the same steps of 16 rows: a packed row holds more than one sequence
    assert curves["unpacked"][0]["sequences"] == 3 * 16
    assert curves["packed"][0]["sequences"] > 1.5 * 3 * 16
    assert result["seconds_to_target"]["unpacked"] is not None
    assert any(line.startswith("time_to_accuracy packed") for line in lines)


def test_serving_standings_name_our_fastest_format_against_the_fastest_peer():
    from benchmarks.serving import OURS, PEERS, standings

    row = {name: {"p50_ms": 10.0, "batch_32_sentences_per_s": 100.0, "accuracy": 0.9}
           for name in OURS + PEERS}
    row["litert_int8"] = {"p50_ms": 4.0, "batch_32_sentences_per_s": 150.0, "accuracy": 0.89}
    row["onnxruntime_int8"] = {"p50_ms": 5.0, "batch_32_sentences_per_s": 300.0,
                               "accuracy": 0.9}
    result = standings(row)
    assert result["batch_1_ours_vs_best_peer"] == {"ours": "litert_int8",
                                                   "peer": "onnxruntime_int8", "speedup": 1.25}
    assert result["batch_32_ours_vs_best_peer"] == {"ours": "litert_int8",
                                                    "peer": "onnxruntime_int8", "speedup": 0.5}
    assert result["int8_accuracy_points"]["litert_int8"] == pytest.approx(-1.0)
    assert result["int8_accuracy_points"]["onnxruntime_int8"] == pytest.approx(0.0)


def test_the_real_serving_task_is_balanced_real_sentences():
    from real_weights import reference_or_library

    rows = reference_or_library()
    labels = [label for _, label in rows]
    assert labels.count("reference") == labels.count("library") == 700
    assert len({text for text, _ in rows}) == len(rows)
    assert all(40 < len(text) < 160 and "\t" not in text for text, _ in rows)
