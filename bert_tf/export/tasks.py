"""A finetuned task's text-in SavedModel, from the model and its run record: one table from a
head (`bert_tf.tasks.TaskSpec.head`) to its export, used by the finetuning jobs and by
`python -m bert_tf.export` alike.

`record` is the run's run_config.json: "labels" (classes or tags in id order), "pair" (a
sentence-pair classifier) and, for question answering, the windowing in "flags" (doc_stride,
max_query_length, max_answer_length, version_2_with_negative, null_score_diff_threshold).
"""

from bert_tf.export.classifier import export_classifier
from bert_tf.export.question_answering import export_question_answerer
from bert_tf.export.tagging import export_tagger
from bert_tf.tasks import spec_for


# a spec's head -> its text-in export (a regressor's is the classifier's, without labels)
TEXT_IN = {"classifier": export_classifier, "regressor": export_classifier,
           "question_answerer": export_question_answerer, "tagger": export_tagger}


def export_task(request, model_dir):
    """Writes the text-in SavedModel of a finetuned model (an `export.serving.ExportRequest`)
    to model_dir/<version>; returns its path."""
    spec = spec_for(request.task)
    if spec.head is None:
        raise ValueError("a pretrained model has no task export: use export.pretrained")
    return TEXT_IN[spec.head](request, model_dir)
