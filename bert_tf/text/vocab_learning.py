"""Learn a WordPiece vocab from text files (`python -m bert_tf.build_vocab` is its command line).

The learner is Hugging Face `tokenizers`' WordPiece trainer (Rust, multi-threaded), chosen for
speed over tensorflow-text's `bert_vocab_from_dataset`, which runs in Python. Its BERT normaliser
and pre-tokenizer split text as google's BasicTokenizer and our `WordpieceTokenizer` do. The
special tokens [PAD] [UNK] [CLS] [SEP] [MASK] take ids 0-4.
"""

from bert_tf import io
from bert_tf.text.tokenization import SPECIAL_TOKENS


def learn_vocab(input_files, vocab_size=30522, do_lower_case=True, min_frequency=2,
                limit_alphabet=1000):
    """Learns WordPiece tokens from text files; returns them in id order (specials first)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    files = io.expand_file_patterns(input_files)
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"--vocab_size must exceed the {len(SPECIAL_TOKENS)} special tokens, "
                         f"got {vocab_size}")
    def train(local_files, size, first_tokens):
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=do_lower_case,
            lowercase=do_lower_case)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece(prefix="##")
        trainer = trainers.WordPieceTrainer(
            vocab_size=size, min_frequency=min_frequency, limit_alphabet=limit_alphabet,
            special_tokens=first_tokens, continuing_subword_prefix="##", show_progress=False)
        tokenizer.train(local_files, trainer)
        vocab = tokenizer.get_vocab()
        return sorted(vocab, key=vocab.get)

    with io.local_copies(files) as local_files:  # the trainer reads local files only
        # The trainer numbers the "##c" tokens in hash-map order, and its merges break ties by
        # those numbers: the same text gave another vocab on each run. A first pass finds the
        # alphabet; the second is given every "##c" up front, in sorted order: same bytes each
        # run.
        alphabet = sorted(t for t in train(local_files, 1, list(SPECIAL_TOKENS))
                          if len(t) == 1 and t not in SPECIAL_TOKENS)
        tokens = train(local_files, vocab_size,
                       list(SPECIAL_TOKENS) + ["##" + char for char in alphabet])
    if not alphabet:
        raise ValueError(f"--input_file: no text to learn a vocab from in {', '.join(files)}")
    return tokens
