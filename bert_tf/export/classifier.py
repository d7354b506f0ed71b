"""The text-in classifier for TF Serving: strings in; probabilities, label_id and label out (a
regression model: its score).

    serving_default  text [B] (and text_b [B] for a pair task) -> probabilities [B,C],
                     label_id [B] int32, label [B] string; or score [B] float32
    single           text -> the same, on a pair task's export
"""

import tensorflow as tf

from bert_tf.export.serving import SavedModule, save_version
from bert_tf.text.preprocessing import Preprocessor


def classifier_outputs(logits, labels):
    """A classifier's logits -> probabilities, label_id and label (`labels`: a string
    tensor); a regression model's output (`labels` None) -> score."""
    if labels is None:
        return {"score": tf.cast(logits, tf.float32)}
    probabilities = tf.nn.softmax(logits)
    label_id = tf.argmax(probabilities, -1, output_type=tf.int32)
    return {"probabilities": probabilities, "label_id": label_id,
            "label": tf.gather(labels, label_id)}


class ClassifierExport(SavedModule):
    """A Keras classifier (encoder inputs -> logits) behind a `Preprocessor`."""

    def __init__(self, model, preprocessor, labels, pair):
        super().__init__()
        self.hold(model=model)
        self.preprocessor = preprocessor
        self.variables = [v.value for v in model.variables]
        self.labels = tf.constant(list(labels))
        self.serve = tf.function(self._serve, input_signature=[
            tf.TensorSpec([None], tf.string, name="text")])
        self.serve_pair = tf.function(self._serve_pair, input_signature=[
            tf.TensorSpec([None], tf.string, name="text"),
            tf.TensorSpec([None], tf.string, name="text_b")])
        self.pair_task = pair

    def _outputs(self, inputs):
        return classifier_outputs(self.model(inputs, training=False), self.labels)

    # Padded to the batch's longest text, not max_seq_length: one label per text either way.
    def _serve(self, text):
        return self._outputs(self.preprocessor.texts(text, to_longest=True))

    def _serve_pair(self, text, text_b):
        return self._outputs(self.preprocessor.texts(text, text_b, to_longest=True))

    def signatures(self):
        if self.pair_task:
            return {"serving_default": self.serve_pair, "single": self.serve}
        return {"serving_default": self.serve}


class RegressorExport(ClassifierExport):
    """A Keras regression model (encoder inputs -> score [B]) behind a `Preprocessor`."""

    def _outputs(self, inputs):
        return classifier_outputs(self.model(inputs, training=False), None)


def export_classifier(request, model_dir):
    """Writes model_dir/<version> of an `ExportRequest` (its record's "labels", and "pair" for
    a sentence-pair model); returns its path. No labels: a regression model."""
    preprocessor = Preprocessor(request.vocab, request.do_lower_case, request.max_seq_length)
    labels = request.labels
    module = (ClassifierExport if labels else RegressorExport)(
        request.model, preprocessor, labels, bool(request.record.get("pair", False)))
    return save_version(module, module.signatures(), model_dir, request.version,
                        request.overwrite,
                        warmup=(request.vocab, request.max_seq_length))
