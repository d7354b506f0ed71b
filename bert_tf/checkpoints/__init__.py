"""Public BERT checkpoints in and out: google-research TF1, Hugging Face safetensors, keras-hub,
bert_tf; in only: TF Hub SavedModels and Model Garden checkpoints.

  names.py        the common in-memory form (google's names and shapes) and the name maps
  google_tf1.py   read / write google-research/bert checkpoints
  huggingface.py  read / write Hugging Face directories (safetensors, numpy API)
  native.py       read / write bert_tf checkpoints (run directories)
  model_garden.py read Model Garden TF2 checkpoints (by each variable's own name)
  tf_hub.py       read TF Hub BERT SavedModels (TF2 and TF1 Hub layouts)
  modernbert.py   read / write Hugging Face ModernBERT directories (its own name table)
  convert.py      convert(): any format in, any format out, with a report

A new format is one module with a reader and a writer, added to convert.py's tables.
"""
