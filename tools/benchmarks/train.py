"""train: sequences/s of a full training step of every implementation, in each precision."""

import os
import statistics
import time

from bench_common import train_flops_per_sequence
from benchmarks.implementations import IMPLEMENTATIONS, installed, matmul_peak
from benchmarks.settings import FLAGS, REPO


# === Parts ===

def bench_train(log):
    import gc

    import keras

    from bert_tf.config import BertConfig

    peaks = {dtype: matmul_peak(FLAGS.matmul_size, dtype=dtype) for dtype in _matmul_dtypes()}
    for dtype, peak in peaks.items():
        log(f"matmul peak ({FLAGS.matmul_size}^3 {dtype}): {peak:.1f} GFLOP/s")
    names = ["bert_tf"] + [p for p in FLAGS.peers if installed(p)]
    rows = []
    for config_name in FLAGS.configs:
        config = BertConfig.from_json_file(
            os.path.join(REPO, "configs", f"bert_{config_name}.json"))
        batch = FLAGS.batch_size if config.hidden_size < 768 else FLAGS.base_batch_size
        flops = train_flops_per_sequence(config, FLAGS.seq_length, FLAGS.predictions)
        for jit in FLAGS.jit:
            runs, steps = {}, {}
            for name in names:  # build and warm up each; size the call to ~--seconds
                for policy in FLAGS.precisions:
                    keras.mixed_precision.set_global_policy(policy)
                    keras.utils.set_random_seed(0)
                    run = IMPLEMENTATIONS[name](config, batch, FLAGS.seq_length,
                                                FLAGS.predictions, jit == "on")
                    keras.mixed_precision.set_global_policy("float32")
                    float(run(1))
                    start = time.perf_counter()
                    float(run(1))
                    per_step = time.perf_counter() - start
                    steps[name, policy] = max(1, round(FLAGS.seconds / per_step))
                    float(run(steps[name, policy]))
                    runs[name, policy] = run
            times = {key: [] for key in runs}
            for _ in range(FLAGS.repeats):  # interleaved, so drift hits all alike
                for key, run in runs.items():
                    start = time.perf_counter()
                    float(run(steps[key]))
                    times[key].append((time.perf_counter() - start) / steps[key])
            for name, policy in runs:
                seq_per_s = batch / statistics.median(times[name, policy])
                peak = peaks[_matmul_dtype(policy)]
                rows.append({"config": config_name, "jit": jit, "implementation": name,
                             "precision": policy, "batch": batch,
                             "sequences_per_second": seq_per_s,
                             "mfu": seq_per_s * flops / (peak * 1e9),
                             "seconds_per_step_rounds": times[name, policy]})
                log(f"{config_name:6s} jit={jit:3s} {name:13s} {policy:14s} {seq_per_s:8.2f} "
                    f"seq/s  MFU {rows[-1]['mfu']:.0%}")
            del runs
            gc.collect()
    for dtype in peaks:  # MFU against the best peak seen in this run
        again = matmul_peak(FLAGS.matmul_size, dtype=dtype)
        log(f"matmul peak ({dtype}) again after the runs: {again:.1f} GFLOP/s")
        if again > peaks[dtype]:
            for row in rows:
                if _matmul_dtype(row["precision"]) == dtype:
                    row["mfu"] *= peaks[dtype] / again
            peaks[dtype] = again
    result = {"matmul_peak_gflops": peaks["float32"], "matmul_peaks_gflops": peaks, "rows": rows}
    if "bfloat16" in peaks and "float32" in peaks:
        result["matmul_bf16_ratio"] = peaks["bfloat16"] / peaks["float32"]
        result["precision_ratios"] = _precision_ratios(rows)
        log(f"matmul bfloat16/float32: {result['matmul_bf16_ratio']:.2f}x")
        for row in result["precision_ratios"]:
            rounds = row["bf16_ratio_rounds"]
            log(f"{row['config']:6s} jit={row['jit']:3s} {row['implementation']:13s} "
                f"bf16 step / fp32 step: {row['bf16_ratio']:.2f}x (round by round: median "
                f"{statistics.median(rounds):.2f}x, {min(rounds):.2f}-{max(rounds):.2f}x)")
    return result


def _matmul_dtype(policy):
    """The dtype a Keras policy multiplies in (its compute dtype)."""
    import keras

    return keras.DTypePolicy(policy).compute_dtype


def _matmul_dtypes():
    return ["float32"] + sorted({_matmul_dtype(p) for p in FLAGS.precisions} - {"float32"})


def _precision_ratios(rows):
    """bfloat16 / float32 sequences per second of each (config, jit, implementation): of the
    medians, and round by round (`bf16_ratio_rounds`: the two precisions' calls of one round run
    seconds apart, so the spread of these shows how far this machine's drift moves the ratio)."""
    by_key = {(r["config"], r["jit"], r["implementation"], r["precision"]): r for r in rows}
    ratios = []
    for (config, jit, name, policy), fp32 in by_key.items():
        bf16 = by_key.get((config, jit, name, "mixed_bfloat16"))
        if policy != "float32" or bf16 is None:
            continue
        ratios.append({"config": config, "jit": jit, "implementation": name,
                       "bf16_ratio": bf16["sequences_per_second"] / fp32["sequences_per_second"],
                       "bf16_ratio_rounds": [
                           f / b for f, b in zip(fp32["seconds_per_step_rounds"],
                                                 bf16["seconds_per_step_rounds"])]})
    return ratios


def median_rate(run, count, repeats):
    """count / seconds of run(), the median of `repeats` timed calls after one warm-up."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return count / statistics.median(times)
