"""Vocab files, special tokens by name, and the in-graph WordPiece tokenizer.

`vocab.txt` is google's format: one token per line, the id is the line number. Special tokens are
always looked up by name, so google's vocab ([PAD]=0, [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103)
and ours ([PAD] [UNK] [CLS] [SEP] [MASK] = 0..4) both work.

`WordpieceTokenizer` is TensorFlow and tensorflow-text ops only, so the same object tokenizes for
the data pipeline, inside `tf.data`, and inside exported SavedModels. It reproduces
google-research/bert's BasicTokenizer + WordpieceTokenizer: control characters removed; with
`do_lower_case`, lower-casing, NFD and accent stripping; splitting on whitespace, punctuation and
CJK characters; words over 200 characters become [UNK].
"""

import dataclasses
import hashlib
import os
import re

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from bert_tf import io

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
_UNUSED = re.compile(r"^\[unused\d+\]$")

# google's _clean_text drops NUL, U+FFFD and control characters (Cc, Cf) but keeps \t \n \r,
# which are whitespace.
_CONTROL_CHARS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\x{fffd}\p{Cf}]"
# google's WordpieceTokenizer turns a word of over 200 characters into [UNK]; tensorflow-text
# counts bytes instead. So its byte limit is set out of reach (4 bytes per character) and
# `WordpieceTokenizer` applies the character limit itself.
MAX_CHARS_PER_WORD = 200
# Each text is read up to its first MiB: time and memory per text stay bounded (a served model
# can be sent anything); longer texts are cut there.
MAX_TEXT_BYTES = 1 << 20
_MAX_BYTES_PER_WORD = 4 * MAX_CHARS_PER_WORD
# Text without 201 characters in a row free of ASCII whitespace cannot hold such a word; it skips
# the (slower, memory-hungry) check.
_MAYBE_LONG_WORD = r".*[^\s]{%d}.*" % (MAX_CHARS_PER_WORD + 1)


class VocabError(ValueError):
    """A vocab file that cannot be used, with the file (and line) named."""


@dataclasses.dataclass(frozen=True)
class Vocab:
    """The tokens of a vocab.txt, in id order, with the special ids found by name."""
    tokens: tuple
    path: str = ""

    def __post_init__(self):
        object.__setattr__(self, "_index", {t: i for i, t in enumerate(self.tokens)})

    def __len__(self):
        return len(self.tokens)

    def id(self, token: str) -> int:
        return self._index[token]

    def get(self, token: str, default=None):
        return self._index.get(token, default)

    @property
    def pad_id(self):
        return self.id(PAD)

    @property
    def unk_id(self):
        return self.id(UNK)

    @property
    def cls_id(self):
        return self.id(CLS)

    @property
    def sep_id(self):
        return self.id(SEP)

    @property
    def mask_id(self):
        return self.id(MASK)

    def ordinary_ids(self) -> np.ndarray:
        """Ids that may stand in for a masked token: not special, not an [unusedN] slot."""
        special = set(SPECIAL_TOKENS)
        return np.array([i for i, t in enumerate(self.tokens)
                         if t not in special and not _UNUSED.match(t)], np.int64)

    def is_continuation(self) -> np.ndarray:
        """[V] bool: the token is a "##" word piece that continues the previous one."""
        return np.array([t.startswith("##") and len(t) > 2 for t in self.tokens], bool)

    def sha256(self) -> str:
        return hashlib.sha256("\n".join(self.tokens).encode("utf-8")).hexdigest()


# An uncased vocab is told by this many tokens with letters that have case, none upper-case:
# real vocabs have tens of thousands; a small one (a test's, a caseless script's) tells nothing.
UNCASED_EVIDENCE = 1000


class CaseMismatch(ValueError):
    """A --do_lower_case that contradicts the vocab or what the model's run recorded."""


def vocab_casing(vocab: Vocab) -> str | None:
    """"cased" when a token (besides bracketed specials such as [CLS]) has an upper-case
    letter, "uncased" when none has but at least UNCASED_EVIDENCE tokens have letters with case,
    else None (cannot tell)."""
    with_case = 0
    for token in vocab.tokens:
        if token.startswith("[") and token.endswith("]"):
            continue
        if token != token.lower():
            return "cased"
        with_case += token != token.upper()
    return "uncased" if with_case >= UNCASED_EVIDENCE else None


def check_casing(vocab: Vocab, do_lower_case: bool, vocab_file, recorded=None,
                 recorded_by="") -> None:
    """Refuses (`CaseMismatch`) a lower-casing that contradicts the vocab (an uncased model
    never saw upper case; a cased vocab's upper-case tokens would never be reached) or the
    setting `recorded` by `recorded_by` (the model's run directory or export)."""
    flag = f"--do_lower_case={str(bool(do_lower_case)).lower()}"
    override = "; pass --allow_case_mismatch to go on anyway"
    if recorded is not None and bool(recorded) != bool(do_lower_case):
        raise CaseMismatch(f"{flag} contradicts {recorded_by}, which records "
                           f"do_lower_case={str(bool(recorded)).lower()}{override}")
    casing = vocab_casing(vocab)
    if do_lower_case and casing == "cased":
        example = next(t for t in vocab.tokens if t != t.lower() and not t.startswith("["))
        raise CaseMismatch(f"{flag} but {vocab_file} is a cased vocab (it has upper-case "
                           f"tokens such as {example!r}, which lower-cased text never reaches): "
                           f"give --do_lower_case=false{override}")
    if not do_lower_case and casing == "uncased":
        raise CaseMismatch(f"{flag} but {vocab_file} is an uncased vocab (no upper-case token "
                           f"among its {len(vocab):,}): upper-case words would become [UNK] or "
                           f"split apart; give --do_lower_case=true{override}")


