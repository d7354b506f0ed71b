"""Train-step speed on Keras's JAX backend: bert_tf's pretrainer beside keras-hub's BertMaskedLM.

    python tools/gpu_benchmark.py                                  # one GPU: base, large x 128,
                                                                   # 512 x bf16, fp32 (< 5 min)
    python tools/gpu_benchmark.py --configs=tiny --steps=2         # a CPU dry run (CI does it)
    python tools/gpu_benchmark.py --configs=large --seq_lengths=128 --precisions=bf16 \\
        --output=gpu.json
    python tools/gpu_benchmark.py --configs=modernbert_base --seq_lengths=512 \\
        --precisions=bf16 --peers=                                 # attention: einsum vs fused

For the machines that have JAX but not TensorFlow: it needs only jax (with its CUDA plugin),
keras, numpy and this source tree (bert_tf's model code is keras.ops only, and nothing here
imports TensorFlow); keras-hub, the peer, is timed when it imports. Both models take the same
synthetic batch (full-length sequences, `--predictions` masked positions) and are trained with
Keras's AdamW through `compile(jit_compile=True)` + `train_on_batch`, so the whole step is one
XLA program for both; ours also has the next-sentence head, keras-hub's BertMaskedLM has none.
The two are timed in alternating windows (`--rounds`), so drift hits both alike.

Ours is timed once per `--attention` implementation (bert_tf.modeling.attention): "einsum"
(keras.ops, what every backend runs) and "auto" (on a GPU, cuDNN's flash attention for bf16; on
a TPU, the splash kernel), or a kernel by name. A fused kernel has no attention dropout, so
"auto" takes it only where attention_probs_dropout_prob is 0 (ModernBERT's configs;
`--attention_dropout=0` for the others); where "auto" comes to "einsum", it is not timed twice.

Reported per (config, sequence length, precision, implementation): sequences/s (the median of
the rounds), and MFU = model FLOPs/s (tools/bench_common.py's count: 6 * non-embedding
parameters * tokens + attention + the MLM head) / the peak of a large bf16 matmul measured in
this process (for fp32 runs too, so MFU compares precisions on one scale). Anchor: NVIDIA's
published BERT-large pretraining at seq 128 on one A100 (80 GB), mixed precision: 486 seq/s
with TensorFlow 2, 580 with PyTorch.
"""

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tools"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402

from bench_common import synthetic_batch, train_flops_per_sequence  # noqa: E402
from bert_tf.config import BertConfig  # noqa: E402
from bert_tf.modeling import attention, build_pretrainer  # noqa: E402

POLICIES = {"bf16": "mixed_bfloat16", "fp32": "float32"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="base,large",
                        help="configs/<name>.json or configs/bert_<name>.json")
    parser.add_argument("--seq_lengths", default="128,512")
    parser.add_argument("--precisions", default="bf16,fp32", help="bf16 (mixed), fp32")
    parser.add_argument("--batch_sizes", default="128:64,512:16",
                        help="seq:batch pairs; the batch of each sequence length")
    parser.add_argument("--predictions", default="128:20,512:80",
                        help="seq:masked positions (google's max_predictions_per_seq)")
    parser.add_argument("--steps", type=int, default=20, help="Timed steps per round.")
    parser.add_argument("--rounds", type=int, default=3, help="Alternating rounds per figure.")
    parser.add_argument("--peers", default="keras_hub", help="keras_hub, or '' for none.")
    parser.add_argument("--attention", default="einsum,auto",
                        help="Our attention implementations to time: "
                        + ", ".join(attention.IMPLEMENTATIONS))
    parser.add_argument("--attention_dropout", type=float, default=None,
                        help="attention_probs_dropout_prob for every model (default: the "
                        "config's); fused kernels need 0")
    parser.add_argument("--output", default=None, help="Write the figures as JSON here.")
    args = parser.parse_args(argv)
    for name in ("configs", "seq_lengths", "precisions", "peers", "attention"):
        setattr(args, name, [v for v in getattr(args, name).split(",") if v])
    args.seq_lengths = [int(s) for s in args.seq_lengths]
    for name in ("batch_sizes", "predictions"):
        pairs = dict(p.split(":") for p in getattr(args, name).split(","))
        setattr(args, name, {int(k): int(v) for k, v in pairs.items()})
    unknown = [p for p in args.precisions if p not in POLICIES]
    if unknown:
        parser.error(f"--precisions: unknown {unknown}; choose from {list(POLICIES)}")
    for name in args.attention:
        try:
            attention.check_implementation(name)
        except ValueError as e:
            parser.error(f"--attention: {e}")
    return args


def matmul_peak():
    """FLOP/s of a jitted bf16 matmul (8192^3 on an accelerator, 1024^3 on a CPU), best of 5."""
    n = 8192 if jax.default_backend() != "cpu" else 1024
    a = jnp.ones((n, n), jnp.bfloat16)
    matmul = jax.jit(lambda x, y: x @ y)
    matmul(a, a).block_until_ready()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        matmul(a, a).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2 * n ** 3 / min(times)


def load_config(name, attention_dropout=None):
    """configs/<name>.json or configs/bert_<name>.json (from_dict: from_json_file reads
    through tf.io.gfile), with `attention_dropout` as attention_probs_dropout_prob if given."""
    path = os.path.join(REPO, "configs", f"{name}.json")
    if not os.path.exists(path):
        path = os.path.join(REPO, "configs", f"bert_{name}.json")
    with open(path, encoding="utf-8") as f:
        values = json.load(f)
    if attention_dropout is not None:
        values["attention_probs_dropout_prob"] = attention_dropout
    return BertConfig.from_dict(values, source=path)


