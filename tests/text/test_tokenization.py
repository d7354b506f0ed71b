import numpy as np
import pytest
import tensorflow as tf
from official.nlp.tools import tokenization as reference  # google's tokenizer, as in the Model Garden

from bert_tf.text.tokenization import (SPECIAL_TOKENS, VocabError, WordpieceTokenizer, load_vocab,
                                       normalize_text, write_vocab)
from conftest import assigned_unicode_texts

WORDS = ["the", "quick", "brown", "fox", "jump", "##s", "##ed", "over", "lazy", "dog", "un",
         "##aff", "##able", "cafe", "café", "naive", "resume", "hello", "world", ",", ".", "!",
         "'", "(", ")", "-", "“", "”", "’", "…", "中", "文", "字", "日", "本", "a", "b", "c",
         "##a", "##b", "##c", "x", "##x", "##xx", "##xxx", "s", "ss", "d", "##z", "f",
         "##i", "fi", "...", "$", "5", "+", "=", "€", "©", "é", "##é", "Hello", "World", "The",
         "Café", "Über", "über", "uber", "straße", "strasse"]

TRICKY_TEXTS = [
    "The quick brown fox jumped over the lazy dog!",
    "Héllo, Wörld! Café naïve résumé RÉSUMÉ",
    "中文字符 and 日本語の テキスト mixed中文text",
    "unaffable " + "x" * 150 + " " + "x" * 250 + " " + "é" * 120,
    "tabs\tand\u00a0nbsp\u2003em space\r\nnewline",
    "ctrl\x07char\u200bzero\ufeffwidth \ufffdrepl \x00nul",
    "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ ÅNGSTRÖM ǅ ﬁ ligature",
    "emoji 😀 test’s “quotes” — dash… (parens) [MASK] [UNK]",
    "İstanbul ß ẞ Straße Über",
    "a\u0301 combining e\u0308",
    "$5 + 3 = 8 € © ° ^`~|<> don't stop-believing",
    "",
    "   ",
]


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    write_vocab(list(SPECIAL_TOKENS) + WORDS, path)
    return str(path)


@pytest.mark.parametrize("do_lower_case", [True, False])
def test_agrees_with_googles_tokenizer(vocab_file, do_lower_case):
    """Same ids as google-research/bert's FullTokenizer (the Model Garden's copy of it)."""
    google = reference.FullTokenizer(vocab_file, do_lower_case=do_lower_case)
    # google-research/bert's WordpieceTokenizer limit; the Model Garden's copy raised it to 400.
    google.wordpiece_tokenizer.max_input_chars_per_word = 200
    ours = WordpieceTokenizer(load_vocab(vocab_file), do_lower_case)
    texts = TRICKY_TEXTS + assigned_unicode_texts(1500, seed=int(do_lower_case))
    got = ours.tokenize(tf.constant(texts)).to_list()
    mismatches = [(t, google.tokenize(t)) for t, g in zip(texts, got)
                  if g != google.convert_tokens_to_ids(google.tokenize(t))]
    assert not mismatches, mismatches[:3]
    # The fixture text really exercises the rules: accents, CJK, long words, unknowns.
    some = google.tokenize(TRICKY_TEXTS[3])
    assert "[UNK]" in some and "##aff" in some


def test_lower_case_strips_accents(vocab_file):
    tokenizer = WordpieceTokenizer(load_vocab(vocab_file), do_lower_case=True)
    vocab = tokenizer.vocab
    ids = tokenizer.tokenize(tf.constant(["Café RÉSUMÉ"])).to_list()[0]
    assert [vocab.tokens[i] for i in ids] == ["cafe", "resume"]
    cased = WordpieceTokenizer(vocab, do_lower_case=False)
    ids = cased.tokenize(tf.constant(["Café"])).to_list()[0]
    assert [vocab.tokens[i] for i in ids] == ["Café"]


def test_special_tokens_by_name_in_googles_layout(tmp_path):
    # google's uncased vocab: [PAD]=0, [unused0..98]=1..99, [UNK]=100, [CLS]=101, [SEP]=102,
    # [MASK]=103, [unused99..]=104...
    tokens = (["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]",
              "[MASK]"] + [f"[unused{i}]" for i in range(99, 120)] + WORDS)
    path = tmp_path / "vocab.txt"
    write_vocab(tokens, path)
    vocab = load_vocab(path)
    assert (vocab.pad_id, vocab.unk_id, vocab.cls_id, vocab.sep_id, vocab.mask_id) == (
        0, 100, 101, 102, 103)
    ordinary = vocab.ordinary_ids()
    assert len(ordinary) == len(WORDS)
    assert all(not vocab.tokens[i].startswith("[") for i in ordinary)
    continuation = vocab.is_continuation()
    assert continuation[vocab.id("##s")] and not continuation[vocab.id("s")]


