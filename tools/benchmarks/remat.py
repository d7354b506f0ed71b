"""remat: peak memory and step time of training with each --remat mode, one process each."""

import json
import os
import sys
import time

from benchmarks.implementations import ours
from benchmarks.settings import FLAGS, REPO, SCRIPT


def remat_child(mode):
    """One --remat mode's training steps in this process: its step time and peak RSS."""
    import resource

    import keras

    from bert_tf.config import BertConfig
    from bert_tf.training import precision as precision_lib

    config = BertConfig.from_json_file(
        os.path.join(REPO, "configs", f"bert_{FLAGS.remat_config}.json"))
    policy = precision_lib.resolve("auto", None).policy
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    run = ours(config, FLAGS.remat_batch_size, FLAGS.remat_seq_length, FLAGS.predictions,
               False, remat=mode)
    float(run(1))  # traced and warmed up
    start = time.perf_counter()
    loss = float(run(FLAGS.remat_steps))
    seconds = (time.perf_counter() - start) / FLAGS.remat_steps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB -> GiB
    print(json.dumps({"remat": mode, "policy": policy, "step_seconds": seconds,
                      "peak_rss_gib": peak, "loss": loss / FLAGS.remat_steps}))


def bench_remat(log):
    """Peak memory and step time of training with --remat none, layers and full (each in its
    own process, so that each peak is its own), with their ratios to none."""
    import subprocess

    rows = []
    for mode in ("none", "layers", "full"):
        result = subprocess.run(
            [sys.executable, SCRIPT, f"--remat_child={mode}",
             f"--remat_config={FLAGS.remat_config}", f"--remat_steps={FLAGS.remat_steps}",
             f"--remat_seq_length={FLAGS.remat_seq_length}",
             f"--remat_batch_size={FLAGS.remat_batch_size}", f"--predictions={FLAGS.predictions}"],
            capture_output=True, text=True, check=True)
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    base = rows[0]
    for row in rows:
        row["memory_vs_none"] = row["peak_rss_gib"] / base["peak_rss_gib"]
        row["time_vs_none"] = row["step_seconds"] / base["step_seconds"]
        log(f"remat={row['remat']:6s} bert_{FLAGS.remat_config} seq {FLAGS.remat_seq_length} "
            f"batch {FLAGS.remat_batch_size} ({row['policy']}): step {row['step_seconds']:.2f} s "
            f"({row['time_vs_none']:.2f}x), peak RSS {row['peak_rss_gib']:.2f} GiB "
            f"({row['memory_vs_none']:.2f}x), loss {row['loss']:.4f}")
    return rows
