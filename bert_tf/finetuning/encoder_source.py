"""The encoder a finetuning job (or extract_features) starts from: a bert_tf checkpoint or run
directory, or an encoder export, with its vocab and lower-casing resolved and checked."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from bert_tf import run_dir
from bert_tf.config import BertConfig
from bert_tf.finetuning.job_settings import EncoderSettings


@dataclasses.dataclass(frozen=True)
class EncoderSource:
    """Where the pretrained encoder comes from, and its tokenizer."""
    vocab_file: str
    do_lower_case: bool
    checkpoint: run_dir.RunFiles | None = None  # a bert_tf checkpoint and its run files
    saved_model: str | None = None  # or an encoder export
    recorded_lower_case: bool | None = None  # what the source records, when it does
    recorded_by: str = ""  # which source that is, for messages
    bert_config: Any = None  # the encoder's BertConfig
    hub_weights: Any = None  # a TF Hub SavedModel's weights (checkpoints.names.Weights)

    def check_sequence_length(self, seq_length, flag="--max_seq_length"):
        """Refuses a length the encoder's position embeddings cannot hold, before any work."""
        self.bert_config.check_sequence_length(seq_length, flag)


def encoder_source(config: EncoderSettings) -> EncoderSource:
    """Resolves --init_checkpoint or --encoder_saved_model (exactly one) with the vocab and
    lower-casing; errors name the flags."""
    import tensorflow as tf

    checkpoint, saved_model = config.init_checkpoint, config.encoder_saved_model
    hub = None
    if bool(checkpoint) == bool(saved_model):
        raise ValueError("give exactly one of --init_checkpoint and --encoder_saved_model "
                         f"(got {'both' if checkpoint else 'neither'})")
    if checkpoint:
        files = run_dir.resolve(checkpoint, bert_config_file=config.bert_config_file,
                                vocab_file=config.vocab_file, do_lower_case=config.do_lower_case,
                                flag="--init_checkpoint")
        vocab_file, lower = files.vocab_file, files.do_lower_case
        recorded = files.record.get("do_lower_case")
        recorded_by = f"the run of --init_checkpoint {checkpoint}"
        bert_config = BertConfig.from_json_file(files.bert_config_file)
    else:
        files = None
        if not tf.io.gfile.exists(os.path.join(saved_model, "saved_model.pb")):
            raise ValueError(f"--encoder_saved_model {saved_model}: no SavedModel there")
        recorded_by = f"--encoder_saved_model {saved_model}"
        hub = None if _is_bert_tf_export(saved_model) else _tf_hub_weights(config)
        if hub is None:
            vocab_file = config.vocab_file or os.path.join(saved_model, "assets", "vocab.txt")
            from bert_tf.export.encoder import export_config

            loaded = tf.saved_model.load(saved_model)
            bert_config = export_config(loaded, recorded_by)
            recorded = bool(loaded.do_lower_case.numpy())
        else:
            vocab_file, bert_config, recorded = hub.vocab_file, hub.config, hub.do_lower_case
        lower = recorded if config.do_lower_case is None else config.do_lower_case
    if lower is None:
        raise ValueError("--do_lower_case is needed: the encoder source does not record it")
    return EncoderSource(vocab_file, bool(lower), files, saved_model, recorded, recorded_by,
                         bert_config, hub)


def _is_bert_tf_export(saved_model) -> bool:
    """An encoder export of bert_tf's carries its config (a `bert_config` variable)."""
    import tensorflow as tf

    prefix = os.path.join(saved_model, "variables", "variables")
    return (not tf.io.gfile.exists(prefix + ".index")
            or tf.train.load_checkpoint(prefix).has_tensor(
                "bert_config/.ATTRIBUTES/VARIABLE_VALUE"))


def _tf_hub_weights(config: EncoderSettings):
    """A TF Hub BERT encoder given as --encoder_saved_model, read as convert_checkpoint's
    --input_format=tf_hub reads it (its config, vocab and lower-casing)."""
    from bert_tf.checkpoints.tf_hub import read_tf_hub

    flag = f"--encoder_saved_model {config.encoder_saved_model}"
    try:
        return read_tf_hub(config.encoder_saved_model, config.bert_config_file,
                           config.vocab_file, config.do_lower_case)
    except ValueError as e:
        raise ValueError(f"{flag}: neither a bert_tf encoder export nor a TF Hub BERT encoder "
                         f"({e})") from None


def source_vocab(source: EncoderSource, allow_case_mismatch=False):
    """The source's `Vocab`; a lower-casing that contradicts it or the source's record is
    refused (`text.tokenization.check_casing`) unless `allow_case_mismatch`."""
    from bert_tf.text.tokenization import check_casing, load_vocab

    vocab = load_vocab(source.vocab_file)
    if not allow_case_mismatch:
        check_casing(vocab, source.do_lower_case, source.vocab_file, source.recorded_lower_case,
                     source.recorded_by)
    return vocab


def continues(source: EncoderSource, task, labels) -> bool:
    """Whether the source is a finetuned model of `task` with the same labels: training then
    continues from the whole model (its head included); else only its encoder is taken."""
    if source.checkpoint is None:
        return False
    record = source.checkpoint.record
    return record.get("task") == task and list(record.get("labels", [])) == list(labels)


def load_encoder(source: EncoderSource):
    """A Keras `BertEncoder` with the source's weights: a pretrained checkpoint's, a finetuned
    run's (whatever its task), or an export's, rebuilt as Keras layers (Keras optimizers cannot
    train a TFSMLayer's variables). Call it under the strategy's scope."""
    from bert_tf.modeling import task_encoder

    if source.checkpoint is not None:
        model, _ = run_dir.load_model(source.checkpoint, flag="--init_checkpoint")
        return task_encoder(model)
    if source.hub_weights is not None:
        from bert_tf.checkpoints.names import ENCODER, POOLER, assign_to_model, group
        from bert_tf.modeling import BertEncoder

        encoder = BertEncoder(source.bert_config)
        assign_to_model(encoder, {name: value for name, value in source.hub_weights.tensors.items()
                                  if group(name) in (ENCODER, POOLER)})
        return encoder
    from bert_tf.export import load_encoder_export

    encoder, _ = load_encoder_export(source.saved_model)
    return encoder
