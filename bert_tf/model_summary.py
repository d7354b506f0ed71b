"""CLI: build the pretraining model from a bert_config.json and check it end to end.

    python -m bert_tf.model_summary --bert_config_file=configs/bert_base.json --max_seq_length=128

Prints the parameter counts, then runs one forward pass and one gradient step on a random batch
and reports the losses and the time each took (bert_tf/training/model_summary.py).
"""

import math
import os

from absl import flags

from bert_tf import cli
from bert_tf.config import BertConfig, configs_dir

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("bert_config_file", os.path.join(configs_dir(), "bert_tiny.json"),
                        "google-format bert_config.json.")
    flags.DEFINE_integer("max_seq_length", 128, "Sequence length of the random batch.")
    flags.DEFINE_integer("max_predictions_per_seq", 20, "Masked positions per sequence.")
    flags.DEFINE_integer("batch_size", 8, "Sequences in the random batch.")
    flags.DEFINE_enum("mixed_precision", "float32", ["float32", "mixed_float16", "mixed_bfloat16"],
                      "Keras dtype policy.")


@cli.reports_errors("model_summary")
def main(argv):
    del argv
    from bert_tf.training.model_summary import summarize

    config = BertConfig.from_json_file(FLAGS.bert_config_file)
    print(f"{FLAGS.bert_config_file}: L={config.num_hidden_layers} H={config.hidden_size} "
          f"A={config.num_attention_heads} I={config.intermediate_size} "
          f"vocab={config.vocab_size} act={config.hidden_act}")
    figures = summarize(config, FLAGS.batch_size, FLAGS.max_seq_length,
                        FLAGS.max_predictions_per_seq, FLAGS.mixed_precision)
    print(f"encoder parameters (with pooler): {figures['encoder_params']:,}")
    print(f"pretraining model parameters:     {figures['pretrainer_params']:,}")
    print(f"random batch [{FLAGS.batch_size}, {FLAGS.max_seq_length}]: "
          f"masked_lm_loss={figures['masked_lm_loss']:.4f} "
          f"next_sentence_loss={figures['next_sentence_loss']:.4f} "
          f"(untrained: expect about ln(vocab)={math.log(config.vocab_size):.2f} "
          f"and ln 2=0.69)")
    print(f"forward {figures['forward_seconds']:.2f}s, forward+backward "
          f"{figures['gradient_seconds']:.2f}s (first calls, eager), "
          f"gradients finite: {figures['gradients_finite']}")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
