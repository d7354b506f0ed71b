"""A finetuned task's text-in SavedModel, from the model and its run record: one table from a
head (`bert_tf.tasks.TaskSpec.head`) to its export, used by the finetuning jobs and by
`python -m bert_tf.export` alike.

`record` is the run's run_config.json: "labels" (classes or tags in id order), "pair" (a
sentence-pair classifier) and, for question answering, the windowing in "flags" (doc_stride,
max_query_length, max_answer_length, version_2_with_negative, null_score_diff_threshold).
"""

from bert_tf.tasks import spec_for


def _classifier(model, vocab, do_lower_case, max_seq_length, record, model_dir, version,
                overwrite):
    from bert_tf.export.classifier import export_classifier

    return export_classifier(model, vocab, do_lower_case, max_seq_length, record.get("labels"),
                             bool(record.get("pair", False)), model_dir, version, overwrite)


def _question_answerer(model, vocab, do_lower_case, max_seq_length, record, model_dir, version,
                       overwrite):
    from bert_tf.export.question_answering import export_question_answerer

    flags = record.get("flags", {})
    return export_question_answerer(
        model, vocab, do_lower_case, max_seq_length, flags.get("doc_stride", 128),
        flags.get("max_query_length", 64), flags.get("max_answer_length", 30),
        flags.get("version_2_with_negative", False), flags.get("null_score_diff_threshold", 0.0),
        model_dir, version, overwrite)


def _tagger(model, vocab, do_lower_case, max_seq_length, record, model_dir, version, overwrite):
    from bert_tf.export.tagging import export_tagger

    return export_tagger(model, vocab, do_lower_case, max_seq_length, record["labels"],
                         model_dir, version, overwrite)


# a spec's head -> its text-in export (a regressor's is the classifier's, without labels)
TEXT_IN = {"classifier": _classifier, "regressor": _classifier,
           "question_answerer": _question_answerer, "tagger": _tagger}


def export_task(task, model, vocab, do_lower_case, max_seq_length, record, model_dir,
                version=None, overwrite=False):
    """Writes the text-in SavedModel of a `task` model to model_dir/<version>; returns its
    path."""
    spec = spec_for(task)
    if spec.head is None:
        raise ValueError("a pretrained model has no task export: use export.pretrained")
    return TEXT_IN[spec.head](model, vocab, do_lower_case, max_seq_length, record, model_dir,
                         version, overwrite)
