"""Raw strings -> the encoder's three inputs, in TensorFlow ops: the preprocessing that every
export and the finetuning input pipeline share.

    single(text [B])          -> input_word_ids, input_mask, input_type_ids [B, max_seq_length]
    pair(text [B], text_b [B]) -> the same for sentence pairs: [CLS] A [SEP] B [SEP]

and TF Hub's BERT preprocessor API, for other lengths and up to three segments:

    tokenize(text [B])        -> wordpiece ids [B, (tokens)] int32 (ragged)
    bert_pack_inputs([a, b, ...], seq_length) -> the three inputs [B, seq_length]
"""

import tensorflow as tf
import tensorflow_text as tf_text

from bert_tf.text.tokenization import MASK, WordpieceTokenizer


def length_buckets(max_seq_length):
    """Padded lengths a batch may take: powers of two from 16, and max_seq_length."""
    buckets = [16]
    while buckets[-1] * 2 < max_seq_length:
        buckets.append(buckets[-1] * 2)
    return sorted({b for b in buckets if b < max_seq_length} | {max_seq_length})


def _rows(texts):
    """How many texts (or tokenized texts, ragged) a batch holds."""
    if isinstance(texts, tf.RaggedTensor):
        return texts.nrows(out_type=tf.int32)
    return tf.shape(texts, out_type=tf.int32)[0]


def same_batch(first_name, first, second_name, second):
    """(first, second), once an in-graph check has found that they hold the same number of
    texts (strings [B], or ragged token ids [B, (tokens)]): otherwise a clean
    InvalidArgumentError naming both and their sizes. Every op that reads the two together
    waits for the check (tensorflow-text's segment ops read out of bounds on a mismatch:
    garbage ids, or an aborted process)."""
    first_size, second_size = _rows(first), _rows(second)
    check = tf.debugging.Assert(tf.equal(first_size, second_size), [
        f"inputs {first_name} and {second_name} must hold the same number of texts; got",
        first_size, "and", second_size])
    with tf.control_dependencies([check]):
        return tf.identity(first), tf.identity(second)


class Preprocessor(tf.Module):
    """Tokenizes with the same `WordpieceTokenizer` as the data pipeline, trims a pair
    round-robin (the longer text loses tokens first, as google's `_truncate_seq_pair`), lays out
    [CLS] A [SEP] (B [SEP]) and pads. Saved inside a SavedModel, it carries vocab.txt as an
    asset and do_lower_case and max_seq_length as variables.
    """

    def __init__(self, vocab, do_lower_case, max_seq_length):
        super().__init__()
        self.vocab_file = tf.saved_model.Asset(vocab.path)
        self.do_lower_case = tf.Variable(bool(do_lower_case), trainable=False, name="lower")
        self.max_seq_length = tf.Variable(max_seq_length, trainable=False, name="max_len")
        self.tokenizer = WordpieceTokenizer(vocab, do_lower_case)
        self.sequence_length = max_seq_length
        self.cls_id, self.sep_id, self.mask_id = vocab.cls_id, vocab.sep_id, vocab.mask_id

    def pack(self, segments, seq_length=None):
        """Ragged token ids per segment -> the three [batch, seq_length] int32 inputs
        (default: max_seq_length)."""
        seq_length = self.sequence_length if seq_length is None else seq_length
        budget = seq_length - 1 - len(segments)  # [CLS] and a [SEP] per segment
        trimmed = tf_text.RoundRobinTrimmer(budget).trim(segments)
        ids, types = tf_text.combine_segments(trimmed, self.cls_id, self.sep_id)
        ids, mask = tf_text.pad_model_inputs(ids, seq_length)
        types, _ = tf_text.pad_model_inputs(types, seq_length)
        return {"input_word_ids": tf.cast(ids, tf.int32), "input_mask": tf.cast(mask, tf.int32),
                "input_type_ids": tf.cast(types, tf.int32)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def tokenize(self, text):
        """TF Hub's `tokenize`: texts -> their wordpiece ids, ragged [batch, (tokens)] int32."""
        return tf.cast(self.tokenizer.tokenize(text), tf.int32)

    @tf.function
    def bert_pack_inputs(self, segments, seq_length):
        """TF Hub's `bert_pack_inputs`: a list of 1 to 3 tokenized segments ([batch, (tokens)],
        or [batch, (words), (pieces)]) and a sequence length -> the three int32 inputs [batch,
        seq_length]: [CLS] A [SEP] B [SEP] ..., trimmed round-robin (the longest loses tokens
        first), as the Model Garden's `BertPackInputs`."""
        if not 1 <= len(segments) <= 3:
            raise ValueError(f"bert_pack_inputs takes 1 to 3 segments, got {len(segments)}")
        first, *rest = [s.merge_dims(1, -1) if s.shape.rank > 2 else s for s in segments]
        for i, segment in enumerate(rest):
            first, rest[i] = same_batch("segment 1", first, f"segment {i + 2}", segment)
        return self.pack([first, *rest], tf.cast(seq_length, tf.int32))

    def trace_hub_api(self):
        """Traces `bert_pack_inputs` for 1 to 3 segments of ragged int32 ids of rank 2 (this
        `tokenize`'s) or 3 (TF Hub's word-split tokenizers') and any seq_length, so that a
        SavedModel of this module serves it."""
        length = tf.TensorSpec([], tf.int32, name="seq_length")
        for rank in (2, 3):
            spec = tf.RaggedTensorSpec([None] * rank, tf.int32, ragged_rank=rank - 1)
            for count in (1, 2, 3):
                self.bert_pack_inputs.get_concrete_function([spec] * count, length)

    def pack_to_longest(self, segments):
        """Like `pack`, but padded only as far as the batch's longest packed text needs (at
        most max_seq_length): for models whose outputs are per text, which padding does not
        change, so that a batch of short texts costs what short texts cost."""
        needed = tf.add_n([tf.cast(s.row_lengths(), tf.int32) for s in segments]) + 1 + len(
            segments)
        longest = tf.reduce_max(tf.concat([needed, [1 + len(segments)]], 0))
        return self.pack(segments, tf.minimum(longest, self.sequence_length))

    def texts(self, text, text_b=None, to_longest=False):
        """Strings (and a pair's second strings) -> the three int32 inputs."""
        if text_b is not None:
            text, text_b = same_batch("text", text, "text_b", text_b)
        segments = [self.tokenizer.tokenize(t) for t in (text, text_b) if t is not None]
        return self.pack_to_longest(segments) if to_longest else self.pack(segments)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def single(self, text):
        return self.texts(text)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text"),
                                  tf.TensorSpec([None], tf.string, name="text_b")])
    def pair(self, text, text_b):
        return self.texts(text, text_b)

    def tokenize_with_masks(self, text):
        """Like `single`, but each literal "[MASK]" in the text becomes the [MASK] id."""
        pieces = tf.strings.split(text, MASK)  # [B, (pieces)]
        tokens = self.tokenizer.tokenize(pieces.flat_values)  # [pieces, (tokens)]
        mask = tf.fill([tokens.nrows(), 1], tf.cast(self.mask_id, tokens.dtype))
        tokens = tf.concat([tokens, tf.RaggedTensor.from_tensor(mask)], axis=1)
        tokens = pieces.with_flat_values(tokens).merge_dims(1, 2)  # [B, (tokens)], + a mask
        return self.pack([tokens[:, :-1]])  # the last piece has no [MASK] after it
