"""bert_tf's own checkpoints: a tf.train.Checkpoint of our model in a run directory
(bert_tf.run_dir), read into and written from the common in-memory form. The model is a
BertPretrainer, or a finetuned task model when the run directory records its task.
"""

from __future__ import annotations

import tensorflow as tf

from bert_tf import run_dir
from bert_tf.checkpoints.names import (Weights, google_shapes, model_tensors, refuse_beyond_bert,
                                       vocab_and_case)
from bert_tf.config import BertConfig
from bert_tf.tasks import spec_for


def read_bert_tf(path, bert_config_file=None, vocab_file=None, do_lower_case=None) -> Weights:
    """A bert_tf checkpoint (or a run directory's latest) with the run directory's
    bert_config.json, vocab.txt, recorded lower-casing and task."""
    path = path.removesuffix(".index")
    directory = None if run_dir.is_checkpoint(path) else path
    if directory and not (tf.io.gfile.isdir(directory) and tf.train.latest_checkpoint(directory)):
        raise ValueError(f"--input {path}: no checkpoint in this directory")
    files = run_dir.resolve(None if directory else path, directory, bert_config_file,
                            vocab_file, do_lower_case, flag="--input")
    notes = []
    vocab_file, do_lower_case = vocab_and_case(files.vocab_file, files.do_lower_case, notes,
                                               files.checkpoint)
    task, labels = files.record.get("task"), list(files.record.get("labels", []))
    if not spec_for(task).convertible:
        raise ValueError(f"--input {path}: a regression run (one score per text) has no google "
                         f"or Hugging Face counterpart here; export it for serving with python "
                         f"-m bert_tf.export")
    config = BertConfig.from_json_file(files.bert_config_file)
    refuse_beyond_bert(config, f"--input {path}")  # before its tensors are read as BERT's
    model, _ = run_dir.load_model(files, flag="--input")
    skipped = [name for name in run_dir.checkpoint_reader(files.checkpoint)
               .get_variable_to_shape_map()
               if not name.startswith(("model/", "_CHECKPOINTABLE_OBJECT_GRAPH"))]
    tensors = model_tensors(model, google_shapes(config, task, len(labels)))
    return Weights(config, tensors, skipped, vocab_file, do_lower_case, notes, task=task,
                   labels=labels)


def write_bert_tf(model, config, directory, do_lower_case, converted_from, task=None,
                  labels=(), flags=None):
    """ckpt-0 (model only: --init_checkpoint of run_pretraining, or of the task's job) and the
    run directory's files (vocab.txt apart: the caller copies it)."""
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), directory, 1)
    manager.save(checkpoint_number=0)  # relative paths in `checkpoint`: the directory may move
    record = {"task": task} if task else {}
    if labels:
        record["labels"] = list(labels)
    if flags:  # the model's own settings (a masked-LM-only pretrainer: next_sentence false)
        record["flags"] = dict(flags)
    run_dir.write(directory, config, do_lower_case=do_lower_case, converted_from=converted_from,
                  **record)
