"""bert_tf: pretrain BERT from raw text with TensorFlow/Keras and carry it to production."""

from bert_tf.config import BertConfig, ConfigError
from bert_tf.encoder import INPUT_NAMES, BertEncoder

__all__ = ["BertConfig", "ConfigError", "BertEncoder", "INPUT_NAMES"]
