"""packing and time_to_accuracy: packed against unpacked sequences on the embedded default's
real shards."""

import dataclasses
import os
import statistics
import tempfile
import time

from benchmarks.implementations import installed, model_garden
from benchmarks.settings import FLAGS, REPO


def _real_data_runs(config, batch, files, jit, seq=128, predictions=20):
    """run(steps) callables on the sample corpus's shards (seq 128, 20 predictions, or those
    given) for bert_tf unpacked, bert_tf packed, and the Model Garden's model fed the unpacked
    batches, with the average real tokens and sequences in one of each one's batches."""
    import numpy as np
    import tensorflow as tf

    from bert_tf.data import input_pipeline, packing
    from bert_tf.modeling import build_pretrainer
    from bert_tf.training import optimization
    from bert_tf.training.trainer import Trainer, TrainOptions

    pack = (4, packing.default_predictions_per_row(predictions, 4))
    options = input_pipeline.PipelineOptions(seed=0)
    datasets = {"bert_tf": input_pipeline.make_dataset(files, batch, seq, predictions, options),
                "bert_tf_packed": input_pipeline.make_dataset(
                    files, batch, seq, predictions, dataclasses.replace(options, packing=pack))}
    datasets["model_garden"] = datasets["bert_tf"]
    per_batch = {}
    for name, dataset in datasets.items():
        sample = list(dataset.take(300))  # about what the timed calls consume
        per_batch[name] = {
            "tokens": float(np.mean([(f["input_mask"].numpy() > 0).sum() for f, _ in sample])),
            "sequences": float(np.mean([l["next_sentence_weights"].numpy().sum()
                                        if "next_sentence_weights" in l else batch
                                        for _, l in sample]))}
    runs = {}
    strategy = tf.distribute.get_strategy()
    for name in ("bert_tf", "bert_tf_packed"):
        pretrainer = build_pretrainer(config, packed=name.endswith("packed"))
        optimizer = optimization.create_optimizer(learning_rate=1e-4, num_train_steps=10 ** 6,
                                              clip_norm=0.0)
        trainer = Trainer(strategy, pretrainer, optimizer, TrainOptions(
            output_dir=tempfile.mkdtemp(), num_train_steps=10 ** 6, jit_compile=jit))
        iterator = iter(strategy.experimental_distribute_dataset(datasets[name]))
        runs[name] = (lambda t, i: lambda steps: t.train_steps(i, steps))(trainer, iterator)
    if installed("model_garden"):
        iterator = iter(datasets["model_garden"])
        fixed = model_garden(config, batch, seq, predictions, jit, batches=iterator)
        runs["model_garden"] = fixed
    return runs, per_batch


def bench_packing(log):
    """Effective throughput (real tokens/s, sequences/s) on real data: bert_tf packed and
    unpacked against the Model Garden's unpacked pipeline, same model and batch size, timed
    interleaved."""
    import gc

    import keras

    from bert_tf.config import BertConfig
    from bert_tf.data.sample_data import make_sample_data

    from bert_tf import io

    seq, predictions = FLAGS.seq_length, FLAGS.predictions  # 128 and 20 unless given
    files = io.expand_file_patterns(make_sample_data(seq, predictions, lambda *_: None))
    rows = []
    for config_name in [c for c in FLAGS.configs if c in ("tiny", "mini", "small")]:
        config = BertConfig.from_json_file(os.path.join(REPO, "configs",
                                                        f"bert_{config_name}.json"))
        keras.utils.set_random_seed(0)
        runs, per_batch = _real_data_runs(config, FLAGS.batch_size, files, jit=False, seq=seq,
                                          predictions=predictions)
        steps = {}
        for name, run in runs.items():
            float(run(1))
            start = time.perf_counter()
            float(run(2))
            steps[name] = max(1, round(FLAGS.seconds / ((time.perf_counter() - start) / 2)))
        times = {name: [] for name in runs}
        for _ in range(FLAGS.repeats):
            for name, run in runs.items():
                start = time.perf_counter()
                float(run(steps[name]))
                times[name].append((time.perf_counter() - start) / steps[name])
        result = {"config": config_name}
        for name in runs:
            step = statistics.median(times[name])
            result[name] = {"rows_per_second": FLAGS.batch_size / step,
                            "effective_tokens_per_second": per_batch[name]["tokens"] / step,
                            "effective_sequences_per_second": per_batch[name]["sequences"] / step,
                            "fill": per_batch[name]["tokens"] / (FLAGS.batch_size * seq)}
            log(f"packing {config_name:5s} {name:15s} {result[name]['rows_per_second']:7.1f} "
                f"rows/s {result[name]['effective_tokens_per_second']:9.0f} real tokens/s "
                f"{result[name]['effective_sequences_per_second']:7.1f} sequences/s "
                f"fill {result[name]['fill']:.0%}")
        base = result.get("model_garden") or result["bert_tf"]
        for name in ("bert_tf", "bert_tf_packed"):
            result[f"{name}_effective_tokens_ratio"] = (
                result[name]["effective_tokens_per_second"] / base["effective_tokens_per_second"])
            result[f"{name}_effective_sequences_ratio"] = (
                result[name]["effective_sequences_per_second"]
                / base["effective_sequences_per_second"])
        log(f"packing {config_name:5s} packed/{'model_garden' if 'model_garden' in result else 'unpacked'}: "
            f"{result['bert_tf_packed_effective_tokens_ratio']:.2f}x real tokens/s, "
            f"{result['bert_tf_packed_effective_sequences_ratio']:.2f}x sequences/s")
        rows.append(result)
        del runs
        gc.collect()
    return {"seq_length": seq, "batch_size": FLAGS.batch_size, "rows": rows}


