"""serving and serving_overhead: a text-in classifier in every format against transformers'
pipeline and ONNX Runtime, on the same sentences."""

import json
import os
import tempfile
import time

from benchmarks.settings import FLAGS, REPO
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
