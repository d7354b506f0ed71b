"""The model: BERT's layers, the encoder, the pretraining heads and objective, the finetuning
task models.

Only `keras.layers` / `keras.ops`, no TensorFlow, so the model runs on every Keras backend (on
JAX, attention may also call JAX's fused kernels: `attention`).
"""

from bert_tf.modeling.encoder import INPUT_NAMES, BertEncoder
from bert_tf.modeling.heads import (build_classifier, build_question_answerer,
                                    build_regressor, build_tagger, build_task_model,
                                    task_encoder)
from bert_tf.modeling.pretrainer import BertPretrainer, build_pretrainer

__all__ = ["INPUT_NAMES", "BertEncoder", "BertPretrainer", "build_classifier",
           "build_pretrainer", "build_question_answerer", "build_regressor", "build_tagger",
           "build_task_model", "task_encoder"]
