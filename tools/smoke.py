"""The first run on new hardware: what bert_tf sees and picks there, then a few steps of
pretraining and finetuning with the strategy and precision it picks, timed.

    python tools/smoke.py                                   # tiny sizes: the CPU run CI does
    python tools/smoke.py --config=base --seq_length=128 --batch_size=256 --steps=40 \\
        --output=smoke.json                                 # a GPU machine or a TPU host

It prints, and writes as JSON with --output:
- devices: TensorFlow's version, its devices (GPU names and compute capabilities), TPU chips on
  the PCI bus, the strategy --distribution_strategy=auto picks and why, the precision
  --mixed_precision=auto picks and why;
- pretraining: the library under run_pretraining (`bert_tf.training.pretraining.run`) for
  --steps steps on synthetic google-format TFRecords (random token ids: a speed check, not a
  model), with steps/s and sequences/s of its last half (compilation excluded), and MFU =
  model FLOPs/s (tools/bench_common.py's count) / the peak;
- finetuning: the library under run_classifier, from that run's checkpoint, one epoch of
  --finetune_steps steps on a synthetic two-class task (one word decides the label), with
  steps/s and examples/s of its last half and its dev accuracy.

The peak is the chips' bf16 peak from Google's pages where known (TPU v5e 197, v5p 459, v6e 918
TFLOP/s per chip: cloud.google.com/tpu/docs/v5e, /v5p-training, /v6e) times the chips in use;
elsewhere (CPUs, GPUs) the best rate of a large matmul measured here in the run's precision on
the first device, times the replicas: MFU then says how close a step comes to what this
machine's matmuls reach. --peak_tflops sets it (and must, on a TPU of another generation). Exit status 0 when every part ran, 1 otherwise.
"""

import argparse
import json
import os
import re
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tools"))

from bench_common import synthetic_batch, train_flops_per_sequence  # noqa: E402

# bf16 peak per chip (TFLOP/s), from Google's TPU pages (the docstring's)
TPU_PEAK_TFLOPS = {"v5e": 197.0, "v5p": 459.0, "v6e": 918.0}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tiny", help="configs/bert_<name>.json")
    parser.add_argument("--seq_length", type=int, default=32)
    parser.add_argument("--predictions", type=int, default=5, help="masked positions per row")
    parser.add_argument("--batch_size", type=int, default=16, help="global batch size")
    parser.add_argument("--steps", type=int, default=8, help="pretraining steps")
    parser.add_argument("--finetune_steps", type=int, default=8, help="finetuning steps")
    parser.add_argument("--distribution_strategy", default="auto")
    parser.add_argument("--mixed_precision", default="auto")
    parser.add_argument("--peak_tflops", type=float, default=None,
                        help="the peak MFU is measured against (all chips together)")
    parser.add_argument("--work_dir", default=None, help="a local folder; default: a temporary one")
    parser.add_argument("--output", default=None, help="write the figures as JSON here")
    return parser.parse_args(argv)


def devices(args):
    import tensorflow as tf

    from bert_tf.training import precision as precision_lib
    from bert_tf.training import strategy as strategies

    gpus = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        gpus.append({"name": details.get("device_name", gpu.name),
                     "compute_capability": details.get("compute_capability")})
    name, why = strategies.choose(args.distribution_strategy)
    return {"tensorflow": tf.__version__,
            "devices": sorted({d.device_type for d in tf.config.list_physical_devices()}),
            "gpus": gpus, "tpu_chips": strategies.local_tpu_chips(),
            "strategy": {"name": name, "why": why},
            "precision": precision_lib.resolve(args.mixed_precision,
                                               devices=precision_lib.training_devices()
                                               ).as_record()}


