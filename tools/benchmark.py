"""Side-by-side speed figures: bert_tf against the Model Garden and keras-hub, in one run.

    python tools/benchmark.py [--parts=train,input,data,serving,serving_overhead,finetune,
                                       tasks,packing,time_to_accuracy]
        [--configs=tiny,mini,small,base] [--jit=off,on] [--output=benchmark.json]

Peers (requirements-bench.txt): tf-models-official's BertEncoder + BertPretrainerV2 with its NSP
head, and keras-hub's BertMaskedLM (MLM only); each is timed when installed, interleaved with ours
under the same settings (oneDNN, threads, XLA), so only the ratios measured here count.

  train     sequences/s of a full training step (forward, backward, global-norm clip, AdamW),
            many steps per host call for every implementation, in each of --precisions (Keras
            dtype policies; every implementation, peers included, timed in each, interleaved);
            the bf16 step / fp32 step ratio beside the matmul's. MFU = model FLOPs / the peak
            of a large matmul in the step's dtype, measured in this process. FLOPs per sequence:
            6 * non_embedding_params * seq + 12 * layers * hidden * seq^2 + the MLM head
            (6 * predictions * (hidden^2 + hidden * vocab)).
  input     examples/s of our tf.data pipeline over real TFRecord shards, against bert_tiny's
            train-step consumption.
  data      create_pretraining_data input MB/s against the Model Garden's (tools/benchmark_data.py).
  serving   a text-in classifier on raw strings, per --serving_configs: p50/p99 latency at batch
            1 and sentences/s at batch 32 of our SavedModel, our LiteRT float32 and int8 models,
            our ONNX model (ONNX Runtime) behind Hugging Face's Rust WordPiece tokenizer, and
            transformers' pipeline("text-classification") on torch CPU (the same weights,
            converted); and each one's accuracy on a held-out set. The classifier is finetuned
            here on a synthetic task over the sample corpus's sentences (a sentence holds "good"
            or "bad"), from random weights, so accuracies compare formats, not models.
  serving_overhead
            p50/p99 latency of the text-in export against the encoder alone, batch 1 and 32.
  finetune  examples/s of classifier training on short texts, length-bucketed vs padded.
  tasks     rows/s of question-answering (seq 384 windows) and tagging (seq 128) training on
            rows made from real text, batches by length vs padded to max_seq_length.
  packing   effective throughput on the embedded default's real shards (seq 128): real
            (non-padding) tokens/s and sequences/s of bert_tf packed (4 per row) and unpacked,
            and of the Model Garden's model on the same unpacked batches (tiny, mini, small).

Warm-up calls (tracing, XLA compilation) are excluded; each figure is the median of --repeats.
"""

import json
import os
import statistics
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import bert_tf  # noqa: E402,F401  (the project's environment defaults, for every implementation)
from bench_common import synthetic_batch, train_flops_per_sequence  # noqa: E402,F401

FLAGS = flags.FLAGS
flags.DEFINE_list("parts", ["train", "input", "data", "serving", "finetune", "tasks", "packing",
                            "time_to_accuracy"],
                  "What to measure.")
flags.DEFINE_list("configs", ["tiny", "mini", "small", "base"], "configs/bert_<name>.json")
flags.DEFINE_list("jit", ["off", "on"], "XLA settings for the train step.")
flags.DEFINE_list("precisions", ["float32", "mixed_bfloat16"],
                  "train: Keras dtype policies; every implementation is timed in each, "
                  "interleaved, and the bfloat16/float32 step ratios are reported.")
flags.DEFINE_list("peers", ["model_garden", "keras_hub"], "Peers to time when installed.")
flags.DEFINE_integer("seq_length", 128, "Sequence length.")
flags.DEFINE_integer("batch_size", 32, "Batch size (train step).")
flags.DEFINE_integer("base_batch_size", 8, "Batch size for bert_base and larger.")
flags.DEFINE_integer("predictions", 20, "Masked-LM predictions per sequence.")
flags.DEFINE_float("seconds", 4.0, "Target seconds per timed call (sets the steps per call).")
flags.DEFINE_integer("repeats", 3, "Timed calls per figure; the median is reported.")
flags.DEFINE_integer("matmul_size", 2048, "train: N of the N x N matmul whose speed is the "
                     "peak MFU is measured against.")
