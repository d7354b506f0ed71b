"""The model: BERT's layers, the encoder, the pretraining heads and objective.

Only `keras.layers` / `keras.ops`, no TensorFlow, so the model runs on every Keras backend.
"""

from bert_tf.modeling.encoder import INPUT_NAMES, BertEncoder
from bert_tf.modeling.pretrainer import BertPretrainer, build_pretrainer

__all__ = ["INPUT_NAMES", "BertEncoder", "BertPretrainer", "build_pretrainer"]
