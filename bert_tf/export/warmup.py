"""TF Serving's SavedModel warm-up: `assets.extra/tf_serving_warmup_requests`, a TFRecord file of
`PredictionLog` protos (at most 1,000) that the model server replays when it loads a version
with `--enable_model_warmup` (its default), so the first user request does not pay for the
runtime's lazy initialisation (https://www.tensorflow.org/tfx/serving/saved_model_warmup).

Every SavedModel an export writes carries one: per signature, requests of typical shapes made
from the export's own vocab (whole-word tokens, so a word is a token): one text and a batch
of 8, at each of the length buckets finetuning pads to (16, 32, ... max_seq_length tokens).
Text-in signatures get strings, the encoder's id signatures int32 ids; a signature with other
inputs gets none. Written with tensorflow-serving-api's own protos.
"""

import os

import numpy as np
import tensorflow as tf

from bert_tf.text.preprocessing import length_buckets

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
BATCH_SIZES = (1, 8)
MAX_REQUESTS = 1000  # TF Serving reads no more


def _words(vocab, count):
    """`count` words that are whole tokens of `vocab` (letters only), cycling."""
    words = [t for t in vocab.tokens if t.isalpha() and t.isascii() and len(t) > 2][:2000]
    if not words:
        words = ["a"]
    return [words[(i * 7919) % len(words)] for i in range(count)]


def _text_inputs(specs, vocab, length, batch):
    """Strings of about `length` tokens in all (a pair's split in two)."""
    if len(specs) == 2 and specs[0].name == "question":  # question answering: short question
        parts = [min(8, length // 4), max(length - min(8, length // 4) - 3, 1)]
    else:
        parts = [max((length - 1 - len(specs)) // len(specs), 1)] * len(specs)
    inputs = {}
    for offset, (spec, words) in enumerate(zip(specs, parts)):
        text = " ".join(_words(vocab, words + offset)[offset:])
        inputs[spec.name] = np.array([text.encode("utf-8")] * batch, dtype=object)
    return inputs


def _id_inputs(specs, vocab, length, batch):
    ids = np.full((batch, length), vocab.cls_id, np.int32)
    ids[:, -1] = vocab.sep_id
    values = {"input_word_ids": ids, "input_mask": np.ones((batch, length), np.int32),
              "input_type_ids": np.zeros((batch, length), np.int32)}
    return {spec.name: values[spec.name] for spec in specs}


def _inputs_maker(function):
    """How to make a request of the signature `function` (a tf.function with an input
    signature, or a concrete function); None when its inputs are neither texts nor ids."""
    if hasattr(function, "structured_input_signature"):
        specs = tf.nest.flatten(function.structured_input_signature)
    else:
        specs = tf.nest.flatten(function.input_signature or [])
    if not specs or not all(isinstance(s, tf.TensorSpec) for s in specs):
        return None
    if all(s.dtype == tf.string and s.shape.rank == 1 for s in specs):
        return lambda vocab, length, batch: _text_inputs(specs, vocab, length, batch)
    if all(s.dtype == tf.int32 and s.shape.rank == 2 and s.name in
           ("input_word_ids", "input_mask", "input_type_ids") for s in specs):
        fixed = specs[0].shape[1]
        return lambda vocab, length, batch: _id_inputs(specs, vocab, fixed or length, batch)
    return None


def warmup_requests(signatures, vocab, max_seq_length):
    """[(signature name, {input name: array})] for `signatures` ({name: function})."""
    requests = []
    for name, function in signatures.items():
        make = _inputs_maker(function)
        if make is None:
            continue
        for length in length_buckets(max_seq_length):
            for batch in BATCH_SIZES:
                requests.append((name, make(vocab, length, batch)))
    return requests[:MAX_REQUESTS]


def write_warmup(saved_model_dir, requests):
    """Writes `requests` as saved_model_dir/assets.extra/tf_serving_warmup_requests."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    if not requests:
        return None
    path = os.path.join(saved_model_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for signature, inputs in requests:
            request = predict_pb2.PredictRequest()
            request.model_spec.signature_name = signature
            for key, value in inputs.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def read_warmup(saved_model_dir):
    """[(signature name, {input name: array})] of a SavedModel's warm-up file ([] without)."""
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(saved_model_dir, WARMUP_FILE)
    if not tf.io.gfile.exists(path):
        return []
    requests = []
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog.FromString(record)
        request = log.predict_log.request
        requests.append((request.model_spec.signature_name,
                         {k: tf.make_ndarray(v) for k, v in request.inputs.items()}))
    return requests
