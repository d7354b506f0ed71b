"""Whatever a run directory holds, exported in one of `FORMATS`: a pretrained model's encoder,
preprocessor and text-in model (bert_tf.export.pretrained) or a finetuned task's text-in model
(bert_tf.export.tasks) as SavedModels, or its LiteRT (bert_tf.export.litert) or ONNX
(bert_tf.export.onnx) model, as `python -m bert_tf.export --output_dir=RUN` writes them.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

from bert_tf import run_dir
from bert_tf.export.serving import ExportRequest
from bert_tf.tasks import spec_for
from bert_tf.training.precision import SERVING_POLICIES, global_policy


def _saved_model(request, export_dir, name):
    if request.task is None:
        from bert_tf.export.pretrained import export_all
        return export_all(request.model, request.vocab, request.do_lower_case,
                          request.max_seq_length, export_dir, name or "bert", request.version,
                          request.overwrite)
    from bert_tf.export.tasks import export_task

    name = name or spec_for(request.task).export_name
    return {name: export_task(request, os.path.join(export_dir, name))}


def _litert(request, export_dir, name):
    from bert_tf.export.litert import SUFFIX, export_litert

    name = name or spec_for(request.task).format_name(SUFFIX)
    return {name: export_litert(request, os.path.join(export_dir, name))}


def _onnx(request, export_dir, name):
    from bert_tf.export.onnx import SUFFIX, export_onnx

    name = name or spec_for(request.task).format_name(SUFFIX)
    return {name: export_onnx(request, os.path.join(export_dir, name))}


@dataclasses.dataclass(frozen=True)
class Format:
    """One export format: `write(request, export_dir, name)` -> {name: version path}."""
    write: Callable
    bfloat16: bool  # can serve in bfloat16 (--serving_precision); else float32 only


FORMATS = {"saved_model": Format(_saved_model, bfloat16=True),
           "litert": Format(_litert, bfloat16=False),
           "onnx": Format(_onnx, bfloat16=False)}


def export_run(files: run_dir.RunFiles, export_dir, max_seq_length=None, model_name=None,
               version=None, overwrite=False, format="saved_model",
               serving_precision="float32"):
    """Writes the run's SavedModel(s) (or its model in another of `FORMATS`) under
    export_dir/<name>/<version>; returns {name: path}. A finetuned run's labels and settings
    (a question-answering run's windowing) come from its record; `max_seq_length` defaults to
    the one the run recorded, else 128; the model computes in `serving_precision`
    (`training.precision.SERVING_POLICIES`), whatever the run trained in."""
    if format not in FORMATS:
        raise ValueError(f"--format={format}: expected one of {', '.join(FORMATS)}")
    if max_seq_length is None:
        max_seq_length = files.record.get("flags", {}).get("max_seq_length") or 128
    if files.do_lower_case is None:
        raise ValueError("--do_lower_case is needed: the run directory does not record it")
    spec_for(files.record.get("task"))  # an unknown task is named before the model loads
    with global_policy(SERVING_POLICIES[serving_precision]):
        model, vocab = run_dir.load_model(files)
    request = ExportRequest(files.record.get("task"), model, vocab, files.do_lower_case,
                            max_seq_length, files.record, version, overwrite)
    return FORMATS[format].write(request, export_dir, model_name)
