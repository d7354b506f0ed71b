"""The settings every finetuning job has: where its encoder comes from (`EncoderSettings`, also
extract_features') and how it trains (`FinetuningConfig`); each task's settings extend them."""

from __future__ import annotations

import dataclasses

from bert_tf.settings import Settings, setting
from bert_tf.training import precision as precision_lib
from bert_tf.training import strategy as strategies


@dataclasses.dataclass(frozen=True)
class EncoderSettings(Settings):
    """Where a job's encoder comes from, with its tokenizer (`encoder_source` resolves them):
    the flags of every job that starts from a trained encoder."""
    init_checkpoint: str | None = setting(None, "A bert_tf checkpoint or run directory "
                                                "(pretrained, or a finetuned run).")
    bert_config_file: str | None = setting(None, "Default: beside --init_checkpoint.")
    encoder_saved_model: str | None = setting(None, "An encoder export (bert_tf.export), or a "
                                                    "TF Hub / Kaggle BERT encoder SavedModel.")
    vocab_file: str | None = setting(None, "Default: from the checkpoint's run or the export.")
    do_lower_case: bool | None = setting(None, "Default: from the checkpoint's run or the "
                                               "export.")
    allow_case_mismatch: bool = setting(False, "Go on with a --do_lower_case that contradicts "
                                               "the vocab or the source's record.")


@dataclasses.dataclass(frozen=True)
class FinetuningConfig(EncoderSettings, strategies.DeviceSettings):
    """Settings every finetuning task has (the command line's flags)."""
    output_dir: str = setting(None, "Where everything goes.", required=True)
    max_seq_length: int = setting(128, "Tokens per example.", above=0)
    train_batch_size: int = setting(32, "Batch size for training.", above=0)
    learning_rate: float = setting(2e-5, "Peak learning rate (AdamW).", above=0)
    num_train_epochs: float = setting(3.0, "Epochs.", above=0)
    warmup_proportion: float = setting(0.1, "Fraction of steps for linear warmup.", minimum=0,
                                       maximum=1)
    dynamic_padding: bool = setting(True, "Cut each batch to the smallest of 16, 32, 64, ... "
                                          "max_seq_length that holds its longest row, and "
                                          "group training rows of like length, instead of "
                                          "padding all to max_seq_length.")
    log_steps: int = setting(100, "Print a progress line (loss, metric, examples/s, ETA) every "
                                  "this many training steps.", above=0)
    serving_precision: str = setting("float32", precision_lib.SERVING_HELP,
                                     choices=tuple(precision_lib.SERVING_POLICIES))
    early_stopping_patience: int = setting(0, "Stop after this many epochs without a better "
                                              "eval score; 0: off.", minimum=0)
    keep_best: bool = setting(True, "Evaluate after every epoch and keep (save, evaluate, "
                                    "export) the weights of the best epoch by the task's "
                                    "score; false: the last epoch's.")
    profile_steps: str = setting("", "START,END: a TensorFlow profiler trace of training steps "
                                     "START..END (1-based) in OUTPUT_DIR/train, for "
                                     "TensorBoard's profile tab; empty: none.")
    model_name: str = setting("model", "Name of the exported model.")
    remat: str = setting("none", "Rematerialization (gradient checkpointing) in training: "
                                 "layers: recompute each block's activations in the backward "
                                 "pass; full: also its attention and feed-forward parts one at "
                                 "a time. Less memory, more compute.",
                         choices=("none", "layers", "full"))
    random_seed: int = setting(12345, "Seed.")

    def check(self):
        from bert_tf.training.trainer import profile_steps_problems

        return profile_steps_problems(self.profile_steps)
