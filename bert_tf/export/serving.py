"""TF Serving's layout: `<model_dir>/<version>/saved_model.pb`, one integer directory per version,
each written to a temporary directory and renamed when complete (a server never loads half of
one), by one exporter at a time (a lock in model_dir). And the base of every exported module.
"""

import dataclasses
import os
import re
from typing import Any

import tensorflow as tf

from bert_tf import io, locks


@dataclasses.dataclass(frozen=True)
class ExportRequest:
    """A model to export and what its run record says about it: every format's writer
    (bert_tf.export.runs.FORMATS, export.tasks, LiteRT, ONNX) takes one."""
    task: str | None  # a name of bert_tf.tasks.SPECS; None: a pretrained model
    model: Any  # the task's Keras model, or a BertPretrainer
    vocab: Any  # text.tokenization.Vocab
    do_lower_case: bool
    max_seq_length: int
    record: dict = dataclasses.field(default_factory=dict)  # run_config.json: "labels",
    # "pair", the question-answering windowing in "flags"
    version: int | None = None  # default: one above the highest
    overwrite: bool = False

    @property
    def labels(self) -> list:
        return list(self.record.get("labels") or [])


# The most model windows one text of a request runs as (the tagging and question-answering
# signatures window long texts): what one request can cost is bounded; the rest of a longer text
# is not read.
MAX_WINDOWS = 64


class SavedModule(tf.Module):
    """A tf.Module whose `variables` and `trainable_variables` are attributes saved with it.

    TF Hub's reusable SavedModel API reads them from the loaded object; tf.Module's own are
    computed properties, which a SavedModel does not keep, so they are plain attributes here.
    """
    variables = trainable_variables = None

    def hold(self, **models):
        """Keeps Keras models for the signatures to call, saved through `variables` only.
        Tracked as attributes, each Keras variable would be saved twice (itself and the
        tf.Variable inside it) and a compiled model would bring its optimizer's slots: a
        finetuned bert_base classifier took 1.7 GB on disk instead of 0.4 GB."""
        for name, model in models.items():
            object.__setattr__(self, name, model)  # past tf.Module's tracking


def next_version(model_dir) -> int:
    versions = [int(v) for v in (tf.io.gfile.listdir(model_dir)
                                 if tf.io.gfile.isdir(model_dir) else [])
                if re.fullmatch(r"\d+/?", v)]
    return max(versions, default=0) + 1


def save_version(module, signatures, model_dir, version=None, overwrite=False,
                 warmup=None) -> str:
    """Saves a SavedModel to model_dir/<version> (default: one above the highest present)
    through a temporary directory; returns the path. `warmup`, a (vocab, max_seq_length) pair,
    adds TF Serving's warm-up requests for the signatures (bert_tf.export.warmup)."""
    from bert_tf.export.warmup import warmup_requests, write_warmup

    def write(tmp):
        tf.saved_model.save(module, tmp, signatures=signatures)
        if warmup is not None:
            write_warmup(tmp, warmup_requests(signatures, *warmup))

    return write_version(write, model_dir, version, overwrite)


def write_version(write, model_dir, version=None, overwrite=False) -> str:
    """Calls write(tmp) to fill a temporary directory that becomes model_dir/<version> when
    complete (default version: one above the highest present); returns the path."""
    with locks.output_lock(os.path.join(model_dir, ".bert_tf.lock"), f"--export_dir {model_dir}"):
        io.remove_all(tf.io.gfile.glob(os.path.join(model_dir, ".tmp-*")))  # a killed export's
        if version is not None and version < 1:
            raise ValueError(f"--version={version}: TF Serving loads versions 1 and up")
        version = version or next_version(model_dir)
        target = os.path.join(model_dir, str(version))
        if tf.io.gfile.exists(target) and not overwrite:
            raise FileExistsError(f"{target} exists; pass --overwrite or another --version")
        tmp = os.path.join(model_dir, f".tmp-{version}-{os.getpid()}")
        with io.directory_written_atomically(target, tmp):
            write(tmp)
    return target


def saved_model_ops(path) -> set:
    """The op types a SavedModel's graph and its functions use: what a server must have
    registered to load it (TF Serving fails on the first it lacks: "Op type not registered")."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(path, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    ops, functions = set(), set()
    for meta_graph in saved_model.meta_graphs:
        ops.update(node.op for node in meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            functions.add(function.signature.name)
            ops.update(node.op for node in function.node_def)
    return ops - functions  # a call of a library function is a node whose op is its name


def non_core_ops(ops) -> set:
    """Those of `ops` that TensorFlow's core does not define (tf.raw_ops): tensorflow-text's."""
    return {op for op in ops if not hasattr(tf.raw_ops, op)}