def test_vocab_round_trip_and_hash(vocab_file, tmp_path):
    vocab = load_vocab(vocab_file)
    copy = tmp_path / "copy.txt"
    write_vocab(vocab.tokens, copy)
    assert load_vocab(copy).tokens == vocab.tokens
    assert load_vocab(copy).sha256() == vocab.sha256()
    write_vocab(vocab.tokens[:-1], copy)
    assert load_vocab(copy).sha256() != vocab.sha256()


@pytest.mark.parametrize("content, message", [
    (b"", "vocab file is empty"),
    (b"[PAD]\n[UNK]\n[CLS]\n[SEP]\n", "missing special token(s) [MASK]"),
    (b"[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nhello\n", ":7: duplicate token 'hello' "
                                                            "(first on line 6)"),
    (b"[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nab\xffc\n", ":6: not valid UTF-8"),
    (b"[PAD]\n[UNK]\n\n[CLS]\n[SEP]\n[MASK]\n", ":3: expected one token per line"),
])
def test_malformed_vocab(tmp_path, content, message):
    path = tmp_path / "vocab.txt"
    path.write_bytes(content)
    with pytest.raises(VocabError) as error:
        load_vocab(path)
    assert message in str(error.value) and str(path) in str(error.value)


def test_missing_vocab(tmp_path):
    with pytest.raises(VocabError, match="vocab file not found"):
        load_vocab(tmp_path / "nope.txt")


def test_windows_line_endings(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_bytes(b"\r\n".join(t.encode() for t in SPECIAL_TOKENS + ("hi",)) + b"\r\n")
    assert load_vocab(path).tokens[-1] == "hi"
    assert np.array_equal(load_vocab(path).ordinary_ids(), [5])


@pytest.mark.parametrize("do_lower_case", [True, False])
def test_offsets_point_at_each_pieces_characters(vocab_file, do_lower_case):
    """tokenize_with_offsets gives tokenize's pieces, and each piece's characters of the
    original text normalize to the piece (an [UNK] to a whole word)."""
    tokenizer = WordpieceTokenizer(load_vocab(vocab_file), do_lower_case)
    texts = [t for t in TRICKY_TEXTS + assigned_unicode_texts(300, seed=5) if "Σ" not in t]
    ids, starts, ends = (x.to_list() for x in tokenizer.tokenize_with_offsets(tf.constant(texts)))
    assert ids == tokenizer.tokenize(tf.constant(texts)).to_list()
    tokens = tokenizer.vocab.tokens
    checked = 0
    for text, row_ids, row_starts, row_ends in zip(texts, ids, starts, ends):
        assert row_starts == sorted(row_starts) and all(
            0 <= s < e <= len(text) for s, e in zip(row_starts, row_ends))
        pieces = [text[s:e] for s, e in zip(row_starts, row_ends)]
        normalized = normalize_text(tf.constant(pieces or [""]), do_lower_case).numpy()
        for piece_id, text_piece in zip(row_ids, normalized):
            token = tokens[piece_id]
            if token != "[UNK]":
                assert text_piece.decode() == token.removeprefix("##"), (text, token)
                checked += 1
    assert checked > 200
    ids, starts, ends = tokenizer.tokenize_with_offsets(tf.constant(["Héllo, wörld! fox."]))
    text = "Héllo, wörld! fox."
    assert [text[s:e] for s, e in zip(starts[0].numpy(), ends[0].numpy())] == [
        "Héllo", ",", "wörld", "!", "fox", "."]


def test_casing_is_told_from_the_vocab_and_contradictions_are_refused():
    from bert_tf.text.tokenization import (UNCASED_EVIDENCE, CaseMismatch, Vocab, check_casing,
                                           vocab_casing)

    words = tuple(f"w{chr(97 + i % 26)}{i}" for i in range(UNCASED_EVIDENCE))
    uncased = Vocab(SPECIAL_TOKENS + words)
    cased = Vocab(SPECIAL_TOKENS + words + ("##The",))
    small = Vocab(SPECIAL_TOKENS + words[:10])
    caseless = Vocab(SPECIAL_TOKENS + tuple(str(i) for i in range(2000)) + tuple("的是不了人"))
    assert [vocab_casing(v) for v in (uncased, cased, small, caseless)] == [
        "uncased", "cased", None, None]
    for vocab, lower in ((uncased, True), (cased, False), (small, False), (small, True),
                         (caseless, False)):
        check_casing(vocab, lower, "v.txt")  # consistent, or nothing to tell by
    with pytest.raises(CaseMismatch, match=r"--do_lower_case=true but v.txt is a cased vocab "
                                           r".*'##The'.*--allow_case_mismatch"):
        check_casing(cased, True, "v.txt")
    with pytest.raises(CaseMismatch, match=r"--do_lower_case=false but v.txt is an uncased "
                                           r"vocab \(no upper-case token among its 1,005\)"):
        check_casing(uncased, False, "v.txt")
    with pytest.raises(CaseMismatch, match=r"--do_lower_case=false contradicts the run of X, "
                                           r"which records do_lower_case=true"):
        check_casing(small, False, "v.txt", recorded=True, recorded_by="the run of X")
