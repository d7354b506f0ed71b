"""What every finetuning task shares: the common settings, the pretrained encoder a task starts
from, compile and `fit()` with the usual callbacks, and the files a task writes.

A task (classification.py; question answering and tagging next) subclasses `FinetuningConfig`
with its own settings, builds its head on `load_encoder(...)`, and calls `compile_model` and `fit`.
"""

from __future__ import annotations

import dataclasses
import math
import os

from bert_tf import io, run_dir
from bert_tf.settings import setting


@dataclasses.dataclass(frozen=True)
class FinetuningConfig:
    """Settings every finetuning task has (the command line's flags)."""
    output_dir: str = setting(None, "Where everything goes.", required=True)
    init_checkpoint: str | None = setting(None, "A bert_tf pretraining checkpoint.")
    bert_config_file: str | None = setting(None, "Default: beside --init_checkpoint.")
    encoder_saved_model: str | None = setting(None, "An encoder export (bert_tf.export).")
    vocab_file: str | None = setting(None, "Default: from the checkpoint's run or the export.")
    do_lower_case: bool | None = setting(None, "Default: from the checkpoint's run or the "
                                               "export.")
    max_seq_length: int = setting(128, "Tokens per example.")
    train_batch_size: int = setting(32, "Batch size for training.")
    learning_rate: float = setting(2e-5, "Peak learning rate (AdamW).")
    num_train_epochs: float = setting(3.0, "Epochs.")
    warmup_proportion: float = setting(0.1, "Fraction of steps for linear warmup.")
    distribution_strategy: str = setting("one_device", "Strategy for fit().",
                                         choices=("one_device", "mirrored"))
    mixed_precision: str = setting("auto", "Keras dtype policy; auto: mixed_bfloat16 where the "
                                           "hardware multiplies bfloat16 natively (GPUs of "
                                           "compute capability 8.0+, CPUs with AMX or "
                                           "AVX512_BF16), else float32.",
                                   choices=("auto", "float32", "mixed_float16",
                                            "mixed_bfloat16"))
    early_stopping_patience: int = setting(0, "Stop after this many epochs without a better "
                                              "eval score; 0: off.")
    profile_steps: str = setting("", "START,END: a TensorFlow profiler trace of training steps "
                                     "START..END (1-based) in OUTPUT_DIR/train, for "
                                     "TensorBoard's profile tab; empty: none.")
    model_name: str = setting("model", "Name of the exported model.")
    random_seed: int = setting(12345, "Seed.")

    def __post_init__(self):
        """Rejects impossible values as the flags are read, before any data or encoder loads;
        the error names every bad flag."""
        from bert_tf.training.trainer import parse_profile_steps

        positive = ("max_seq_length", "train_batch_size", "eval_batch_size",
                    "predict_batch_size", "learning_rate", "num_train_epochs")
        problems = [f"--{name} must be positive, got {getattr(self, name)}"
                    for name in positive if getattr(self, name, 1) <= 0]
        if not 0 <= self.warmup_proportion <= 1:
            problems.append(f"--warmup_proportion must be in [0, 1], got "
                            f"{self.warmup_proportion}")
        if self.early_stopping_patience < 0:
            problems.append(f"--early_stopping_patience must be 0 (off) or more, got "
                            f"{self.early_stopping_patience}")
        try:
            parse_profile_steps(self.profile_steps)
        except ValueError as e:
            problems.append(str(e))
        if problems:
            raise ValueError("; ".join(problems))


@dataclasses.dataclass(frozen=True)
class EncoderSource:
    """Where the pretrained encoder comes from, and its tokenizer."""
    vocab_file: str
    do_lower_case: bool
    checkpoint: run_dir.RunFiles | None = None  # a bert_tf checkpoint and its run files
    saved_model: str | None = None  # or an encoder export


def encoder_source(config: FinetuningConfig) -> EncoderSource:
    """Resolves --init_checkpoint or --encoder_saved_model (exactly one) with the vocab and
    lower-casing; errors name the flags."""
    import tensorflow as tf

    checkpoint, saved_model = config.init_checkpoint, config.encoder_saved_model
    if bool(checkpoint) == bool(saved_model):
        raise ValueError("give exactly one of --init_checkpoint and --encoder_saved_model "
                         f"(got {'both' if checkpoint else 'neither'})")
    if checkpoint:
        files = run_dir.resolve(checkpoint, bert_config_file=config.bert_config_file,
                                vocab_file=config.vocab_file, do_lower_case=config.do_lower_case,
                                flag="--init_checkpoint")
        vocab_file, lower = files.vocab_file, files.do_lower_case
    else:
        files = None
        if not tf.io.gfile.exists(os.path.join(saved_model, "saved_model.pb")):
            raise ValueError(f"--encoder_saved_model {saved_model}: no SavedModel there")
        vocab_file = config.vocab_file or os.path.join(saved_model, "assets", "vocab.txt")
        lower = config.do_lower_case
        if lower is None:
            lower = bool(tf.saved_model.load(saved_model).do_lower_case.numpy())
    if lower is None:
        raise ValueError("--do_lower_case is needed: the encoder source does not record it")
    return EncoderSource(vocab_file, bool(lower), files, saved_model)


