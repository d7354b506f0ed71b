"""bert_tf's own checkpoints: a tf.train.Checkpoint of our model in a run directory
(bert_tf.run_dir), read into and written from the common in-memory form.
"""

from __future__ import annotations

import tensorflow as tf

from bert_tf import run_dir
from bert_tf.checkpoints.names import Weights, pretrainer_tensors, vocab_and_case


def read_bert_tf(path, bert_config_file=None, vocab_file=None, do_lower_case=None) -> Weights:
    """A bert_tf checkpoint (or a run directory's latest) with the run directory's
    bert_config.json, vocab.txt and recorded lower-casing."""
    path = path.removesuffix(".index")
    directory = None if run_dir.is_checkpoint(path) else path
    if directory and not (tf.io.gfile.isdir(directory) and tf.train.latest_checkpoint(directory)):
        raise ValueError(f"--input {path}: no checkpoint in this directory")
    files = run_dir.resolve(None if directory else path, directory, bert_config_file,
                            vocab_file, do_lower_case, flag="--input")
    notes = []
    vocab_file, do_lower_case = vocab_and_case(files.vocab_file, files.do_lower_case, notes,
                                               files.checkpoint)
    pretrainer, _ = run_dir.load_pretrainer(files, flag="--input")
    skipped = [name for name in run_dir.checkpoint_reader(files.checkpoint)
               .get_variable_to_shape_map()
               if not name.startswith(("model/", "_CHECKPOINTABLE_OBJECT_GRAPH"))]
    return Weights(pretrainer.config, pretrainer_tensors(pretrainer), skipped, vocab_file,
                   do_lower_case, notes)


def write_bert_tf(pretrainer, directory, do_lower_case, converted_from):
    """ckpt-0 (model only, as `--init_checkpoint` reads it) and the run directory's files
    (vocab.txt apart: the caller copies it)."""
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=pretrainer), directory, 1)
    manager.save(checkpoint_number=0)  # relative paths in `checkpoint`: the directory may move
    run_dir.write(directory, pretrainer.config, do_lower_case=do_lower_case,
                  converted_from=converted_from)