def write_data(work, config, args):
    """A vocab of the config's size, google-format pretraining shards of random ids, and a
    two-class task whose label is which of two words a text holds."""
    import numpy as np
    import tensorflow as tf

    from bert_tf.data import schema
    from bert_tf.text.tokenization import SPECIAL_TOKENS, write_vocab

    words = [f"w{i}" for i in range(config.vocab_size - len(SPECIAL_TOKENS))]
    vocab = os.path.join(work, "vocab.txt")
    write_vocab(list(SPECIAL_TOKENS) + words, vocab)
    rows = max(4 * args.batch_size, 64)
    features, labels = synthetic_batch(config, rows, args.seq_length, args.predictions)
    google = {"input_ids": features["input_word_ids"], "input_mask": features["input_mask"],
              "segment_ids": features["input_type_ids"],
              "masked_lm_positions": features["masked_lm_positions"],
              "masked_lm_ids": labels["masked_lm_ids"],
              "masked_lm_weights": labels["masked_lm_weights"],
              "next_sentence_labels": labels["next_sentence_labels"]}
    shard = os.path.join(work, "synthetic-00000-of-00001.tfrecord")
    with tf.io.TFRecordWriter(shard) as writer:
        for record in schema.serialize_examples(google):
            writer.write(record)
    rng = np.random.default_rng(0)
    files = {}
    for split, n in (("train", args.batch_size * args.finetune_steps), ("dev", 64)):
        lines = ["text\tlabel"]
        for _ in range(n):
            label = int(rng.integers(2))
            text = list(rng.choice(words[2:], rng.integers(4, max(args.seq_length // 2, 6))))
            text.insert(int(rng.integers(len(text) + 1)), words[label])
            lines.append(" ".join(text) + f"\t{'yes' if label else 'no'}")
        files[split] = os.path.join(work, f"{split}.tsv")
        with open(files[split], "w", encoding="utf-8") as f:  # a local temporary folder
            f.write("\n".join(lines) + "\n")
    return vocab, shard, files


def pretrain(work, config_file, config, shard, args):
    from bert_tf.training.pretraining import PretrainingConfig, run

    lines = []
    half = max(args.steps // 2, 1)
    start = time.monotonic()
    metrics = run(PretrainingConfig(
        bert_config_file=config_file, input_file=shard, output_dir=os.path.join(work, "pretrain"),
        max_seq_length=args.seq_length, max_predictions_per_seq=args.predictions,
        train_batch_size=args.batch_size, num_train_steps=args.steps, num_warmup_steps=0,
        learning_rate=1e-4, save_checkpoints_steps=args.steps, log_steps=half,
        steps_per_loop=half, do_eval=False, distribution_strategy=args.distribution_strategy,
        mixed_precision=args.mixed_precision), log=lambda line: (lines.append(line),
                                                                 print(line, flush=True)))
    sequences = metrics["sequences_per_second"]
    return {"seconds": round(time.monotonic() - start, 1),
            "steps_per_second": sequences / args.batch_size, "sequences_per_second": sequences,
            "flops_per_sequence": train_flops_per_sequence(config, args.seq_length,
                                                           args.predictions),
            "loss": metrics["loss"], "log": lines}


def finetune(work, vocab, files, args):
    from bert_tf.finetuning.classification import ClassificationConfig, run

    lines = []
    start = time.monotonic()
    metrics = run(ClassificationConfig(
        train_file=files["train"], eval_file=files["dev"], text_a_column="text",
        label_column="label", init_checkpoint=os.path.join(work, "pretrain"),
        vocab_file=vocab, do_lower_case=True, output_dir=os.path.join(work, "finetune"),
        max_seq_length=args.seq_length, train_batch_size=args.batch_size, num_train_epochs=1,
        learning_rate=1e-3, log_steps=max(args.finetune_steps // 2, 1),
        distribution_strategy=args.distribution_strategy,
        mixed_precision=args.mixed_precision),
        log=lambda line: (lines.append(line), print(line, flush=True)))
    rates = [float(m.group(1).replace(",", "")) for m in
             (re.search(r"  ([\d,.]+) examples/s", line) for line in lines) if m]
    examples = rates[-1] if rates else float("nan")
    return {"seconds": round(time.monotonic() - start, 1),
            "steps_per_second": examples / args.batch_size, "examples_per_second": examples,
            "accuracy": metrics["accuracy"], "log": lines}


def peak_tflops(found, policy, strategy, args):
    """(peak TFLOP/s of the chips in use, where it comes from)."""
    if args.peak_tflops:
        return args.peak_tflops, "--peak_tflops"
    replicas = strategy["replicas"]
    if strategy["name"] == "tpu":
        generation, chips = next(iter(found["tpu_chips"].items()), (None, 0))
        chips *= strategy["workers"]  # the chips on this host's PCI bus, on every host
        if generation in TPU_PEAK_TFLOPS:
            return TPU_PEAK_TFLOPS[generation] * chips, f"TPU {generation} bf16 peak x {chips}"
        return None, f"no published peak known here for TPU {generation}: give --peak_tflops"
    from benchmarks.implementations import matmul_peak

    dtype = "bfloat16" if "bfloat16" in policy else "float32"
    measured = matmul_peak(4096 if found["gpus"] else 1024, dtype=dtype) / 1e3
    return measured * replicas, f"a {dtype} matmul measured here x {replicas} replica(s)"


def main(argv=None):
    args = parse_args(argv)
    from bert_tf.config import BertConfig, configs_dir

    config_file = os.path.join(configs_dir(), f"bert_{args.config}.json")
    config = BertConfig.from_json_file(config_file)
    work = args.work_dir or tempfile.mkdtemp(prefix="bert_tf_smoke_")
    os.makedirs(work, exist_ok=True)
    result, failed = {"work_dir": work}, None
    try:
        result["devices"] = devices(args)
        print(json.dumps(result["devices"], indent=1))
        vocab, shard, files = write_data(work, config, args)
        result["pretraining"] = pretrain(work, config_file, config, shard, args)
        result["finetuning"] = finetune(work, vocab, files, args)
    except Exception as e:  # the part that failed, named in the report
        failed = f"{type(e).__name__}: {e}"
    if "pretraining" in result:
        from bert_tf import io

        record = io.read_json(os.path.join(work, "pretrain", "run_config.json"))
        peak, source = peak_tflops(result["devices"], record["precision"]["policy"],
                                   record["strategy"], args)
        part = result["pretraining"]
        part.update(peak_tflops=peak, peak_source=source, mfu=(
            part["sequences_per_second"] * part["flops_per_sequence"] / (peak * 1e12)
            if peak else None), strategy=record["strategy"], precision=record["precision"])
    result["failed"] = failed
    report(result, args)
    return 1 if failed else 0


def report(result, args):
    print("\nsmoke:", f"bert_{args.config}, seq {args.seq_length}, batch {args.batch_size}")
    found = result.get("devices", {})
    if found:
        print(f"  devices: {', '.join(found['devices'])}; strategy {found['strategy']['name']} "
              f"({found['strategy']['why']}); precision {found['precision']['policy']}")
    part = result.get("pretraining")
    if part:
        mfu = f"{part['mfu']:.1%}" if part["mfu"] is not None else "n/a"
        print(f"  pretraining: {part['steps_per_second']:.2f} steps/s, "
              f"{part['sequences_per_second']:.1f} sequences/s, MFU {mfu} of "
              f"{part['peak_tflops'] or 0:.2f} TFLOP/s ({part['peak_source']})")
    part = result.get("finetuning")
    if part:
        print(f"  finetuning: {part['steps_per_second']:.2f} steps/s, "
              f"{part['examples_per_second']:.1f} examples/s, dev accuracy "
              f"{part['accuracy']:.3f}")
    if result["failed"]:
        print(f"  FAILED: {result['failed']}")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:  # where the user asks
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