flags.DEFINE_string("output", None, "Write the figures as JSON here.")
flags.DEFINE_float("data_megabytes", 11.0, "Corpus size for the data-creation part.")
flags.DEFINE_list("serving_configs", ["mini", "base"], "Configs for the serving parts.")
flags.DEFINE_integer("serving_seq_length", 64, "serving: the classifier's max_seq_length.")
flags.DEFINE_string("finetune_config", "mini", "Config for the finetuning part.")
flags.DEFINE_string("remat_config", "base", "remat: configs/bert_<name>.json.")
flags.DEFINE_integer("remat_seq_length", 512, "remat: sequence length.")
flags.DEFINE_integer("remat_batch_size", 8, "remat: batch size.")
flags.DEFINE_integer("remat_steps", 3, "remat: timed training steps per mode.")
flags.DEFINE_string("remat_child", None, "(internal) run one --remat mode in this process.")
flags.DEFINE_float("tta_seconds", 150.0, "time_to_accuracy: training seconds per pipeline.")
flags.DEFINE_integer("tta_eval_every", 50, "time_to_accuracy: evaluate every this many steps.")
flags.DEFINE_integer("tta_eval_batches", 40, "time_to_accuracy: held-out eval batches.")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# === Environment ===

def environment():
    import tensorflow as tf
    from tensorflow.python.util import _pywrap_util_port

    return {"tensorflow": tf.__version__, "onednn": bool(_pywrap_util_port.IsMklEnabled()),
            "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(default)"),
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or "default",
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads() or "default",
            "cpus": os.cpu_count()}


def matmul_peak(n=2048, repeats=5, dtype="float32"):
    """GFLOP/s of an n x n matmul in `dtype`, ten per host call; the best of `repeats` (a peak)."""
    import tensorflow as tf

    a, b = (tf.cast(tf.random.normal([n, n]), dtype) for _ in range(2))

    @tf.function
    def ten(a, b):
        c = a
        for _ in range(10):
            c = tf.matmul(c, b) * tf.cast(1e-3, c.dtype)
        return tf.reduce_sum(tf.cast(c, tf.float32))

    ten(a, b).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        ten(a, b).numpy()
        times.append(time.perf_counter() - start)
    return 10 * 2 * n ** 3 / min(times) / 1e9


# === The three implementations, each as run(steps) on a repeated batch ===

def ours(config, batch, seq, predictions, jit, remat="none"):
    """bert_tf's Trainer, built as run_pretraining builds it."""
    import tensorflow as tf

    from bert_tf.modeling import build_pretrainer
    from bert_tf.training import optimization
    from bert_tf.training.trainer import Trainer, TrainOptions

    strategy = tf.distribute.get_strategy()
    pretrainer = build_pretrainer(config)
    pretrainer.encoder.set_remat(remat)
    optimizer = optimization.create_optimizer(learning_rate=1e-4, num_train_steps=10 ** 6,
                                              clip_norm=0.0)
    trainer = Trainer(strategy, pretrainer, optimizer, TrainOptions(
        output_dir=tempfile.mkdtemp(), num_train_steps=10 ** 6, jit_compile=jit))
    dataset = tf.data.Dataset.from_tensors(synthetic_batch(config, batch, seq, predictions)
                                           ).repeat()
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    return lambda steps: trainer.train_steps(iterator, steps)


def _peer_loop(model, loss_fn, variables, optimizer, batch, jit):
    """The same loop shape as ours: one host call runs `steps` steps; forward and backward in
    a function that XLA compiles when jit is on; global-norm clip; apply. Like ours (and like
    the Model Garden's task and keras-hub's compiled metrics), each step also counts correct
    masked-LM (and NSP) predictions."""
    import tensorflow as tf

    iterator = None if isinstance(batch, tuple) else batch  # an iterator of real batches

    def next_batch():
        return next(iterator) if iterator is not None else batch

    @tf.function(jit_compile=jit or None)
    def gradients(features, labels):
        with tf.GradientTape() as tape:
            loss, correct = loss_fn(model(features, training=True), labels)
        return tape.gradient(loss, variables), loss, correct

    @tf.function
    def loop(steps):
        total = tf.constant(0.0)
        for _ in tf.range(steps):
            features, labels = next_batch()
            grads, loss, correct = gradients(features, labels)
            grads, _ = tf.clip_by_global_norm(grads, 1.0)
            optimizer.apply_gradients(zip(grads, variables))
            total += loss + 0.0 * correct
        return total

    return lambda steps: loop(tf.constant(steps))


