"""What each kind of model is, in one table: the pretrained encoder and every finetuned task.

A run directory records its kind in run_config.json's "task" (none: a pretrained model). Every
layer that treats kinds differently reads the kind's `TaskSpec` here instead of comparing
names: the heads (bert_tf.modeling.heads), checkpoint conversion (bert_tf.checkpoints), the
exports (bert_tf.export) and the finetuning jobs (bert_tf.finetuning).

    spec = SPECS["question_answering"]       # or spec_for(run_record.get("task"))
    spec.head                                # "question_answerer": heads.build_task_model's
    spec.google_head, spec.google_outputs    # "cls/squad/output_", 2
    spec.export_name                         # "squad" (LiteRT: "squad_litert", ONNX: ...)

Adding a kind: one `TaskSpec` below, its head in modeling/heads.py (`HEADS`), its text-in export
in export/tasks.py (`TEXT_IN`) and its data code in finetuning/ (docs/development.md).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """One kind of model and what every layer needs to know about it.

    Attributes:
      name: run_config.json's "task"; None for a pretrained model.
      head: which head `modeling.heads.HEADS` builds (and which text-in export writes it).
      labelled: trained on named labels (classes or tags, labels.json); else none.
      pooled: the head reads the pooled [CLS] vector; else each token's vector (the pooler is
        frozen and left out of transformers' model).
      google_head: the head's variable prefix in google-research/bert's checkpoints
        (run_classifier's `output_`, run_squad's `cls/squad/output_`); None: no google head.
      google_part: the head's name in conversion reports.
      google_outputs: the head's fixed number of outputs (None: one per label).
      huggingface: transformers' class for the model (None: it has none).
      keras_hub: the registered name of keras-hub's class that holds this model (None:
        keras-hub has none).
      export_name: the default name of its export; LiteRT and ONNX add `_litert` / `_onnx`.
      litert_text_in: the LiteRT model takes texts (tokenized in the graph); else ids.
      score: what the best epoch is chosen by (larger is better).
    """
    name: str | None
    head: str | None
    labelled: bool
    pooled: bool
    google_head: str | None
    google_part: str | None
    google_outputs: int | None
    huggingface: str | None
    keras_hub: str | None
    export_name: str
    litert_text_in: bool
    score: str

    def format_name(self, format_suffix: str) -> str:
        """The default export name in a format: "squad" + "_litert"."""
        return self.export_name + format_suffix

    @property
    def convertible(self) -> bool:
        """google-research/bert and transformers have a counterpart of this model."""
        return self.huggingface is not None


CLASSIFICATION, REGRESSION = "classification", "regression"
QUESTION_ANSWERING, TAGGING = "question_answering", "tagging"

PRETRAINED = TaskSpec(
    name=None, head=None, labelled=False, pooled=True, google_head=None, google_part=None,
    google_outputs=None, huggingface="BertForPreTraining", keras_hub="keras_hub>BertBackbone",
    export_name="bert_encoder", litert_text_in=False, score="masked-LM accuracy")

SPECS = {spec.name: spec for spec in (
    TaskSpec(name=CLASSIFICATION, head="classifier", labelled=True, pooled=True,
             google_head="output_", google_part="classification head", google_outputs=None,
             huggingface="BertForSequenceClassification",
             keras_hub="keras_hub>BertTextClassifier", export_name="classifier",
             litert_text_in=True, score="accuracy, or the GLUE task's metric"),
    TaskSpec(name=REGRESSION, head="regressor", labelled=False, pooled=True,
             google_head=None, google_part=None, google_outputs=None, huggingface=None,
             keras_hub=None, export_name="regressor", litert_text_in=True,
             score="Pearson correlation, or STS-B's metric"),
    TaskSpec(name=QUESTION_ANSWERING, head="question_answerer", labelled=False,
             pooled=False, google_head="cls/squad/output_",
             google_part="question-answering head", google_outputs=2,
             huggingface="BertForQuestionAnswering", keras_hub=None, export_name="squad",
             litert_text_in=False, score="F1"),
    # token classification is not in google's release: named like run_squad's head
    TaskSpec(name=TAGGING, head="tagger", labelled=True, pooled=False,
             google_head="cls/token_classification/output_",
             google_part="token-classification head", google_outputs=None,
             huggingface="BertForTokenClassification", keras_hub=None, export_name="tagger",
             litert_text_in=False, score="entity F1"),
)}


def spec_for(task) -> TaskSpec:
    """The spec of run_config.json's "task" (None: pretrained); an unknown name is an error
    naming the known ones."""
    if task is None:
        return PRETRAINED
    if task not in SPECS:
        raise ValueError(f"unknown task {task!r} (run_config.json's \"task\"); bert_tf knows "
                         f"{', '.join(SPECS)}")
    return SPECS[task]


def with_google_head(google_names) -> TaskSpec | None:
    """The finetuned kind whose google head is among `google_names` (None: no task head)."""
    found = None
    for spec in SPECS.values():
        if spec.google_head and spec.google_head + "weights" in google_names:
            found = spec
    return found


def from_huggingface(architectures) -> TaskSpec | None:
    """The finetuned kind of a transformers config's `architectures` (None: none of ours)."""
    for spec in SPECS.values():
        if spec.name is not None and spec.huggingface in (architectures or ()):
            return spec
    return None
