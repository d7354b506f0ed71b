"""CLI and library: learn a WordPiece vocab from text and write it as google's vocab.txt.

    python -m bert_tf.build_vocab --input_file='corpus/*.txt' --output_file=vocab.txt \
        --vocab_size=30522 --do_lower_case=true

The learner is Hugging Face `tokenizers`' WordPiece trainer (Rust, multi-threaded), chosen for
speed over tensorflow-text's
`bert_vocab_from_dataset`, which runs in Python. Its BERT normaliser and pre-tokenizer
split text as google's BasicTokenizer and our `tokenization.WordpieceTokenizer` do. The special
tokens [PAD] [UNK] [CLS] [SEP] [MASK] take ids 0-4.
"""

import os
import sys

from absl import app, flags

from bert_tf import features
from bert_tf.tokenization import SPECIAL_TOKENS, write_vocab


def learn_vocab(input_files, vocab_size=30522, do_lower_case=True, min_frequency=2,
                limit_alphabet=1000):
    """Learns WordPiece tokens from text files; returns them in id order (specials first)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    files = features.expand_file_patterns(input_files)
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"--vocab_size must exceed the {len(SPECIAL_TOKENS)} special tokens, "
                         f"got {vocab_size}")
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=do_lower_case,
        lowercase=do_lower_case)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, limit_alphabet=limit_alphabet,
        special_tokens=list(SPECIAL_TOKENS), continuing_subword_prefix="##",
        show_progress=False)
    tokenizer.train(files, trainer)
    vocab = tokenizer.get_vocab()
    tokens = sorted(vocab, key=vocab.get)
    if len(tokens) <= len(SPECIAL_TOKENS):
        raise ValueError(f"--input_file: no text to learn a vocab from in {', '.join(files)}")
    return tokens


FLAGS = flags.FLAGS


def define_flags():
    """The command-line flags; defined only when run as a program, so importing is free."""
    flags.DEFINE_string("input_file", None, "Comma list of globs of text files.")
    flags.DEFINE_string("output_file", None, "Where to write vocab.txt.")
    flags.DEFINE_integer("vocab_size", 30522, "Most tokens in the vocab, special tokens included.")
    flags.DEFINE_bool("do_lower_case", True, "Lower-case and strip accents (uncased models).")
    flags.DEFINE_integer("min_frequency", 2, "Least count for a merged piece to enter the vocab.")
    flags.DEFINE_integer("limit_alphabet", 1000, "Most single characters kept.")


def main(argv):
    del argv
    try:
        tokens = learn_vocab(FLAGS.input_file, FLAGS.vocab_size, FLAGS.do_lower_case,
                             FLAGS.min_frequency, FLAGS.limit_alphabet)
    except (ValueError, OSError) as e:
        sys.exit(f"build_vocab: error: {e}")
    directory = os.path.dirname(FLAGS.output_file)
    if directory:
        os.makedirs(directory, exist_ok=True)
    write_vocab(tokens, FLAGS.output_file)
    print(f"Wrote {len(tokens):,} tokens to {FLAGS.output_file}")


if __name__ == "__main__":
    define_flags()
    flags.mark_flags_as_required(["input_file", "output_file"])
    app.run(main)
