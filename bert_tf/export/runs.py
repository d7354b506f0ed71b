"""Whatever a run directory holds, exported: a pretrained model's encoder, preprocessor and
text-in model (bert_tf.export.pretrained), or a finetuned task's text-in model (question
answering, tagging), as `python -m bert_tf.export --output_dir=RUN` writes them.
"""

import os

from bert_tf import run_dir

DEFAULT_NAMES = {None: "bert", "question_answering": "squad", "tagging": "tagger"}


def export_run(files: run_dir.RunFiles, export_dir, max_seq_length=128, model_name=None,
               version=None, overwrite=False):
    """Writes the run's SavedModel(s) under export_dir/<name>/<version>; returns {name: path}.
    A question-answering run's windowing (doc_stride, ...) comes from its recorded flags."""
    if files.do_lower_case is None:
        raise ValueError("--do_lower_case is needed: the run directory does not record it")
    task = files.record.get("task")
    name = model_name or DEFAULT_NAMES[task]
    model, vocab = run_dir.load_model(files)
    if task is None:
        from bert_tf.export.pretrained import export_all
        return export_all(model, vocab, files.do_lower_case, max_seq_length, export_dir, name,
                          version, overwrite)
    model_dir = os.path.join(export_dir, name)
    if task == "question_answering":
        from bert_tf.export.question_answering import export_question_answerer
        recorded = files.record.get("flags", {})
        path = export_question_answerer(
            model, vocab, files.do_lower_case, max_seq_length, recorded.get("doc_stride", 128),
            recorded.get("max_query_length", 64), recorded.get("max_answer_length", 30),
            recorded.get("version_2_with_negative", False),
            recorded.get("null_score_diff_threshold", 0.0), model_dir, version, overwrite)
    else:
        from bert_tf.export.tagging import export_tagger
        path = export_tagger(model, vocab, files.do_lower_case, max_seq_length,
                             files.record["labels"], model_dir, version, overwrite)
    return {name: path}
