"""A run directory: the files beside a model's checkpoints, and the one way to read them back.

    bert_config.json   the model, in google's format
    vocab.txt          the tokenizer's vocab
    run_config.json    {"do_lower_case": ..., and what made the run: "flags", "data_manifest",
                        "converted_from"}
    ckpt-N.*           tf.train.Checkpoint(model=..., optimizer=...), `checkpoint` names the latest
    train/, eval/      TensorBoard events (a finetuning job's Keras callback: train/, validation/)
    best/              the model of the best evaluated checkpoint (ckpt-STEP; a finetuning run's
                       kept epoch: ckpt-EPOCH), and info.json
    eval_results.json  the kept model's evaluation (finetuning); labels.json: its labels
    export/NAME/N/     a finetuning job's text-in SavedModel
    backup/            a finetuning job's finished epochs (finetuning.resume)
    continuous_eval.json  the sidecar evaluator's state (training.continuous_eval)

`RunDir(path)` names each of them; run_pretraining writes one, so does every finetuning job (its run_config.json also records
"task" and "labels") and convert_checkpoint's bert_tf output; export, the finetuning jobs,
convert_checkpoint and resuming read them through `resolve`, `load_pretrainer` and
`load_model`. Any path may be a gs:// URL.
"""

from __future__ import annotations

import dataclasses
import os

import tensorflow as tf

from bert_tf import io
from bert_tf.config import BertConfig

CONFIG_FILE = "bert_config.json"
VOCAB_FILE = "vocab.txt"
RUN_CONFIG_FILE = "run_config.json"
BEST_DIR = "best"


@dataclasses.dataclass(frozen=True)
class RunDir:
    """A run directory's layout: the path of each of its files (see the table above)."""
    path: str

    def file(self, *names) -> str:
        return os.path.join(self.path, *names)

    config = property(lambda self: self.file(CONFIG_FILE))
    vocab = property(lambda self: self.file(VOCAB_FILE))
    record = property(lambda self: self.file(RUN_CONFIG_FILE))
    best = property(lambda self: self.file(BEST_DIR))
    best_info = property(lambda self: self.file(BEST_DIR, "info.json"))
    labels = property(lambda self: self.file("labels.json"))
    eval_results = property(lambda self: self.file("eval_results.json"))
    backup = property(lambda self: self.file("backup"))
    continuous_eval_state = property(lambda self: self.file("continuous_eval.json"))
    train_logs = property(lambda self: self.file("train"))
    eval_logs = property(lambda self: self.file("eval"))

    def export(self, name) -> str:
        """A finetuning job's export folder (TF Serving's model_dir: versions inside)."""
        return self.file("export", name)


@dataclasses.dataclass(frozen=True)
class RunFiles:
    """Where a model's pieces are. `do_lower_case` is None when nothing records it."""
    checkpoint: str | None
    bert_config_file: str
    vocab_file: str
    do_lower_case: bool | None
    record: dict = dataclasses.field(default_factory=dict)  # run_config.json, {} if absent


def write(directory, config: BertConfig, vocab_file=None, **record) -> None:
    """bert_config.json, vocab.txt (a copy of `vocab_file`) and run_config.json (`record`)."""
    tf.io.gfile.makedirs(directory)
    run = RunDir(directory)
    config.to_json_file(run.config)
    if vocab_file:
        io.copy_file(vocab_file, run.vocab)
    io.write_json(run.record, record)


def record_last_step(directory, step) -> None:
    """Notes in run_config.json the step a run ended at where its settings do not say it (a
    budget of training time): "last_step", which a sidecar evaluator stops after."""
    io.write_json(RunDir(directory).record, {**read_record(directory), "last_step": int(step)})


def read_record(directory) -> dict:
    """run_config.json of `directory`, or {} if it has none."""
    path = RunDir(directory).record
    return io.read_json(path) if tf.io.gfile.exists(path) else {}


def resolve(checkpoint=None, directory=None, bert_config_file=None, vocab_file=None,
            do_lower_case=None, flag="--checkpoint") -> RunFiles:
    """Fills in what the caller did not give from a run directory: `directory`, else the one the
    checkpoint lies in. `checkpoint` defaults to the directory's latest, and may itself be a run
    directory (its latest checkpoint is taken); `flag` names it in errors."""
    if checkpoint == BEST_DIR:
        if not directory:
            raise ValueError(f"{flag}=best needs the run directory (--output_dir)")
        checkpoint = best_checkpoint(directory, flag)
    if checkpoint and not directory and is_run_directory(checkpoint):
        directory, checkpoint = checkpoint, None
        if os.path.basename(directory.rstrip("/")) == BEST_DIR:  # RUN/best: RUN's best
            directory, checkpoint = (os.path.dirname(directory.rstrip("/")),
                                     tf.train.latest_checkpoint(directory))
    if directory:
        checkpoint = checkpoint or tf.train.latest_checkpoint(directory)
        if not checkpoint:
            raise ValueError(f"no checkpoint in {directory}: give {flag}, or a run directory "
                             f"that has one")
    elif checkpoint:
        directory = os.path.dirname(checkpoint.removesuffix(".index"))
        if (os.path.basename(directory) == BEST_DIR
                and not tf.io.gfile.exists(os.path.join(directory, CONFIG_FILE))):
            directory = os.path.dirname(directory)  # RUN/best/ckpt-N: RUN's files
    else:
        raise ValueError(f"give {flag} or a run directory")
    checkpoint = checkpoint.removesuffix(".index")
    record = read_record(directory)
    if do_lower_case is None:
        do_lower_case = record.get("do_lower_case")
    run = RunDir(directory)
    return RunFiles(checkpoint, bert_config_file or run.config, vocab_file or run.vocab,
                    do_lower_case, record)