def optimizer():
    return keras.optimizers.AdamW(1e-4, weight_decay=0.01, epsilon=1e-6, clipnorm=None)


def ours(config, features, labels, implementation="einsum"):
    """bert_tf's BertPretrainer with its own losses (masked-LM, + next sentence where the
    config has segments), attention by `implementation`."""
    model = build_pretrainer(config, next_sentence=config.type_vocab_size >= 2)
    model.encoder.set_attention(implementation)
    model.compile(optimizer=optimizer(), jit_compile=True)
    return lambda: model.train_on_batch(features, labels)


def keras_hub_peer(config, features, labels):
    """keras-hub's BertBackbone + BertMaskedLM (masked-LM only)."""
    import keras_hub

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=config.vocab_size, num_layers=config.num_hidden_layers,
        num_heads=config.num_attention_heads, hidden_dim=config.hidden_size,
        intermediate_dim=config.intermediate_size, dropout=config.hidden_dropout_prob,
        max_sequence_length=config.max_position_embeddings, num_segments=config.type_vocab_size)
    model = keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=None)
    model.compile(optimizer=optimizer(), jit_compile=True,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  weighted_metrics=[])
    x = {"token_ids": features["input_word_ids"], "segment_ids": features["input_type_ids"],
         "padding_mask": features["input_mask"] > 0,
         "mask_positions": features["masked_lm_positions"]}
    return lambda: model.train_on_batch(x, labels["masked_lm_ids"],
                                        sample_weight=labels["masked_lm_weights"])


def implementations(peers, attentions, log):
    """{name: make(config, features, labels) -> step}: ours once per attention
    implementation ("bert_tf" with einsum, "bert_tf/<name>" otherwise), then the peers."""
    found = {"bert_tf" if name == "einsum" else f"bert_tf/{name}":
             (lambda name: lambda *a: ours(*a, implementation=name))(name)
             for name in attentions}
    for peer in peers:
        try:
            import keras_hub  # noqa: F401
            found[peer] = keras_hub_peer
        except Exception as e:  # e.g. keras-hub not carried to this machine
            log(f"{peer}: not timed ({type(e).__name__}: {e})")
    return found


def time_rounds(runs, steps, rounds):
    """{name: median seconds per step}, the implementations' windows alternating."""
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, step in runs.items():
            start = time.perf_counter()
            for _ in range(steps):
                step()  # returns host floats: the step has finished
            times[name].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv=None, log=print):
    args = parse_args(argv)
    began = time.perf_counter()
    device = jax.devices()[0]
    peak = matmul_peak()
    log(f"device: {device.platform} {device.device_kind}; jax {jax.__version__}, "
        f"keras {keras.__version__}; bf16 matmul peak {peak / 1e12:.1f} TFLOP/s")
    makers = implementations(args.peers, args.attention, log)
    rows = []
    for config_name in args.configs:
        config = load_config(config_name, args.attention_dropout)
        for seq in args.seq_lengths:
            batch, predictions = args.batch_sizes[seq], args.predictions[seq]
            features, labels = synthetic_batch(config, batch, seq, predictions)
            flops = train_flops_per_sequence(config, seq, predictions)
            for precision in args.precisions:
                keras.config.set_dtype_policy(POLICIES[precision])
                runs, compile_seconds, kernels = {}, {}, {}
                for name, make in makers.items():
                    if name.startswith("bert_tf/"):  # what the implementation comes to here
                        kernels[name] = attention.choose(
                            name.split("/", 1)[1], keras.config.dtype_policy().compute_dtype,
                            seq, config.attention_probs_dropout_prob, training=True)
                        if kernels[name] == "einsum" and "bert_tf" in makers:
                            log(f"{config_name} seq {seq} {precision}: {name} comes to "
                                f"einsum here; not timed twice")
                            continue
                    keras.utils.set_random_seed(0)
                    start = time.perf_counter()
                    runs[name] = make(config, features, labels)
                    runs[name]()  # traces and compiles
                    runs[name]()
                    compile_seconds[name] = time.perf_counter() - start
                per_step = time_rounds(runs, args.steps, args.rounds)
                for name, seconds in per_step.items():
                    rate = batch / seconds
                    rows.append({"config": config_name, "seq_length": seq, "batch": batch,
                                 "precision": precision, "implementation": name,
                                 "attention": kernels.get(name, "einsum"
                                                          if name == "bert_tf" else None),
                                 "sequences_per_second": rate, "mfu": rate * flops / peak,
                                 "warmup_seconds": compile_seconds[name]})
                    log(f"{config_name:6s} seq {seq:4d} batch {batch:3d} {precision} "
                        f"{name:10s} {rate:9.1f} seq/s  MFU {rate * flops / peak:6.1%}  "
                        f"(warm-up {compile_seconds[name]:.0f}s)")
                del runs
                keras.backend.clear_session()
    keras.config.set_dtype_policy("float32")
    result = {"device": f"{device.platform} {device.device_kind}", "jax": jax.__version__,
              "keras": keras.__version__, "bf16_matmul_peak_flops": peak, "rows": rows,
              "seconds": time.perf_counter() - began}
    log(f"total {result['seconds']:.0f}s")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
