"""ONNX models, ids in, for ONNX Runtime and the runtimes that read ONNX:

    python -m bert_tf.export --output_dir=RUN --export_dir=DIR --format=onnx

writes DIR/<model_name>/<version>/ (default names bert_encoder_onnx, classifier_onnx, ...):

    model.onnx   inputs input_word_ids, input_mask, input_type_ids [batch, length] int32 (any
                 batch and length up to max_position_embeddings); outputs sequence_output and
                 pooled_output (a pretraining run's encoder) or the task model's logits
                 (`logits`; question answering: start_logits, end_logits)
    onnx.json    inputs, outputs, opset, size
    vocab.txt    the vocabulary: the caller tokenizes

Converted by tf2onnx from the Keras model's graph (`pip install tf2onnx==1.17.0 onnx==1.23.2`;
onnxruntime to run it). Text in is not offered: tensorflow-text's tokenizer ops have no ONNX
form, so the caller runs a WordPiece tokenizer (e.g. Hugging Face `tokenizers`' BertWordPiece
with this vocab.txt) and passes ids.
"""

from __future__ import annotations

import os

import tensorflow as tf

from bert_tf import io
from bert_tf.export.litert import ids_in_function
from bert_tf.export.serving import write_version
from bert_tf.modeling import INPUT_NAMES

MODEL_FILE, MANIFEST = "model.onnx", "onnx.json"
OPSET = 17  # ONNX Runtime 1.16 and later run it
SUFFIX = "_onnx"  # after the task's export name (bert_tf.tasks)


def to_onnx(task, model) -> tuple[bytes, list]:
    """(the serialized ONNX model, its output names) of the run's model, ids in."""
    try:
        import tf2onnx
    except ImportError:
        raise ValueError("--format=onnx needs tf2onnx: pip install tf2onnx==1.17.0 "
                         "onnx==1.23.2") from None
    from tf2onnx import tf_loader

    spec = [tf.TensorSpec([None, None], tf.int32, name=name) for name in INPUT_NAMES]
    concrete = tf.function(ids_in_function(task, model)).get_concrete_function(*spec)
    inputs = [t.name for t in concrete.inputs if t.dtype != tf.resource]
    outputs = [t.name for t in concrete.outputs if t.dtype != tf.resource]
    # tf2onnx's from_function, without its graph optimizers: ONNX Runtime optimizes the graph
    # when it loads it (measured on bert_mini: 2.5 vs 2.35 ms at batch 1, 54.9 vs 53.7 ms at
    # batch 32), and for bert_base they took the conversion from 36 s and 10 GB peak memory to
    # 113 s and 22 GB.
    with tf.device("/cpu:0"):
        frozen = tf_loader.from_function(concrete, inputs, outputs)
        proto, _ = tf2onnx.convert._convert_common(
            frozen, name=concrete.name, opset=OPSET, input_names=inputs, output_names=outputs,
            tensors_to_rename=tf2onnx.convert.tensor_names_from_structed(concrete, inputs,
                                                                         outputs),
            continue_on_error=False, optimizers={})
    return proto.SerializeToString(), sorted(o.name for o in proto.graph.output)


def export_onnx(request, model_dir, log=print) -> str:
    """Writes model_dir/<version>/ (model.onnx, onnx.json, vocab.txt) of an `ExportRequest`
    (ids in: its max_seq_length is not used); returns its path."""
    content, outputs = to_onnx(request.task, request.model)
    manifest = {"format": "onnx", "task": request.task or "pretraining", "opset": OPSET,
                "inputs": list(INPUT_NAMES), "outputs": outputs,
                "do_lower_case": bool(request.do_lower_case), "bytes": len(content)}
    if request.labels:
        manifest["labels"] = request.labels

    def write(tmp):
        io.write_file(os.path.join(tmp, MODEL_FILE), content)
        io.write_json(os.path.join(tmp, MANIFEST), manifest)
        io.copy_file(request.vocab.path, os.path.join(tmp, "vocab.txt"))

    path = write_version(write, model_dir, request.version, request.overwrite)
    log(f"ONNX ids-in {manifest['task']} model: {MODEL_FILE} {len(content) / 2**20:.1f} MiB")
    return path
