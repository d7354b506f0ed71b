"""Finetuning with Keras `fit()`: a shared harness and one module per task.

  harness.py          common settings, the pretrained encoder, compile + fit, output files
  labelled_files.py   tsv / csv / jsonl files of labelled texts
  classification.py   sentence and sentence-pair classification
"""