def _mlm_nsp_loss(mlm_logits, nsp_logits, labels):
    """(loss, correct predictions) as google's pretraining loss and accuracy metrics."""
    import tensorflow as tf

    weights = labels["masked_lm_weights"]
    mlm_logits = tf.cast(mlm_logits, tf.float32)
    mlm = tf.keras.losses.sparse_categorical_crossentropy(
        labels["masked_lm_ids"], mlm_logits, from_logits=True)
    loss = tf.reduce_sum(mlm * weights) / (tf.reduce_sum(weights) + 1e-5)
    hit = tf.equal(tf.argmax(mlm_logits, -1, tf.int32), labels["masked_lm_ids"])
    correct = tf.reduce_sum(tf.cast(hit, tf.float32) * weights)
    if nsp_logits is not None:
        nsp_logits = tf.cast(nsp_logits, tf.float32)
        nsp_labels = labels["next_sentence_labels"][:, 0]
        loss += tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
            nsp_labels, nsp_logits, from_logits=True))
        correct += tf.reduce_sum(tf.cast(
            tf.equal(tf.argmax(nsp_logits, -1, tf.int32), nsp_labels), tf.float32))
    return loss, correct


def model_garden(config, batch, seq, predictions, jit, batches=None):
    """tf-models-official: BertEncoder + BertPretrainerV2 with its NSP ClassificationHead, as its
    BERT pretraining task builds them; tf-keras AdamW."""
    import keras
    import tensorflow as tf
    import tf_keras
    from official.modeling import tf_utils
    from official.nlp.modeling import layers, models, networks

    # The Model Garden's models follow tf_keras's global policy; ours and keras-hub's Keras's.
    tf_keras.mixed_precision.set_global_policy(keras.mixed_precision.global_policy().name)
    init = tf_keras.initializers.TruncatedNormal(stddev=config.initializer_range)
    encoder = networks.BertEncoder(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size,
        num_layers=config.num_hidden_layers, num_attention_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size,
        activation=tf_utils.get_activation("gelu"), dropout_rate=0.1,
        attention_dropout_rate=0.1, max_sequence_length=config.max_position_embeddings,
        type_vocab_size=config.type_vocab_size, initializer=init)
    model = models.BertPretrainerV2(
        encoder_network=encoder, mlm_activation=tf_utils.get_activation("gelu"),
        mlm_initializer=init, classification_heads=[layers.ClassificationHead(
            inner_dim=config.hidden_size, num_classes=2, dropout_rate=0.1,
            name="next_sentence")])
    features, labels = synthetic_batch(config, batch, seq, predictions)
    features = {k: tf.constant(v) for k, v in features.items()}
    model(features)
    tf_keras.mixed_precision.set_global_policy("float32")
    optimizer = tf_keras.optimizers.AdamW(1e-4, weight_decay=0.01, epsilon=1e-6)

    def loss_fn(outputs, labels):
        return _mlm_nsp_loss(outputs["mlm_logits"], outputs["next_sentence"], labels)

    return _peer_loop(model, loss_fn, model.trainable_variables, optimizer,
                      batches or (features, labels), jit)


def keras_hub(config, batch, seq, predictions, jit):
    """keras-hub: BertBackbone + BertMaskedLM (MLM only, no NSP head); Keras AdamW."""
    import keras
    import keras_hub as hub
    import tensorflow as tf

    backbone = hub.models.BertBackbone(
        vocabulary_size=config.vocab_size, num_layers=config.num_hidden_layers,
        num_heads=config.num_attention_heads, hidden_dim=config.hidden_size,
        intermediate_dim=config.intermediate_size, dropout=0.1,
        max_sequence_length=config.max_position_embeddings, num_segments=config.type_vocab_size)
    model = hub.models.BertMaskedLM(backbone=backbone, preprocessor=None)
    features, labels = synthetic_batch(config, batch, seq, predictions)
    features = {"token_ids": tf.constant(features["input_word_ids"]),
                "segment_ids": tf.constant(features["input_type_ids"]),
                "padding_mask": tf.constant(features["input_mask"] > 0),
                "mask_positions": tf.constant(features["masked_lm_positions"])}
    # A functional model is built already. (Called eagerly under mixed_bfloat16, keras-hub
    # 0.32's MaskedLMHead adds its float32 bias to bfloat16 logits and fails; in a
    # tf.function, as timed, it runs.)
    optimizer = keras.optimizers.AdamW(1e-4, weight_decay=0.01, epsilon=1e-6)
    optimizer.build(model.trainable_variables)

    def loss_fn(logits, labels):
        return _mlm_nsp_loss(logits, None, labels)

    return _peer_loop(model, loss_fn, model.trainable_variables, optimizer,
                      (features, labels), jit)


IMPLEMENTATIONS = {"bert_tf": ours, "model_garden": model_garden, "keras_hub": keras_hub}


def installed(peer):
    import importlib.util

    return importlib.util.find_spec({"model_garden": "official", "keras_hub": "keras_hub"}[peer]
                                    ) is not None


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


