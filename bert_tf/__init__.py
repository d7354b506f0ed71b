"""bert_tf: pretrain BERT from raw text with TensorFlow/Keras and carry it to production."""

import os
import platform

__version__ = "0.1.0"

# Both must be set before TensorFlow is imported; a value the user set wins.
# oneDNN kernels: TensorFlow enables them by default only on some x86 CPUs (not on AVX2-only AMD
# parts, where they make BERT training 1.2-1.5x faster). TF_ENABLE_ONEDNN_OPTS=0 turns them off.
if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
# TensorFlow's C++ INFO lines (CUDA stubs, oneDNN and CPU-feature notices) drown the progress lines
# of every command; warnings and errors still show. TF_CPP_MIN_LOG_LEVEL=0 brings them back.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

from bert_tf.config import BertConfig, ConfigError  # noqa: E402
from bert_tf.modeling import INPUT_NAMES, BertEncoder  # noqa: E402

__all__ = ["BertConfig", "ConfigError", "BertEncoder", "INPUT_NAMES", "__version__"]