def best_checkpoint(directory, flag="--checkpoint"):
    """The prefix of the run's best checkpoint (`directory`/best/); a ValueError naming `flag`
    if it has none."""
    found = tf.train.latest_checkpoint(RunDir(directory).best)
    if not found:
        raise ValueError(f"{flag}=best: {directory} has no best checkpoint ({BEST_DIR}/ is "
                         f"written by run_pretraining with --best_checkpoint_metric, by its "
                         f"in-loop evaluation or by --mode=continuous_eval)")
    return found


def check_vocab_fits(vocab, config: BertConfig, vocab_file, bert_config_file) -> None:
    if len(vocab) > config.vocab_size:
        raise ValueError(f"{vocab_file} has {len(vocab)} tokens, more than vocab_size="
                         f"{config.vocab_size} of {bert_config_file}")


def load_pretrainer(files: RunFiles, flag="--init_checkpoint"):
    """(BertPretrainer with the checkpoint's weights, Vocab) from resolved files."""
    from bert_tf.modeling import build_pretrainer
    from bert_tf.text.tokenization import load_vocab

    vocab = load_vocab(files.vocab_file)
    config = BertConfig.from_json_file(files.bert_config_file)
    check_vocab_fits(vocab, config, files.vocab_file, files.bert_config_file)
    # a masked-LM-only run's checkpoint has no next-sentence head
    pretrainer = build_pretrainer(config, next_sentence=files.record.get("flags", {}).get(
        "next_sentence", True))
    load_model_weights(pretrainer, files.checkpoint, flag)
    return pretrainer, vocab


def is_run_directory(path) -> bool:
    """A directory, not a checkpoint prefix (some filesystems call any prefix a directory)."""
    return tf.io.gfile.isdir(path) and not is_checkpoint(path)


def is_checkpoint(path) -> bool:
    """Whether `path` is a checkpoint prefix (it has a .index file)."""
    return tf.io.gfile.exists(f"{path}.index")


def checkpoint_reader(prefix):
    """A reader of the variables of the checkpoint `prefix`. tf.train.load_checkpoint would first
    ask whether the prefix is a directory, which on some filesystems (ram://, where any prefix
    of a file name passes for one) it wrongly seems to be."""
    return tf.compat.v1.train.NewCheckpointReader(prefix)


def build_model(config: BertConfig, task=None, labels=()):
    """The Keras model a run's checkpoint holds: the BertPretrainer (task None), or a finetuned
    task's model (a name of `bert_tf.tasks.SPECS`, with its labels)."""
    from bert_tf.modeling import BertEncoder, build_pretrainer, build_task_model

    if task is None:
        return build_pretrainer(config)
    return build_task_model(task, BertEncoder(config), labels)


def load_model(files: RunFiles, flag="--checkpoint"):
    """(the run's model with the checkpoint's weights, Vocab), whatever its task."""
    from bert_tf.text.tokenization import load_vocab

    task = files.record.get("task")
    if task is None:
        return load_pretrainer(files, flag)
    vocab = load_vocab(files.vocab_file)
    config = BertConfig.from_json_file(files.bert_config_file)
    check_vocab_fits(vocab, config, files.vocab_file, files.bert_config_file)
    model = build_model(config, task, files.record.get("labels", []))
    load_model_weights(model, files.checkpoint, flag)
    return model, vocab


def _named_parts(model):
    """What a checkpoint's `model` is matched against. A pretrainer by its named parts alone: a
    packed and an unpacked pretrainer hold the same weights, but Keras lists their operations
    (which a checkpoint also records) in another order, so a packed run's checkpoint would not
    restore into the unpacked pretrainer that export and conversion build. Other models as
    they are."""
    from bert_tf.modeling import BertPretrainer

    if not isinstance(model, BertPretrainer):
        return model
    parts = dict(encoder=model.encoder, masked_lm_transform=model.masked_lm_transform,
                 masked_lm_output_bias=model.masked_lm_output_bias)
    if model.next_sentence is not None:
        parts["next_sentence"] = model.next_sentence
    return tf.train.Checkpoint(**parts)


def load_model_weights(model, path, flag="--init_checkpoint"):
    """Model weights from a bert_tf checkpoint (its optimizer is ignored); names the variables
    that do not fit, and says how to convert a google-research/bert checkpoint. `path` may be a
    run directory: its latest checkpoint."""
    if is_run_directory(path):
        path = resolve(directory=path, flag=flag).checkpoint
    try:
        status = tf.train.Checkpoint(model=_named_parts(model)).read(path)
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as e:
        names = set(checkpoint_reader(path).get_variable_to_shape_map())
        if "bert/embeddings/word_embeddings" in names:
            raise ValueError(
                f"{flag} {path} is a google-research/bert (TF1) checkpoint; convert it first: "
                f"python -m bert_tf.convert_checkpoint --input_format=google_tf1 --input={path} "
                f"--output_format=bert_tf --output=DIR") from None
        raise ValueError(f"{flag} {path} does not match the model "
                         f"(--bert_config_file?): {e}") from None
    except tf.errors.OpError as e:  # a file missing or damaged (NotFound, DataLoss, unknown)
        if not tf.io.gfile.exists(f"{path}.index"):
            raise ValueError(f"{flag} {path}: no such checkpoint") from None
        if not tf.io.gfile.glob(f"{path}.data-*"):
            raise ValueError(f"{flag} {path}: the checkpoint is incomplete (its .index is there, "
                             f"its .data file is not)") from None
        raise ValueError(f"{flag} {path}: the checkpoint cannot be read: "
                         f"{io.one_line(e.message)}") from None
    status.expect_partial()