def _median_rate(run, count, repeats):
    """count / seconds of run(), the median of `repeats` timed calls after one warm-up."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return count / statistics.median(times)


def bench_input(log, train_results=None):
    """Our tf.data pipeline over the embedded default's real shards, batch 32, seq 128."""
    import tensorflow as tf

    from bert_tf.data import input_pipeline
    from bert_tf.data.sample_data import make_sample_data

    pattern = make_sample_data(FLAGS.seq_length, FLAGS.predictions, log=log)
    files = tf.io.gfile.glob(pattern)
    batches = 200
    iterator = iter(input_pipeline.make_dataset(files, FLAGS.batch_size, FLAGS.seq_length,
                                                FLAGS.predictions, is_training=True, seed=0))

    def take():
        for _ in range(batches):
            next(iterator)
    rate = _median_rate(take, batches * FLAGS.batch_size, FLAGS.repeats)
    consumed = None
    for row in (train_results or {}).get("rows", []):
        if row["config"] == "tiny" and row["implementation"] == "bert_tf":
            consumed = max(consumed or 0, row["sequences_per_second"])
    result = {"examples_per_second": rate, "files": len(files),
              "bert_tiny_train_sequences_per_second": consumed,
              "ratio": rate / consumed if consumed else None}
    log(f"input pipeline: {rate:,.0f} examples/s from {len(files)} shards"
        + (f"; bert_tiny's train step consumes {consumed:.1f}/s: {rate / consumed:,.0f}x"
           if consumed else ""))
    return result


def bench_data(log):
    """tools/benchmark_data.py: create_pretraining_data against the Model Garden's."""
    import subprocess

    with tempfile.TemporaryDirectory() as work:
        output = os.path.join(work, "data.json")
        subprocess.run([sys.executable, os.path.join(REPO, "tools", "benchmark_data.py"),
                        f"--megabytes={FLAGS.data_megabytes}", f"--output={output}",
                        f"--workdir={work}"], check=True)
        with open(output) as f:
            results = json.load(f)
    log("data creation: " + ", ".join(
        f"{name} {results[name]['mb_per_second']:.2f} MB/s "
        f"({results[name]['ratio_to_model_garden']:.1f}x)"
        for name in results if isinstance(results[name], dict)))
    return results


def _latencies(call, calls):
    call()
    call()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {"p50_ms": times[len(times) // 2], "p99_ms": times[min(len(times) - 1,
                                                                   int(len(times) * 0.99))]}


def bench_serving_overhead(log):
    """The exported text-in model against the exported encoder fed ready inputs."""
    import keras
    import tensorflow as tf

    from bert_tf.config import BertConfig
    from bert_tf.data.sample_data import make_sample_data, sample_prefix
    from bert_tf.export import export_all
    from bert_tf.modeling import build_pretrainer
    from bert_tf.text.tokenization import load_vocab

    make_sample_data(FLAGS.seq_length, FLAGS.predictions, log=log)
    vocab = load_vocab(f"{sample_prefix()}_vocab.txt")
    with open(f"{sample_prefix()}_corpus.txt", encoding="utf-8") as f:
        lines = [line.strip() for line in f if 60 < len(line.strip()) < 300][:64]
    results = {}
    for config_name in FLAGS.serving_configs:
        config = BertConfig.from_json_file(os.path.join(REPO, "configs",
                                                        f"bert_{config_name}.json"))
        keras.utils.set_random_seed(0)
        with tempfile.TemporaryDirectory() as work:
            paths = export_all(build_pretrainer(config), vocab, True, FLAGS.seq_length, work)
            text_model = tf.saved_model.load(paths["bert"]).signatures["serving_default"]
            encoder = tf.saved_model.load(paths["bert_encoder"]).signatures["serving_default"]
            preprocessor = tf.saved_model.load(paths["bert_preprocessor"]
                                               ).signatures["serving_default"]
            for batch in (1, 32):
                texts = tf.constant((lines * 32)[:batch])
                inputs = preprocessor(text=texts)
                calls = 200 if batch == 1 else 40
                text = _latencies(lambda: text_model(text=texts), calls)
                alone = _latencies(lambda: encoder(**inputs), calls)
                ratio = text["p50_ms"] / alone["p50_ms"]
                results[f"{config_name}_batch_{batch}"] = {"text_in": text, "encoder": alone,
                                                           "p50_ratio": ratio}
                log(f"serving {config_name} batch {batch:2d}: text-in p50 {text['p50_ms']:.2f} "
                    f"ms p99 {text['p99_ms']:.2f} ms; encoder alone p50 {alone['p50_ms']:.2f} "
                    f"ms p99 {alone['p99_ms']:.2f} ms; ratio {ratio:.2f}")
    return results


