"""Whatever a run directory holds, exported: a pretrained model's encoder, preprocessor and
text-in model (bert_tf.export.pretrained), or a finetuned task's text-in model
(bert_tf.export.tasks), as `python -m bert_tf.export --output_dir=RUN` writes them; or its
LiteRT (bert_tf.export.litert) or ONNX (bert_tf.export.onnx) model.
"""

import os

from bert_tf import run_dir
from bert_tf.export.tasks import DEFAULT_NAMES, export_task
from bert_tf.training.precision import SERVING_POLICIES, global_policy


def export_run(files: run_dir.RunFiles, export_dir, max_seq_length=None, model_name=None,
               version=None, overwrite=False, format="saved_model",
               serving_precision="float32"):
    """Writes the run's SavedModel(s) (or, with format="litert" or "onnx", its LiteRT or ONNX
    model) under export_dir/<name>/<version>; returns {name: path}. A finetuned run's labels
    and settings (a question-answering run's windowing) come from its record; `max_seq_length`
    defaults to the one the run recorded, else 128; the model computes in
    `serving_precision` (`training.precision.SERVING_POLICIES`), whatever the run trained in."""
    if max_seq_length is None:
        max_seq_length = files.record.get("flags", {}).get("max_seq_length") or 128
    if files.do_lower_case is None:
        raise ValueError("--do_lower_case is needed: the run directory does not record it")
    task = files.record.get("task")
    with global_policy(SERVING_POLICIES[serving_precision]):
        model, vocab = run_dir.load_model(files)
    if format == "litert":
        from bert_tf.export.litert import DEFAULT_NAMES as LITERT_NAMES, export_litert

        name = model_name or LITERT_NAMES[task]
        return {name: export_litert(task, model, vocab, files.do_lower_case, max_seq_length,
                                    files.record, os.path.join(export_dir, name), version,
                                    overwrite)}
    if format == "onnx":
        from bert_tf.export.onnx import DEFAULT_NAMES as ONNX_NAMES, export_onnx

        name = model_name or ONNX_NAMES[task]
        return {name: export_onnx(task, model, vocab, files.do_lower_case, files.record,
                                  os.path.join(export_dir, name), version, overwrite)}
    if task is None:
        from bert_tf.export.pretrained import export_all
        return export_all(model, vocab, files.do_lower_case, max_seq_length, export_dir,
                          model_name or "bert", version, overwrite)
    name = model_name or DEFAULT_NAMES[task]
    return {name: export_task(task, model, vocab, files.do_lower_case, max_seq_length,
                              files.record, os.path.join(export_dir, name), version, overwrite)}
