"""serving and serving_overhead: a text-in classifier in every format against transformers'
pipeline, torch's dynamic int8, and ONNX Runtime in float32 and dynamic int8, on the same
sentences; with all-MiniLM-L6-v2's real weights on a real sentence task ("minilm") and random
weights of a config's shape."""

import copy
import json
import os
import tempfile
import time

from benchmarks.settings import FLAGS, REPO
from real_weights import reference_or_library, write_tsv
from benchmarks.train import median_rate


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
        if config_name == "minilm":  # the overhead is a shape's, timed on random weights
            continue
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


def _synthetic_rows(log):
    """Held-in sentences of the sample corpus with "good" or "bad" inserted: (text, label)."""
    import random

    from bert_tf.data.sample_data import make_sample_data, sample_prefix

    make_sample_data(FLAGS.seq_length, FLAGS.predictions, log=log)
    with open(f"{sample_prefix()}_corpus.txt", encoding="utf-8") as f:
        lines = [line.strip() for line in f if 40 < len(line.strip()) < 160]
    rng = random.Random(0)
    rows = []
    for line in rng.sample(lines, 1400):
        words, label = line.split(), rng.choice(["positive", "negative"])
        words.insert(rng.randint(0, len(words)), "good" if label == "positive" else "bad")
        rows.append((" ".join(words).replace("\t", " "), label))
    return rows


def _pretrained(directory, config_name):
    """(init_checkpoint, learning rate): all-MiniLM-L6-v2 converted ("minilm", real weights)
    or a config's random weights with the sample vocab."""
    import keras
    import tensorflow as tf

    from bert_tf.checkpoints.convert import convert
    from bert_tf.config import BertConfig
    from bert_tf.data.sample_data import sample_prefix
    from bert_tf.modeling import build_pretrainer

    pretrained = os.path.join(directory, "pretrained")
    if config_name == "minilm":
        from real_weights import extract_minilm

        convert("huggingface", extract_minilm(os.path.join(directory, "minilm")), "bert_tf",
                pretrained, log=lambda _: None)
        return pretrained, 5e-5
    config = BertConfig.from_json_file(os.path.join(REPO, "configs", f"bert_{config_name}.json"))
    os.makedirs(pretrained)
    config.to_json_file(os.path.join(pretrained, "bert_config.json"))
    with open(os.path.join(pretrained, "run_config.json"), "w") as f:
        json.dump({"do_lower_case": True}, f)
    tf.io.gfile.copy(f"{sample_prefix()}_vocab.txt", os.path.join(pretrained, "vocab.txt"))
    keras.utils.set_random_seed(0)
    tf.train.Checkpoint(model=build_pretrainer(config)).write(os.path.join(pretrained, "ckpt-1"))
    return os.path.join(pretrained, "ckpt-1"), 1e-3 if config.hidden_size < 512 else 1e-4