def _serving_task(directory, config_name, log):
    """A classifier finetuned on held-in sentences ("good" or "bad" inserted into the sample
    corpus's lines), its run directory and the held-out (texts, labels)."""
    import random

    import keras
    import tensorflow as tf

    from bert_tf.config import BertConfig
    from bert_tf.data.sample_data import make_sample_data, sample_prefix
    from bert_tf.finetuning.classification import ClassificationConfig, run
    from bert_tf.modeling import build_pretrainer

    make_sample_data(FLAGS.seq_length, FLAGS.predictions, log=log)
    with open(f"{sample_prefix()}_corpus.txt", encoding="utf-8") as f:
        lines = [line.strip() for line in f if 40 < len(line.strip()) < 160]
    rng = random.Random(0)
    rows = []
    for line in rng.sample(lines, 1400):
        words, label = line.split(), rng.choice(["positive", "negative"])
        words.insert(rng.randint(0, len(words)), "good" if label == "positive" else "bad")
        rows.append((" ".join(words).replace("\t", " "), label))
    for name, part in (("train", rows[:1000]), ("dev", rows[1000:])):
        with open(os.path.join(directory, f"{name}.tsv"), "w", encoding="utf-8") as f:
            f.write("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in part))
    config = BertConfig.from_json_file(os.path.join(REPO, "configs", f"bert_{config_name}.json"))
    pretrained = os.path.join(directory, "pretrained")
    os.makedirs(pretrained)
    config.to_json_file(os.path.join(pretrained, "bert_config.json"))
    with open(os.path.join(pretrained, "run_config.json"), "w") as f:
        json.dump({"do_lower_case": True}, f)
    tf.io.gfile.copy(f"{sample_prefix()}_vocab.txt", os.path.join(pretrained, "vocab.txt"))
    keras.utils.set_random_seed(0)
    tf.train.Checkpoint(model=build_pretrainer(config)).write(os.path.join(pretrained, "ckpt-1"))
    output = os.path.join(directory, "classifier")
    start = time.time()
    result = run(ClassificationConfig(
        train_file=os.path.join(directory, "train.tsv"),
        eval_file=os.path.join(directory, "dev.tsv"), output_dir=output,
        init_checkpoint=os.path.join(pretrained, "ckpt-1"),
        max_seq_length=FLAGS.serving_seq_length, train_batch_size=32,
        learning_rate=1e-3 if config.hidden_size < 512 else 1e-4, num_train_epochs=3,
        mixed_precision="float32", log_steps=1000), log=lambda _: None)
    log(f"serving {config_name}: classifier finetuned in {time.time() - start:.0f} s, dev "
        f"accuracy {result['accuracy']:.4f}")
    return output, result["export"], rows[1000:]


def bench_serving(log):
    """Raw strings -> label, through every export of one finetuned classifier and through
    transformers' pipeline on the same weights."""
    import numpy as np

    from bert_tf import run_dir
    from bert_tf.checkpoints.convert import convert
    from bert_tf.export.runs import export_run
    from bert_tf.training.precision import resolve

    threads = os.cpu_count()
    results = {}
    for config_name in FLAGS.serving_configs:
        with tempfile.TemporaryDirectory() as work:
            output, saved_path, held_out = _serving_task(work, config_name, log)
            texts = [t for t, _ in held_out]
            truth = np.array([y == "positive" for _, y in held_out])
            files = run_dir.resolve(directory=output)
            exports = os.path.join(work, "exports")
            lite_dir = export_run(files, exports, format="litert")["classifier_litert"]
            onnx_dir = export_run(files, exports, format="onnx")["classifier_onnx"]
            [bf16_path] = export_run(files, os.path.join(work, "bf16"),
                                     serving_precision="bfloat16").values()
            hf_dir = os.path.join(work, "hf")
            convert("bert_tf", output, "huggingface", hf_dir, log=lambda _: None)
            labels = json.load(open(os.path.join(lite_dir, "litert.json")))["labels"]
            positive = labels.index("positive")
            runners = _serving_runners(saved_path, lite_dir, onnx_dir, hf_dir, threads,
                                       bf16_path)
            row = {}
            for name, (predict, size) in runners.items():
                predicted = np.concatenate([predict(texts[i:i + 32])
                                            for i in range(0, len(texts), 32)])
                accuracy = float(np.mean((predicted == positive) == truth))
                single = _latencies(lambda: predict(texts[:1]), 100)
                batch = texts[:32]
                rate = _median_rate(lambda: predict(batch), 32, 5)
                row[name] = {**single, "batch_32_sentences_per_s": rate, "accuracy": accuracy,
                             "megabytes": size / 2**20}
                log(f"serving {config_name} {name:14s} batch 1 p50 {single['p50_ms']:7.2f} ms "
                    f"p99 {single['p99_ms']:7.2f} ms; batch 32 {rate:8.1f} sentences/s; "
                    f"held-out accuracy {accuracy:.4f}; {size / 2**20:.1f} MB")
            row["int8_vs_saved_model_batch_1"] = (row["saved_model"]["p50_ms"]
                                                  / row["litert_int8"]["p50_ms"])
            row["saved_model_vs_pipeline_batch_32"] = (
                row["saved_model"]["batch_32_sentences_per_s"]
                / row["hf_pipeline"]["batch_32_sentences_per_s"])
            log(f"serving {config_name}: LiteRT int8 batch 1 is "
                f"{row['int8_vs_saved_model_batch_1']:.2f}x the SavedModel's speed; SavedModel "
                f"batch 32 is {row['saved_model_vs_pipeline_batch_32']:.2f}x the pipeline's")
            row["bfloat16_vs_float32_saved_model"] = {
                "batch_1": row["saved_model"]["p50_ms"] / row["saved_model_bf16"]["p50_ms"],
                "batch_32": (row["saved_model_bf16"]["batch_32_sentences_per_s"]
                             / row["saved_model"]["batch_32_sentences_per_s"])}
            log(f"serving {config_name}: --serving_precision=bfloat16 is "
                f"{row['bfloat16_vs_float32_saved_model']['batch_1']:.2f}x float32's speed at "
                f"batch 1, {row['bfloat16_vs_float32_saved_model']['batch_32']:.2f}x at batch 32 "
                f"on this CPU ({resolve('auto').reason})")
            results[config_name] = row
    return results


def _directory_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def _serving_runners(saved_path, lite_dir, onnx_dir, hf_dir, threads, bf16_path=None):
    """{name: (texts -> predicted label ids, bytes on disk)} for every format (and the
    SavedModel exported with --serving_precision=bfloat16)."""
    import numpy as np
    import onnxruntime
    import tensorflow as tf
    import torch
    from tokenizers import BertWordPieceTokenizer
    from transformers import pipeline

    from bert_tf.export import litert

    signature = tf.saved_model.load(saved_path).signatures["serving_default"]
    runners = {"saved_model": (lambda texts: signature(text=tf.constant(texts))[
        "label_id"].numpy(), _directory_bytes(saved_path))}
    if bf16_path:
        bf16 = tf.saved_model.load(bf16_path).signatures["serving_default"]
        runners["saved_model_bf16"] = (lambda texts: bf16(text=tf.constant(texts))[
            "label_id"].numpy(), _directory_bytes(bf16_path))
    for name, file in (("litert_float", litert.FLOAT_FILE), ("litert_int8", litert.INT8_FILE)):
        runner = litert.interpreter(os.path.join(lite_dir, file), num_threads=threads
                                    ).get_signature_runner("serving_default")
        runners[name] = ((lambda run: lambda texts: run(text=np.array(texts, object))[
            "label_id"])(runner), os.path.getsize(os.path.join(lite_dir, file)))
    manifest = json.load(open(os.path.join(onnx_dir, "onnx.json")))
    tokenizer = BertWordPieceTokenizer(os.path.join(onnx_dir, "vocab.txt"),
                                       lowercase=manifest["do_lower_case"])
    tokenizer.enable_truncation(FLAGS.serving_seq_length)
    tokenizer.enable_padding()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(os.path.join(onnx_dir, "model.onnx"), options,
                                           providers=["CPUExecutionProvider"])

    def onnx_predict(texts):
        encoded = tokenizer.encode_batch(texts)
        inputs = {"input_word_ids": np.array([e.ids for e in encoded], np.int32),
                  "input_mask": np.array([e.attention_mask for e in encoded], np.int32),
                  "input_type_ids": np.array([e.type_ids for e in encoded], np.int32)}
        return np.argmax(session.run(["logits"], inputs)[0], -1)

    runners["onnx"] = (onnx_predict, os.path.getsize(os.path.join(onnx_dir, "model.onnx")))
    torch.set_num_threads(threads)
    classify = pipeline("text-classification", model=hf_dir, device=-1,
                        truncation=True, max_length=FLAGS.serving_seq_length)
    label_ids = classify.model.config.label2id
    runners["hf_pipeline"] = (lambda texts: np.array([label_ids[r["label"]] for r in classify(
        texts, batch_size=len(texts))]), _directory_bytes(hf_dir))
    return runners


def bench_finetune(log):
    """Classifier fit() examples/s on short texts: dynamic padding vs padding to max length."""
    import random

    import keras
    import numpy as np

    from bert_tf.config import BertConfig
    from bert_tf.data.sample_data import make_sample_data, sample_prefix
    from bert_tf.finetuning import classification as classifier
    from bert_tf.finetuning.labelled_files import Example
    from bert_tf.modeling import BertEncoder, build_classifier
    from bert_tf.text.preprocessing import Preprocessor
    from bert_tf.text.tokenization import load_vocab

    make_sample_data(FLAGS.seq_length, FLAGS.predictions, log=log)
    vocab = load_vocab(f"{sample_prefix()}_vocab.txt")
    with open(f"{sample_prefix()}_corpus.txt", encoding="utf-8") as f:
        words = f.read(2_000_000).split()
    rng = random.Random(0)
    examples = []  # short texts, 5-25 words, as in sentiment or intent sets
    for _ in range(1024):
        start = rng.randrange(len(words) - 30)
        examples.append(Example(" ".join(words[start:start + rng.randint(5, 25)]), None, "x",
                                len(examples) + 1))
    ids = np.array([rng.randint(0, 1) for _ in examples])
    config = BertConfig.from_json_file(os.path.join(REPO, "configs",
                                                    f"bert_{FLAGS.finetune_config}.json"))
    preprocessor = Preprocessor(vocab, True, FLAGS.seq_length)
    results = {}
    for dynamic in (False, True):
        keras.utils.set_random_seed(0)
        model = build_classifier(BertEncoder(config), 2)
        model.compile(optimizer=keras.optimizers.AdamW(2e-5),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        data = classifier.make_dataset(examples, ids, preprocessor, 32, shuffle=True, seed=0,
                                       dynamic_padding=dynamic)  # as run_classifier trains
        steps = len(examples) // 32  # a pass's worth of the endless training batches
        rate = _median_rate(lambda: model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0),
                            steps * 32, FLAGS.repeats)
        results["dynamic_padding" if dynamic else "padded_to_max"] = rate
        log(f"finetune bert_{FLAGS.finetune_config} seq {FLAGS.seq_length}, short texts, "
            f"{'dynamic padding' if dynamic else 'padded to max'}: {rate:.1f} examples/s")
    results["ratio"] = results["dynamic_padding"] / results["padded_to_max"]
    log(f"finetune: dynamic padding {results['ratio']:.2f}x padded")
    return results


def bench_tasks(log):
    """fit() examples/s of the question-answering (seq 384 windows) and tagging (seq 128)
    models as run_squad and run_tagging train them, batches by length against batches padded to
    max_seq_length, for bert_tiny and bert_mini. The rows are made by the tasks' own feature
    code from real text (the sample corpus): tagging rows are its sentences; question-answering
    examples are a question of 8 words before a context of about 120 words (SQuAD's mean),
    windowed with doc_stride 128."""
    import random

    import keras
    import numpy as np
    import tensorflow as tf

    from bert_tf.config import BertConfig
    from bert_tf.data.sample_data import make_sample_data, sample_prefix
    from bert_tf.finetuning import squad
    from bert_tf.finetuning.batching import batch_by_length
    from bert_tf.finetuning.tagged_files import Sentence
    from bert_tf.finetuning.tagging import make_features
    from bert_tf.modeling import BertEncoder, build_question_answerer, build_tagger
    from bert_tf.text.tokenization import WordpieceTokenizer, load_vocab

    make_sample_data(FLAGS.seq_length, FLAGS.predictions, log=log)
    tokenizer = WordpieceTokenizer(load_vocab(f"{sample_prefix()}_vocab.txt"), True)
    with open(f"{sample_prefix()}_corpus.txt", encoding="utf-8") as f:
        lines = [line.split() for line in f if len(line.split()) >= 3][:20_000]
    rng, n, batch = random.Random(0), 512, 32
    sentences = [Sentence(words, ["O"] * len(words), i)
                 for i, words in enumerate(rng.sample(lines, n))]
    tagging = make_features(sentences, tokenizer, ["O"], 128)
    tagging_rows = tf.data.Dataset.from_tensor_slices(
        (tagging.inputs(), tagging.labels, tagging.weights))
    examples = []
    for i in range(n):
        start = rng.randrange(len(lines) - 40)
        words = [w for line in lines[start:start + 40] for w in line][:rng.randint(60, 180)]
        answer = rng.randrange(len(words))
        context = " ".join(words)
        starts = [0]
        for word in words[:-1]:
            starts.append(starts[-1] + len(word) + 1)
        examples.append(squad.SquadExample(
            str(i), " ".join(rng.choice(lines)[:8]), context, words, starts, [words[answer]],
            answer, answer, words[answer]))
    qa = squad.make_features(examples, tokenizer, 384, 128, 64, True)
    qa_rows = tf.data.Dataset.from_tensor_slices((qa.inputs(), {
        "start_logits": qa.start_positions, "end_logits": qa.end_positions}))
    lengths = {"tagging": tagging.input_mask.sum(1), "question_answering": qa.input_mask.sum(1)}
    for task, values in lengths.items():
        log(f"{task}: {len(values)} rows, tokens per row mean {values.mean():.0f}, "
            f"p90 {np.percentile(values, 90):.0f}")

    results = {}
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    for name in ("tiny", "mini"):
        config = BertConfig.from_json_file(os.path.join(REPO, "configs", f"bert_{name}.json"))
        for task, rows, seq in (("question_answering", qa_rows, 384),
                                ("tagging", tagging_rows, 128)):
            count = len(lengths[task])
            for dynamic in (False, True):
                keras.utils.set_random_seed(0)
                if task == "question_answering":
                    model = build_question_answerer(BertEncoder(config))
                    model.compile(optimizer=keras.optimizers.AdamW(5e-5),
                                  loss={"start_logits": loss, "end_logits": loss},
                                  loss_weights={"start_logits": 0.5, "end_logits": 0.5})
                else:
                    model = build_tagger(BertEncoder(config), 9)
                    model.compile(optimizer=keras.optimizers.AdamW(5e-5), loss=loss,
                                  weighted_metrics=["accuracy"])
                data = batch_by_length(rows, batch, seq, shuffle=True, seed=0,
                                       dynamic_padding=dynamic, num_rows=count)
                steps = count // batch  # a pass's worth of the endless training batches
                model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)  # trace, warm up
                rate = _median_rate(lambda: model.fit(data, epochs=1, steps_per_epoch=steps,
                                                      verbose=0), steps * batch, FLAGS.repeats)
                key = f"{task}_{name}_{'by_length' if dynamic else 'padded'}"
                results[key] = rate
                log(f"{task} bert_{name} seq {seq} batch {batch}, fit(), "
                    f"{'batches by length' if dynamic else 'padded to max'}: "
                    f"{rate:.1f} rows/s")
            results[f"{task}_{name}_ratio"] = (results[f"{task}_{name}_by_length"]
                                               / results[f"{task}_{name}_padded"])
            log(f"{task} bert_{name}: by length {results[f'{task}_{name}_ratio']:.2f}x padded")
    return results


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
    datasets = {"bert_tf": input_pipeline.make_dataset(files, batch, seq, predictions, seed=0),
                "bert_tf_packed": input_pipeline.make_dataset(files, batch, seq, predictions,
                                                              seed=0, packing=pack)}
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
        train = input_pipeline.make_dataset(train_files, batch, seq, predictions, seed=0,
                                            packing=pack, masking_rules=rules)
        evaluation = input_pipeline.make_dataset(eval_files, 32, seq, predictions, seed=1,
                                                 masking_rules=rules)
        if pack:
            evaluation = evaluation.map(packing.as_one_sequence_rows)
        iterator = iter(train)
        trainer.train_sums(iterator, 1)  # tracing, not timed
        seconds, sequences, curve = 0.0, 0.0, []
        while seconds < FLAGS.tta_seconds:
            start = time.perf_counter()
            sums = trainer.train_sums(iterator, FLAGS.tta_eval_every)
            seconds += time.perf_counter() - start
            sequences += sums["next_sentence_count"]
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


def _remat_child(mode):
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
            [sys.executable, os.path.abspath(__file__), f"--remat_child={mode}",
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


def main(argv):
    del argv
    if FLAGS.remat_child:
        return _remat_child(FLAGS.remat_child)
    results = {"environment": environment()}
    print(json.dumps(results["environment"]))
    parts = {"train": bench_train, "input": lambda log: bench_input(log, results.get("train")),
             "data": bench_data, "serving": bench_serving,
             "serving_overhead": bench_serving_overhead, "finetune": bench_finetune,
             "tasks": bench_tasks, "packing": bench_packing,
             "time_to_accuracy": bench_time_to_accuracy, "remat": bench_remat}
    for part in FLAGS.parts:
        if part in parts:
            results[part] = parts[part](print)
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    app.run(main)
