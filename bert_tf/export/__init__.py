"""SavedModels for finetuning (TF Hub style) and for TF Serving (text in), in TF Serving's
`<export_dir>/<name>/<version>/` layout. `python -m bert_tf.export` is the command line.

  serving.py      the layout (versions, atomic writes) and the base of every exported module
  encoder.py      the encoder export, and rebuilding a Keras encoder from one
  text_model.py   the pretrained model, text in: embeddings and fill-mask
  pretrained.py   export_all: a pretrained model's encoder, preprocessor and text-in model
  classifier.py   a finetuned classifier, text in
  question_answering.py, tagging.py   finetuned question answering and tagging, text in
  runs.py         whatever a run directory holds (the command line's entry)
"""

from bert_tf.export.encoder import load_encoder_export
from bert_tf.export.pretrained import export_all
from bert_tf.export.serving import next_version, save_version

__all__ = ["export_all", "load_encoder_export", "next_version", "save_version"]