def _serving_task(directory, config_name, log):
    """A classifier finetuned on 1,000 sentences, its run directory, export and the held-out
    (text, label) rows: on real weights ("minilm") the reference-or-library task of real
    sentences, on random weights the synthetic good/bad one (which every format solves)."""
    from bert_tf.finetuning.classification import ClassificationConfig, run

    rows = reference_or_library() if config_name == "minilm" else _synthetic_rows(log)
    for name, part in (("train", rows[:1000]), ("dev", rows[1000:1400])):
        write_tsv(os.path.join(directory, f"{name}.tsv"), part)
    init_checkpoint, learning_rate = _pretrained(directory, config_name)
    output = os.path.join(directory, "classifier")
    start = time.time()
    result = run(ClassificationConfig(
        train_file=os.path.join(directory, "train.tsv"),
        eval_file=os.path.join(directory, "dev.tsv"), output_dir=output,
        init_checkpoint=init_checkpoint, max_seq_length=FLAGS.serving_seq_length,
        train_batch_size=32, learning_rate=learning_rate, num_train_epochs=3,
        mixed_precision="float32", log_steps=1000), log=lambda _: None)
    log(f"serving {config_name}: classifier finetuned in {time.time() - start:.0f} s, dev "
        f"accuracy {result['accuracy']:.4f}")
    return output, result["export"], rows[1000:1400]


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
            files = run_dir.resolve(directory=output)
            exports = os.path.join(work, "exports")
            lite_dir = export_run(files, exports, format="litert")["classifier_litert"]
            onnx_dir = export_run(files, exports, format="onnx")["classifier_onnx"]
            [bf16_path] = export_run(files, os.path.join(work, "bf16"),
                                     serving_precision="bfloat16").values()
            hf_dir = os.path.join(work, "hf")
            convert("bert_tf", output, "huggingface", hf_dir, log=lambda _: None)
            labels = json.load(open(os.path.join(lite_dir, "litert.json")))["labels"]
            truth = np.array([labels.index(y) for _, y in held_out])
            runners = _serving_runners(saved_path, lite_dir, onnx_dir, hf_dir, threads,
                                       bf16_path)
            row = {}
            for name, (predict, size) in runners.items():
                predicted = np.concatenate([predict(texts[i:i + 32])
                                            for i in range(0, len(texts), 32)])
                accuracy = float(np.mean(predicted == truth))
                single = _latencies(lambda: predict(texts[:1]), 100)
                batch = texts[:32]
                rate = median_rate(lambda: predict(batch), 32, 5)
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
            row["standings"] = standings(row)
            for batch in ("batch_1", "batch_32"):
                entry = row["standings"][f"{batch}_ours_vs_best_peer"]
                log(f"serving {config_name} {batch}: our fastest ({entry['ours']}) is "
                    f"{entry['speedup']:.2f}x the fastest peer ({entry['peer']})")
            log(f"serving {config_name}: int8 accuracy against float32, points: " + ", ".join(
                f"{k} {v:+.2f}" for k, v in row["standings"]["int8_accuracy_points"].items()))
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
    from onnxruntime.quantization import QuantType, quantize_dynamic
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
    float_file = os.path.join(onnx_dir, "model.onnx")
    int8_file = os.path.join(onnx_dir, "model_int8.onnx")  # ONNX Runtime's dynamic int8
    quantize_dynamic(float_file, int8_file, weight_type=QuantType.QInt8)

    def onnx_runner(file):
        session = onnxruntime.InferenceSession(file, options, providers=["CPUExecutionProvider"])

        def predict(texts):  # the same tokenizer work as the others: Rust WordPiece, padding
            encoded = tokenizer.encode_batch(texts)
            inputs = {"input_word_ids": np.array([e.ids for e in encoded], np.int32),
                      "input_mask": np.array([e.attention_mask for e in encoded], np.int32),
                      "input_type_ids": np.array([e.type_ids for e in encoded], np.int32)}
            return np.argmax(session.run(["logits"], inputs)[0], -1)
        return predict, os.path.getsize(file)

    runners["onnxruntime"] = onnx_runner(float_file)
    runners["onnxruntime_int8"] = onnx_runner(int8_file)
    torch.set_num_threads(threads)
    classify = pipeline("text-classification", model=hf_dir, device=-1,
                        truncation=True, max_length=FLAGS.serving_seq_length)
    label_ids = classify.model.config.label2id

    def pipeline_runner(run):
        return lambda texts: np.array([label_ids[r["label"]]
                                       for r in run(texts, batch_size=len(texts))])

    runners["hf_pipeline"] = (pipeline_runner(classify), _directory_bytes(hf_dir))
    # torch's dynamic int8 (weights int8, activations quantized per call) of the same model
    quantized = torch.ao.quantization.quantize_dynamic(
        copy.deepcopy(classify.model), {torch.nn.Linear}, dtype=torch.qint8)
    classify_int8 = pipeline("text-classification", model=quantized,
                             tokenizer=classify.tokenizer, device=-1, truncation=True,
                             max_length=FLAGS.serving_seq_length)
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(quantized.state_dict(), os.path.join(tmp, "model.pt"))
        int8_bytes = os.path.getsize(os.path.join(tmp, "model.pt"))
    runners["torch_int8"] = (pipeline_runner(classify_int8), int8_bytes)
    return runners


# Who is who in the serving table: bert_tf's formats, and the peers a user would otherwise run
# (transformers' pipeline in float32 and torch's dynamic int8 of it; ONNX Runtime, float32 and
# its dynamic int8, on the --format=onnx export of the same weights).
OURS = ("saved_model", "saved_model_bf16", "litert_float", "litert_int8")
PEERS = ("hf_pipeline", "torch_int8", "onnxruntime", "onnxruntime_int8")


def standings(row):
    """Our fastest format against the fastest peer at batch 1 (p50) and batch 32
    (sentences/s), and each int8's accuracy against its float32."""
    ours = [name for name in OURS if name in row]
    peers = [name for name in PEERS if name in row]
    fastest = {"batch_1": (min(ours, key=lambda n: row[n]["p50_ms"]),
                           min(peers, key=lambda n: row[n]["p50_ms"])),
               "batch_32": (max(ours, key=lambda n: row[n]["batch_32_sentences_per_s"]),
                            max(peers, key=lambda n: row[n]["batch_32_sentences_per_s"]))}
    result = {f"{batch}_ours_vs_best_peer": {
        "ours": mine, "peer": theirs,
        "speedup": (row[theirs]["p50_ms"] / row[mine]["p50_ms"] if batch == "batch_1" else
                    row[mine]["batch_32_sentences_per_s"]
                    / row[theirs]["batch_32_sentences_per_s"])}
        for batch, (mine, theirs) in fastest.items()}
    result["int8_accuracy_points"] = {
        int8: 100 * (row[int8]["accuracy"] - row[float32]["accuracy"])
        for int8, float32 in (("litert_int8", "litert_float"), ("torch_int8", "hf_pipeline"),
                              ("onnxruntime_int8", "onnxruntime")) if int8 in row}
    return result