def load_encoder(source: EncoderSource, pretrained=True):
    """(a Keras BertEncoder, its hidden dropout rate); call it under the strategy's scope. With
    `pretrained`, it has the source's weights; else (a finetuned run, whose checkpoint holds the
    whole task model) they come later with the task model's. An export is rebuilt as Keras
    layers: Keras optimizers cannot train a TFSMLayer's variables."""
    from bert_tf.config import BertConfig
    from bert_tf.modeling import BertEncoder

    if source.checkpoint is not None:
        if not pretrained:
            config = BertConfig.from_json_file(source.checkpoint.bert_config_file)
            return BertEncoder(config), config.hidden_dropout_prob
        pretrainer, _ = run_dir.load_pretrainer(source.checkpoint)
        return pretrainer.encoder, pretrainer.config.hidden_dropout_prob
    from bert_tf.export import load_encoder_export

    encoder, _ = load_encoder_export(source.saved_model)
    return encoder, encoder.config.hidden_dropout_prob


def make_strategy(name):
    import tensorflow as tf

    # one_device is TensorFlow's default strategy: Keras fit() under an explicit
    # OneDeviceStrategy ran 20x slower per epoch here (Keras 3.15, TF 2.20).
    return (tf.distribute.MirroredStrategy() if name == "mirrored"
            else tf.distribute.get_strategy())


def set_precision(config: FinetuningConfig, log=print):
    """Resolves --mixed_precision (auto: for the devices fit() trains on), sets it as Keras's
    global dtype policy, logs it; returns the `Precision` (policy and reason) for the records."""
    import keras

    from bert_tf.training import precision as precision_lib

    precision = precision_lib.resolve(config.mixed_precision,
                                      devices=precision_lib.training_devices())
    keras.mixed_precision.set_global_policy(precision.policy)
    log(f"precision: {precision.policy} ({precision.reason})")
    return precision


def compile_model(model, config: FinetuningConfig, total_steps, **compile_args):
    """AdamW with warmup and linear decay over `total_steps`, gradients clipped to norm 1 (loss
    scaling under the mixed_float16 policy set by `set_precision`); `compile_args` (loss,
    metrics, ...) go to `model.compile`."""
    import keras

    from bert_tf.training.optimization import create_optimizer

    model.compile(optimizer=create_optimizer(
        "adamw", config.learning_rate, total_steps,
        int(config.warmup_proportion * total_steps), clip_norm=1.0,
        mixed_precision=keras.mixed_precision.global_policy().name), **compile_args)


def fit(model, train_data, config: FinetuningConfig, steps_per_epoch, eval_data=None,
        monitor="val_accuracy"):
    """fit() for ceil(num_train_epochs) epochs (a fractional last epoch runs whole; the learning
    rate has reached its end by then), with TensorBoard logs in output_dir. With `eval_data`:
    early stopping, and the weights of the best epoch by `monitor` (kept in
    output_dir/best.weights.h5) restored at the end.

    `eval_data` is cached in memory after its first pass: Keras makes new iterators over it
    every epoch, and making an iterator over a dataset that tokenizes in-graph took about 2 s
    (tensorflow-text 2.20), twice per epoch, where a step of a small model takes 25 ms."""
    import keras

    from bert_tf.training.trainer import parse_profile_steps

    profile = parse_profile_steps(config.profile_steps)
    callbacks = [keras.callbacks.TensorBoard(config.output_dir,
                                             profile_batch=profile or 0)]
    if eval_data is not None:
        best = os.path.join(config.output_dir, "best.weights.h5")
        callbacks.append(keras.callbacks.ModelCheckpoint(
            best, monitor=monitor, mode="max", save_best_only=True, save_weights_only=True))
        if config.early_stopping_patience > 0:
            callbacks.append(keras.callbacks.EarlyStopping(
                monitor=monitor, mode="max", patience=config.early_stopping_patience))
    if eval_data is not None:
        eval_data = eval_data.cache()
    # shuffle=False: the tf.data pipelines shuffle; Keras's default of True only warns that it
    # cannot shuffle a Dataset
    model.fit(train_data, validation_data=eval_data,
              epochs=max(math.ceil(config.num_train_epochs), 1),
              steps_per_epoch=steps_per_epoch, callbacks=callbacks, verbose=2, shuffle=False)
    if eval_data is not None:
        model.load_weights(best)


def save_run(model, bert_config, source: EncoderSource, output_dir, task, **record):
    """The finetuned model as a run directory (ckpt-0 of the whole model, bert_config.json,
    vocab.txt, run_config.json with "task" and `record`): --init_checkpoint of a later run of the
    task, `python -m bert_tf.export --output_dir` for its text-in export, or
    convert_checkpoint's input."""
    import tensorflow as tf

    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), output_dir, 1)
    manager.save(checkpoint_number=0)
    run_dir.write(output_dir, bert_config, source.vocab_file,
                  do_lower_case=source.do_lower_case, task=task, **record)


def write_tsv(path, header, rows) -> None:
    """A tab-separated file with a header row, written through a temporary file."""
    io.write_file(path, "".join("\t".join(map(str, row)) + "\n" for row in [header, *rows]))
