"""LiteRT (formerly TensorFlow Lite) models for phones and edge boxes, a run's model with the
tokenizer inside where its task allows:

    python -m bert_tf.export --output_dir=RUN --export_dir=DIR --format=litert

writes DIR/<model_name>/<version>/ (default names classifier_litert, regressor_litert,
squad_litert, tagger_litert, bert_encoder_litert):

    model.tflite        float32
    model_int8.tflite   int8 dynamic-range quantization (weights int8, activations float)
    litert.json         the signature's inputs and outputs, the custom ops it needs, sizes
    vocab.txt           the vocabulary (for the ids-in models, whose caller tokenizes)

A classifier (or regressor) takes raw strings: signature `serving_default`, inputs `text` (and
`text_b` for a pair task) [B] string, outputs `probabilities` [B,C], `label_id` [B], `label` [B]
(or `score` [B]), as the SavedModel's. The tokenizer is tensorflow-text's FastBertTokenizer,
one of the few text ops with LiteRT kernels: the model needs tensorflow-text's custom ops
(FastBertNormalize, FastWordpieceTokenizeWithOffsets, TFText>RoundRobinTrim,
RaggedTensorToTensor: `tensorflow_text.tflite_registrar.SELECT_TFTEXT_OPS` in Python, the
same kernels built into an app) and nothing from TensorFlow itself (no Flex delegate).

It tokenizes as the SavedModel does except on rare text: tensorflow-text's lower-casing is
NFKC case folding ("ß" -> "ss" where google keeps "ß"), a long word becomes [UNK] above 200
bytes rather than 200 characters, control characters are not removed first, and texts are not
clipped at 1 MiB. The pretrained encoder and the question-answering and tagging models take
ids (`input_word_ids`, `input_mask`, `input_type_ids` [B, max_seq_length] int32): their
SavedModels' text handling (windows over long contexts, answer and word offsets) uses string
and ragged ops that LiteRT has no kernels for (Substr, UnicodeDecodeWithOffsets, RaggedGather),
so the caller tokenizes with vocab.txt.
"""

from __future__ import annotations

import os

import tensorflow as tf
import tensorflow_text as tf_text

from bert_tf import io
from bert_tf.console import held_stderr
from bert_tf.export.classifier import classifier_outputs
from bert_tf.export.serving import write_version
from bert_tf.modeling import INPUT_NAMES
from bert_tf.modeling.heads import task_encoder
from bert_tf.tasks import spec_for
from bert_tf.text.tokenization import MAX_CHARS_PER_WORD, UNK

FLOAT_FILE, INT8_FILE, MANIFEST = "model.tflite", "model_int8.tflite", "litert.json"
# tensorflow-text's ops with LiteRT kernels that the text-in models use
TEXT_OPS = ("FastBertNormalize", "FastWordpieceTokenizeWithOffsets", "TFText>RoundRobinTrim",
            "RaggedTensorToTensor")
SUFFIX = "_litert"  # after the task's export name (bert_tf.tasks)


class LitePacker(tf.Module):
    """Texts -> the three int32 inputs [B, seq_length], in ops LiteRT runs: FastBertTokenizer,
    RoundRobinTrimmer (the longer text loses tokens first) and dense index arithmetic for
    [CLS] A [SEP] (B [SEP]) and padding. With `to_longest`, padded only as far as the batch's
    longest packed text needs."""

    def __init__(self, vocab, do_lower_case, seq_length, to_longest=False):
        super().__init__()
        self.tokenizer = tf_text.FastBertTokenizer(
            vocab=list(vocab.tokens), suffix_indicator="##", unknown_token=UNK,
            max_bytes_per_word=MAX_CHARS_PER_WORD, token_out_type=tf.int32,
            lower_case_nfd_strip_accents=bool(do_lower_case))
        self.seq_length, self.to_longest = seq_length, to_longest
        self.cls_id, self.sep_id = vocab.cls_id, vocab.sep_id

    def __call__(self, texts):
        # Texts of another batch size than the first are an error in this Reshape's prepare
        # step: the trimmer's kernel would read past the shorter batch (a crash, or rows lost).
        texts = [texts[0]] + [tf.reshape(text, tf.shape(texts[0])) for text in texts[1:]]
        segments = [self.tokenizer.tokenize(text) for text in texts]
        segments = tf_text.RoundRobinTrimmer(self.seq_length - 1 - len(segments)).trim(segments)
        length = self.seq_length
        position = tf.range(length)[None, :]  # [1, L]
        ids = tf.where(position == 0, self.cls_id, 0)
        types = tf.zeros_like(ids)
        start = tf.ones_like(segments[0].row_lengths()[:, None], tf.int32)  # [B, 1]
        for index, segment in enumerate(segments):
            size = tf.cast(segment.row_lengths()[:, None], tf.int32)
            dense = segment.to_tensor(shape=[None, length])
            take = tf.broadcast_to(tf.clip_by_value(position - start, 0, length - 1),
                                   tf.shape(dense))
            inside = (position >= start) & (position < start + size)
            ids = tf.where(inside, tf.gather(dense, take, batch_dims=1), ids)
            ids = tf.where(position == start + size, self.sep_id, ids)
            types = tf.where((position >= start) & (position <= start + size), index, types)
            start = start + size + 1
        mask = tf.cast(position < start, tf.int32)
        inputs = {"input_word_ids": ids, "input_mask": mask, "input_type_ids": types}
        if self.to_longest:
            longest = tf.reduce_max(tf.concat([start[:, 0], [len(segments) + 1]], 0))
            inputs = {name: tf.slice(value, [0, 0], tf.stack([-1, longest]))
                      for name, value in inputs.items()}
        return inputs