def _interpolate_time(curve, accuracy):
    """Training seconds at which a curve of (seconds, ..., accuracy) points first reaches
    `accuracy` (linear between evaluations), or None."""
    previous = (0.0, 0.0)
    for point in curve:
        if point["masked_lm_accuracy"] >= accuracy:
            (t0, a0), (t1, a1) = previous, (point["seconds"], point["masked_lm_accuracy"])
            return t0 + (t1 - t0) * (accuracy - a0) / max(a1 - a0, 1e-9)
        previous = (point["seconds"], point["masked_lm_accuracy"])
    return None


def bench_time_to_accuracy(log):
    """Eval masked-LM accuracy against training time and sequences seen, packed vs unpacked:
    bert_tiny on the sample corpus's dynamic-masking shards, 3 shards trained on, the 4th held
    out (read unpacked, with the same masks for both), same optimizer and batch of rows, each
    pipeline trained for --tta_seconds (one after the other) and evaluated every
    --tta_eval_every steps (evaluation time not counted)."""
    import keras
    import tensorflow as tf

    from bert_tf import io
    from bert_tf.config import BertConfig
    from bert_tf.data import input_pipeline, packing
    from bert_tf.data.sample_data import make_sample_data
    from bert_tf.modeling import build_pretrainer
    from bert_tf.training import optimization
    from bert_tf.training import precision as precision_lib
    from bert_tf.data.pretraining_data import masking_rules
    from bert_tf.training.trainer import Trainer, TrainOptions

    seq, predictions, batch = 128, 20, 16
    files = io.expand_file_patterns(make_sample_data(seq, predictions, lambda *_: None,
                                                     dynamic_masking=True))
    train_files, eval_files = files[:-1], files[-1:]
    manifest = input_pipeline.check_data(files, seq, predictions)
    rules = masking_rules(files, manifest)
    config = BertConfig.from_json_file(os.path.join(REPO, "configs", "bert_tiny.json"))
    policy = precision_lib.resolve("auto").policy
    keras.mixed_precision.set_global_policy(policy)
    curves = {}
    for name, pack in (("unpacked", None), ("packed", (4, predictions))):
        keras.utils.set_random_seed(0)
        strategy = tf.distribute.get_strategy()
        pretrainer = build_pretrainer(config, packed=pack is not None)
        optimizer = optimization.create_optimizer(
            learning_rate=2e-3, num_train_steps=10 ** 6, num_warmup_steps=60,
            end_learning_rate=2e-3, mixed_precision=policy)
        trainer = Trainer(strategy, pretrainer, optimizer, TrainOptions(
            output_dir=tempfile.mkdtemp(), num_train_steps=10 ** 6))
        train = input_pipeline.make_dataset(train_files, batch, seq, predictions,
                                            input_pipeline.PipelineOptions(
                                                seed=0, packing=pack, masking_rules=rules))
        evaluation = input_pipeline.make_dataset(eval_files, 32, seq, predictions,
                                                 input_pipeline.PipelineOptions(
                                                     seed=1, masking_rules=rules))
        if pack:
            evaluation = evaluation.map(packing.as_one_sequence_rows)
        iterator = iter(train)
        trainer.train_sums(iterator, 1)  # tracing, not timed
        seconds, sequences, curve = 0.0, 0.0, []
        while seconds < FLAGS.tta_seconds:
            start = time.perf_counter()
            sums = trainer.train_sums(iterator, FLAGS.tta_eval_every)
            seconds += time.perf_counter() - start
            sequences += sums["sequence_count"]
            metrics = trainer.evaluate(evaluation, FLAGS.tta_eval_batches)
            curve.append({"seconds": round(seconds, 2), "sequences": int(sequences),
                          "steps": trainer.step - 1,
                          "masked_lm_accuracy": metrics["masked_lm_accuracy"],
                          "next_sentence_accuracy": metrics["next_sentence_accuracy"]})
            log(f"time_to_accuracy {name:8s} {seconds:6.1f} s {int(sequences):7d} sequences "
                f"eval masked_lm_accuracy {metrics['masked_lm_accuracy']:.4f} "
                f"next_sentence_accuracy {metrics['next_sentence_accuracy']:.4f}")
        curves[name] = curve
    # The unpacked run's final accuracy: when each reached it, in seconds and in sequences.
    target = curves["unpacked"][-1]["masked_lm_accuracy"]
    reached = {name: _interpolate_time(curve, target) for name, curve in curves.items()}
    result = {"config": "tiny", "batch_rows": batch, "policy": policy, "target": target,
              "seconds_to_target": reached, "curves": curves}
    if reached["packed"]:
        result["time_to_accuracy_ratio"] = reached["unpacked"] / reached["packed"]
        log(f"time_to_accuracy: unpacked reaches {target:.4f} in {reached['unpacked']:.0f} s, "
            f"packed in {reached['packed']:.0f} s ({result['time_to_accuracy_ratio']:.2f}x)")
    return result
