"""Text -> token ids: vocab files and the in-graph WordPiece tokenizer, the preprocessing that
exports and finetuning share, and vocab learning.

  tokenization.py    vocab.txt, special tokens by name, WordpieceTokenizer (TF ops)
  preprocessing.py   strings -> the encoder's three inputs (single texts and pairs)
  vocab_learning.py  learn a WordPiece vocab from text files
"""