def load_vocab(path) -> Vocab:
    """Reads a google-format vocab.txt; every problem names the file and, where it can, the line."""
    path = os.fspath(path)
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            data = f.read()
    except tf.errors.NotFoundError:
        raise VocabError(f"{path}: vocab file not found") from None
    tokens = []
    for line_number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            token = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as e:
            raise VocabError(f"{path}:{line_number}: not valid UTF-8 ({e.reason})") from None
        tokens.append(token)
    if tokens and tokens[-1] == "":
        tokens.pop()  # the final newline
    if not tokens:
        raise VocabError(f"{path}: vocab file is empty")
    seen = {}
    for line_number, token in enumerate(tokens, start=1):
        if token.strip() != token or not token:
            raise VocabError(f"{path}:{line_number}: expected one token per line, got {token!r}")
        if token in seen:
            raise VocabError(f"{path}:{line_number}: duplicate token {token!r} "
                             f"(first on line {seen[token]})")
        seen[token] = line_number
    missing = [t for t in SPECIAL_TOKENS if t not in seen]
    if missing:
        raise VocabError(f"{path}: missing special token(s) {' '.join(missing)}; a BERT vocab "
                         f"needs {' '.join(SPECIAL_TOKENS)}")
    return Vocab(tuple(tokens), path)


def write_vocab(tokens, path) -> None:
    """google's vocab.txt layout, written to a temp name and renamed when complete."""
    io.write_file(path, "".join(f"{t}\n" for t in tokens))


def normalize_text(texts, do_lower_case: bool):
    """google's text cleanup (and lower-casing + accent stripping) as TF ops: [N] -> [N] strings."""
    texts = tf.strings.regex_replace(texts, _CONTROL_CHARS, "")
    if do_lower_case:
        texts = tf.strings.lower(texts, encoding="utf-8")
        texts = tf_text.normalize_utf8(texts, "NFD")
        texts = tf.strings.regex_replace(texts, r"\p{Mn}", "")  # combining accents
    return texts


