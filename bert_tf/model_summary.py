"""CLI: build the pretraining model from a bert_config.json and check it end to end.

    python -m bert_tf.model_summary --bert_config_file=configs/bert_base.json --max_seq_length=128

Prints the parameter counts, then runs one forward pass and one gradient step on a random batch
and reports the losses and the time each took (bert_tf/training/model_summary.py).
"""

import dataclasses
import math
import os

from bert_tf import cli
from bert_tf.config import BertConfig, configs_dir
from bert_tf.settings import Settings, setting


@dataclasses.dataclass(frozen=True)
class SummaryConfig(Settings):
    """The settings of a model summary (the command line's flags)."""
    bert_config_file: str = setting(os.path.join(configs_dir(), "bert_tiny.json"),
                                    "google-format bert_config.json.")
    max_seq_length: int = setting(128, "Sequence length of the random batch.", minimum=1)
    max_predictions_per_seq: int = setting(20, "Masked positions per sequence.", minimum=1)
    batch_size: int = setting(8, "Sequences in the random batch.", minimum=1)
    mixed_precision: str = setting("float32", "Keras dtype policy.",
                                   choices=("float32", "mixed_float16", "mixed_bfloat16"))


@cli.reports_errors("model_summary")
def main(argv):
    del argv
    from bert_tf.training.model_summary import summarize

    job = cli.from_flags(SummaryConfig)
    config = BertConfig.from_json_file(job.bert_config_file)
    print(f"{job.bert_config_file}: L={config.num_hidden_layers} H={config.hidden_size} "
          f"A={config.num_attention_heads} I={config.intermediate_size} "
          f"vocab={config.vocab_size} act={config.hidden_act}")
    figures = summarize(config, job.batch_size, job.max_seq_length,
                        job.max_predictions_per_seq, job.mixed_precision)
    print(f"encoder parameters (with pooler): {figures['encoder_params']:,}")
    print(f"pretraining model parameters:     {figures['pretrainer_params']:,}")
    print(f"random batch [{job.batch_size}, {job.max_seq_length}]: "
          f"masked_lm_loss={figures['masked_lm_loss']:.4f} "
          f"next_sentence_loss={figures['next_sentence_loss']:.4f} "
          f"(untrained: expect about ln(vocab)={math.log(config.vocab_size):.2f} "
          f"and ln 2=0.69)")
    print(f"forward {figures['forward_seconds']:.2f}s, forward+backward "
          f"{figures['gradient_seconds']:.2f}s (first calls, eager), "
          f"gradients finite: {figures['gradients_finite']}")


SETTINGS = (SummaryConfig,)  # the flags

if __name__ == "__main__":
    cli.start(main, SETTINGS)
