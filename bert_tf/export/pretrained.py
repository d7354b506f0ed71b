"""A pretrained model's three SavedModels, in TF Serving's layout under one export_dir:

  <model_name>_encoder       the encoder, TF Hub style (bert_tf.export.encoder)
  <model_name>_preprocessor  serving_default: text -> the three int32 inputs; pair: text, text_b
  <model_name>               text in for TF Serving (bert_tf.export.text_model)

all at the same version. Only TensorFlow and tensorflow-text ops are inside, which the standard
tensorflow/serving image runs.
"""

import os

import tensorflow as tf

from bert_tf.export.encoder import EncoderExport
from bert_tf.export.serving import next_version, save_version
from bert_tf.export.text_model import TextModel
from bert_tf.text.preprocessing import Preprocessor


def export_all(pretrainer, vocab, do_lower_case, max_seq_length, export_dir, model_name="bert",
               version=None, overwrite=False):
    """Writes the three SavedModels; returns {name: path}."""
    pretrainer.config.check_sequence_length(max_seq_length)
    preprocessor = Preprocessor(vocab, do_lower_case, max_seq_length)
    preprocessor.trace_hub_api()  # tokenize and bert_pack_inputs, as TF Hub's preprocessors
    encoder = EncoderExport(pretrainer.encoder, vocab, do_lower_case)
    text_model = TextModel(pretrainer, preprocessor)
    plan = {
        f"{model_name}_encoder": (encoder, {"serving_default": encoder.serve}),
        f"{model_name}_preprocessor": (preprocessor, {"serving_default": preprocessor.single,
                                                      "pair": preprocessor.pair}),
        model_name: (text_model, text_model.signatures()),
    }
    if version is None:
        version = max(next_version(os.path.join(export_dir, name)) for name in plan)
    targets = [os.path.join(export_dir, name, str(version)) for name in plan]
    existing = [t for t in targets if tf.io.gfile.exists(t)]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing)} exist(s); pass --overwrite or another "
                              f"--version")
    return {name: save_version(module, signatures, os.path.join(export_dir, name), version,
                               overwrite, warmup=(vocab, max_seq_length))
            for name, (module, signatures) in plan.items()}