class WordpieceTokenizer(tf.Module):
    """Strings [N] -> WordPiece ids, a RaggedTensor [N, (tokens)] of int64.

    Args:
      vocab: a `Vocab`.
      do_lower_case: lower-case and strip accents first (uncased models).
    """

    def __init__(self, vocab: Vocab, do_lower_case: bool, name=None):
        super().__init__(name=name)
        self.vocab = vocab
        self.do_lower_case = bool(do_lower_case)
        # Normalisation is ours (above): tensorflow-text's own lower-casing is NFKC case
        # folding, which differs from google's on characters such as "ß" or "ﬁ".
        self._tokenizer = tf_text.FastBertTokenizer(
            vocab=list(vocab.tokens), suffix_indicator="##", unknown_token=UNK,
            max_bytes_per_word=_MAX_BYTES_PER_WORD, token_out_type=tf.int64,
            lower_case_nfd_strip_accents=False)

        self._is_continuation = tf.constant(vocab.is_continuation())
        self._unk_id = tf.constant(vocab.unk_id, tf.int64)
        # Graph functions traced once per tokenizer: every signature of an export, every
        # tf.data map and every eager call reuses the trace (tracing the tokenizer took about
        # 1.6 s a time, and a text-in export traced it once per signature). Attributes holding
        # the bound methods, so that `WordpieceTokenizer(...).tokenize(texts)` keeps its
        # tokenizer alive (a decorated method holds it weakly).
        texts = [tf.TensorSpec([None], tf.string)]
        self.tokenize = tf.function(self._tokenize, input_signature=texts)
        self.tokenize_with_offsets = tf.function(self._tokenize_with_offsets,
                                                 input_signature=texts)

    def _tokenize(self, texts):
        """Strings [N] -> ids [N, (pieces)] int64."""
        texts = normalize_text(clip(tf.convert_to_tensor(texts, tf.string)), self.do_lower_case)
        maybe_long = tf.reduce_any(tf.strings.regex_full_match(texts, _MAYBE_LONG_WORD))
        return tf.cond(maybe_long, lambda: self._tokenize_unk_long_words(texts)[0],
                       lambda: self._tokenizer.tokenize(texts))

    def _tokenize_with_offsets(self, texts):
        """Like `tokenize`, with where each piece lies in the original text: ids, starts, ends,
        each [N, (pieces)] int64, the offsets in characters (code points), ends exclusive.

        The text is normalized one character at a time, so that every byte of the normalized
        text maps back to the character it came from. That equals normalizing it whole except
        for context-dependent lower-casing (a Greek capital sigma ending a word), where a
        piece can differ from `tokenize`'s.
        """
        texts = clip(tf.convert_to_tensor(texts, tf.string))
        chars = tf.strings.unicode_split(texts, "UTF-8")  # [N, (C)]
        normalized = normalize_text(chars.flat_values, self.do_lower_case)  # [C total]
        lengths = tf.strings.length(normalized)  # bytes each character became (0: dropped)
        total = tf.cumsum(tf.cast(lengths, tf.int64))
        row_base = tf.gather(tf.concat([[0], total], 0), chars.row_starts())
        char_ends = chars.with_flat_values(total - tf.gather(row_base, chars.value_rowids()))
        char_starts = char_ends - chars.with_flat_values(tf.cast(lengths, tf.int64))
        ids, starts, ends = self._tokenize_unk_long_words(
            tf.strings.reduce_join(chars.with_flat_values(normalized), axis=1))
        # Normalized bytes -> characters: a piece starts in the first character that ends after
        # its first byte, and ends after the last character that starts before its end.
        never = tf.int64.max
        return (ids,
                ids.with_flat_values(_ragged_searchsorted(char_ends, starts, "right", never)),
                ids.with_flat_values(_ragged_searchsorted(char_starts, ends, "left", never)))

    def _tokenize_unk_long_words(self, texts):
        """Tokenizes, then replaces the pieces of each word of over 200 characters by [UNK];
        returns ids, byte starts and ends, each [N, (pieces)]."""
        pieces, starts, ends = self._tokenizer.tokenize_with_offsets(texts)
        ids = pieces.flat_values  # [P]
        rows = pieces.value_rowids()  # [P]
        word_starts = ~tf.gather(self._is_continuation, ids)
        word = tf.cumsum(tf.cast(word_starts, tf.int64)) - 1  # [P] word index of each piece
        num_words = tf.reduce_sum(tf.cast(word_starts, tf.int64))
        begin = tf.math.unsorted_segment_min(starts.flat_values, word, num_words)  # [W]
        end = tf.math.unsorted_segment_max(ends.flat_values, word, num_words)
        # Only words of over 200 bytes can have over 200 characters; count just those.
        maybe_long = tf.where(end - begin > MAX_CHARS_PER_WORD)[:, 0]
        word_rows = tf.math.unsorted_segment_min(rows, word, num_words)
        too_long = tf.cond(
            tf.size(maybe_long) > 0,
            lambda: _characters_in(texts, tf.gather(word_rows, maybe_long),
                                   tf.gather(begin, maybe_long),
                                   tf.gather(end, maybe_long)) > MAX_CHARS_PER_WORD,
            lambda: tf.zeros([0], tf.bool))
        long_word = tf.scatter_nd(maybe_long[:, None], too_long, tf.shape(begin, tf.int64))
        piece_in_long_word = tf.gather(long_word, word)
        keep = word_starts | ~piece_in_long_word
        ids = tf.where(piece_in_long_word, self._unk_id, ids)
        # the [UNK] of a long word spans the word
        starts = tf.where(piece_in_long_word, tf.gather(begin, word), starts.flat_values)
        ends = tf.where(piece_in_long_word, tf.gather(end, word), ends.flat_values)
        rows = tf.boolean_mask(rows, keep)
        return tuple(tf.RaggedTensor.from_value_rowids(tf.boolean_mask(x, keep), rows,
                                                       nrows=pieces.nrows())
                     for x in (ids, starts, ends))

    def __call__(self, texts):
        return self.tokenize(texts)


def _characters_in(texts, rows, begins, ends):
    """The number of characters in bytes [begin, end) of texts[row], for each span: counted on
    the byte offsets of the texts' characters, in time and memory linear in the texts (cutting
    each span out of its text would copy the text once per span)."""
    _, offsets = tf.strings.unicode_decode_with_offsets(texts, "UTF-8")  # [N, (C)] byte starts
    base = tf.concat([[0], tf.cumsum(tf.cast(tf.strings.length(texts), tf.int64))], 0)
    flat = offsets.flat_values + tf.gather(base, offsets.value_rowids())  # sorted over all texts
    first = tf.searchsorted(flat, tf.gather(base, rows) + begins, side="left")
    last = tf.searchsorted(flat, tf.gather(base, rows) + ends, side="left")
    return last - first


def clip(texts):
    """Each text up to its first MAX_TEXT_BYTES bytes: what one text can cost is bounded."""
    return tf.strings.substr(texts, 0, MAX_TEXT_BYTES)


def _ragged_searchsorted(sorted_rows, values, side, pad):
    """tf.searchsorted row by row for ragged [N, (C)] sorted rows and [N, (P)] values; returns
    the flat [P total] indices."""
    dense_rows = sorted_rows.to_tensor(default_value=pad)
    dense_values = values.to_tensor()
    found = tf.searchsorted(dense_rows, dense_values, side=side)
    return tf.RaggedTensor.from_tensor(found, lengths=values.row_lengths()).flat_values
