"""The encoder export, as TF Hub's BERT encoders are: a trainable callable and a signature.

    loaded = tf.saved_model.load(path)
    loaded({"input_word_ids": ..., "input_mask": ..., "input_type_ids": ...}, training=False)
        -> {"sequence_output", "pooled_output", "encoder_outputs"}
    loaded.signatures["serving_default"](**inputs)
        -> pooled_output, sequence_output, encoder_outputs_<i>

It carries vocab.txt (asset), do_lower_case and the bert_config.json text, so that finetuning
knows the tokenizer and `load_encoder_export` can rebuild a Keras `BertEncoder` from it.
"""

import json

import tensorflow as tf

from bert_tf.config import BertConfig
from bert_tf.export.serving import SavedModule
from bert_tf.modeling import INPUT_NAMES, BertEncoder


class EncoderExport(SavedModule):
    """The Keras encoder as a TF Hub-style object."""

    def __init__(self, encoder, vocab, do_lower_case):
        super().__init__()
        self.hold(encoder=encoder)
        self.vocab_file = tf.saved_model.Asset(vocab.path)
        self.do_lower_case = tf.Variable(bool(do_lower_case), trainable=False, name="lower")
        self.bert_config = tf.Variable(encoder.config.to_json_string(), trainable=False,
                                       name="bert_config")
        self.variables = [v.value for v in encoder.variables]
        self.trainable_variables = [v.value for v in encoder.trainable_variables]
        self.regularization_losses = []
        self.__call__ = tf.function(self._call, input_signature=[
            {name: tf.TensorSpec([None, None], tf.int32, name=name) for name in INPUT_NAMES},
            tf.TensorSpec([], tf.bool, name="training")])
        self.serve = tf.function(self._serve, input_signature=[
            {name: tf.TensorSpec([None, None], tf.int32, name=name) for name in INPUT_NAMES}])

    def _call(self, inputs, training=False):  # TF Hub's API: `training` is optional
        return tf.cond(training, lambda: self.encoder(inputs, training=True),
                       lambda: self.encoder(inputs, training=False))

    def _serve(self, inputs):
        return flat_encoder_outputs(self.encoder(inputs, training=False))


def flat_encoder_outputs(outputs):
    flat = {"pooled_output": outputs["pooled_output"],
            "sequence_output": outputs["sequence_output"]}
    flat.update({f"encoder_outputs_{i}": x for i, x in enumerate(outputs["encoder_outputs"])})
    return flat


def export_config(loaded, path) -> BertConfig:
    """The BertConfig a loaded encoder export carries; one without is named."""
    if not hasattr(loaded, "bert_config"):
        raise ValueError(f"{path}: not a bert_tf encoder export (no bert_config); a TF Hub "
                         f"BERT encoder converts first: python -m bert_tf.convert_checkpoint "
                         f"--input_format=tf_hub --input={path} --output_format=bert_tf "
                         f"--output=DIR, then --init_checkpoint=DIR")
    return BertConfig.from_dict(json.loads(loaded.bert_config.numpy().decode()), source=path)


def load_encoder_export(path):
    """(a Keras `BertEncoder` with the export's weights, its do_lower_case)."""
    loaded = tf.saved_model.load(path)
    config = export_config(loaded, path)
    encoder = BertEncoder(config)
    if len(encoder.variables) != len(loaded.variables):
        raise ValueError(f"{path}: {len(loaded.variables)} variables, the config builds "
                         f"{len(encoder.variables)}")
    for ours, theirs in zip(encoder.variables, loaded.variables):
        if tuple(ours.shape) != tuple(theirs.shape):
            raise ValueError(f"{path}: variable {ours.path} has shape {tuple(theirs.shape)} in "
                             f"the export, {tuple(ours.shape)} in the config's model")
        ours.assign(theirs)
    return encoder, bool(loaded.do_lower_case.numpy())