class _Signature(tf.Module):
    """One serving function over a Keras model, and what it is for the manifest."""

    def __init__(self, model, function, input_spec, text_in):
        super().__init__()
        self.model = model
        self.weights = [v.value for v in model.variables]  # tracked: the converter freezes them
        self.serve = tf.function(function, input_signature=input_spec)
        self.text_in = text_in


def _text_specs(pair):
    names = ("text", "text_b") if pair else ("text",)
    return [tf.TensorSpec([None], tf.string, name=name) for name in names]


def _ids_spec(seq_length):
    return [tf.TensorSpec([None, seq_length], tf.int32, name=name) for name in INPUT_NAMES]


def signature_for(task, model, vocab, do_lower_case, seq_length, labels=(), pair=False):
    """The module to convert for a run's model: text in for classification and regression,
    ids in otherwise."""
    spec = spec_for(task)
    if spec.litert_text_in:
        packer = LitePacker(vocab, do_lower_case, seq_length, to_longest=True)
        names = tf.constant(list(labels)) if spec.labelled else None

        def serve(*texts):
            return classifier_outputs(model(packer(texts), training=False), names)

        module = _Signature(model, serve, _text_specs(pair), True)
        module.packer = packer
        return module

    return _Signature(model, ids_in_function(task, model), _ids_spec(seq_length), False)


def ids_in_function(task, model):
    """The three int32 inputs -> the encoder's sequence_output and pooled_output (task None)
    or the task model's outputs (`logits`, or its dict: start_logits, end_logits)."""
    def serve_ids(input_word_ids, input_mask, input_type_ids):
        inputs = {"input_word_ids": input_word_ids, "input_mask": input_mask,
                  "input_type_ids": input_type_ids}
        if task is None:
            outputs = model.encoder(inputs, training=False)
            return {"sequence_output": outputs["sequence_output"],
                    "pooled_output": outputs["pooled_output"]}
        outputs = model(inputs, training=False)
        return dict(outputs) if isinstance(outputs, dict) else {"logits": outputs}

    return serve_ids


def convert(module, quantize=False) -> bytes:
    """The module's `serve` as a LiteRT flatbuffer: TFLite builtins plus tensorflow-text's
    custom ops; any other op is an error naming it."""
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.serve.get_concrete_function()], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.allow_custom_ops = True  # tensorflow-text's; checked below
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    with held_stderr():  # its narration (and the custom ops, checked here) only on failure
        flatbuffer = converter.convert()
    other = sorted(set(custom_ops(flatbuffer)) - set(TEXT_OPS))
    if other:
        raise ValueError(f"the LiteRT model would need op(s) that neither LiteRT nor "
                         f"tensorflow-text runs: {', '.join(other)}")
    return flatbuffer


def custom_ops(flatbuffer) -> list:
    """The custom (non-builtin) ops a LiteRT flatbuffer uses."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(flatbuffer, 0))
    return sorted({code.customCode.decode() for code in model.operatorCodes
                   if code.customCode})


def interpreter(path_or_bytes, num_threads=None):
    """A LiteRT interpreter for one of these models, with tensorflow-text's kernels
    registered; `interpreter(path).get_signature_runner()(text=np.array([...], object))`.
    LiteRT's own (ai-edge-litert), which replaces TensorFlow's `tf.lite.Interpreter`."""
    from ai_edge_litert.interpreter import InterpreterWithCustomOps

    content = path_or_bytes
    if not isinstance(content, bytes):
        with tf.io.gfile.GFile(os.fspath(content), "rb") as f:
            content = f.read()
    return InterpreterWithCustomOps(
        model_content=content, num_threads=num_threads,
        custom_op_registerers=tf_text.tflite_registrar.SELECT_TFTEXT_OPS)


def export_litert(request, model_dir, log=print) -> str:
    """Writes model_dir/<version>/ (model.tflite, model_int8.tflite, litert.json, vocab.txt) of
    an `ExportRequest`; returns its path."""
    task, model, vocab = request.task, request.model, request.vocab
    do_lower_case, seq_length = request.do_lower_case, request.max_seq_length
    task_encoder(model).config.check_sequence_length(seq_length)
    labels = request.labels
    module = signature_for(task, model, vocab, do_lower_case, seq_length, labels,
                           bool(request.record.get("pair", False)))
    models = {FLOAT_FILE: convert(module), INT8_FILE: convert(module, quantize=True)}
    concrete = module.serve.get_concrete_function()
    manifest = {
        "format": "litert", "task": task or "pretraining", "signature": "serving_default",
        "text_in": module.text_in,
        "inputs": [spec.name for spec in concrete.structured_input_signature[0]],
        "outputs": sorted(concrete.structured_outputs),
        "max_seq_length": seq_length, "do_lower_case": bool(do_lower_case),
        "custom_ops": custom_ops(models[FLOAT_FILE]),
        "bytes": {name: len(content) for name, content in models.items()}}
    if labels:
        manifest["labels"] = list(labels)

    def write(tmp):
        for name, content in models.items():
            io.write_file(os.path.join(tmp, name), content)
        io.write_json(os.path.join(tmp, MANIFEST), manifest)
        io.copy_file(vocab.path, os.path.join(tmp, "vocab.txt"))

    path = write_version(write, model_dir, request.version, request.overwrite)
    sizes = ", ".join(f"{name} {size / 2**20:.1f} MiB" for name, size in manifest["bytes"].items())
    log(f"LiteRT {'text' if module.text_in else 'ids'}-in {manifest['task']} model: {sizes}")
    if not module.text_in and task is not None:
        log("  its SavedModel's text handling (windows, offsets) has no LiteRT kernels: the "
            "caller tokenizes with vocab.txt")
    return path
