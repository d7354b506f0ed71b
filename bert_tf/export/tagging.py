"""The text-in token-classification SavedModel for TF Serving: raw text in, tagged words and
entities out, all in the graph.

    serving_default  text [B] string ->
        words [B, W] string, word_start / word_end [B, W] int64, tags [B, W] string,
        num_words [B] int64,
        entities [B, E] string, entity_types [B, E] string, entity_start / entity_end [B, E]
        int64, num_entities [B] int64

The words are the tokenizer's (split on whitespace and punctuation, as BERT's basic tokenizer
splits them); each is tagged at its first WordPiece. Texts longer than max_seq_length - 2 pieces
run as several windows, at most MAX_WINDOWS (export.serving) per text: the words beyond are not
returned. Time and memory are linear in the text's length, which is read up to its first MiB.
Entities follow conlleval's rules (bert_tf.finetuning.tagging_metrics); with tags of no scheme
(no B-/I- prefix), consecutive words of the same tag make one entity of that type.
Offsets are characters of the text, ends exclusive; padding is "" and -1.
"""

import tensorflow as tf
import tensorflow_text as tf_text

from bert_tf.export.serving import MAX_WINDOWS, SavedModule, save_version
from bert_tf.text.tokenization import WordpieceTokenizer, clip

_PREFIXES = {"O": 0, "B": 1, "I": 2, "E": 3, "S": 4}


def _prefix_and_type(label):
    """("B", "PER") from "B-PER" (BIO and IOBES tags); a tag of no scheme ("PER", or
    transformers' "LABEL_1") is its own type, inside: consecutive words so tagged make one
    entity. "O" is outside."""
    if label == "O":
        return "O", ""
    if len(label) > 2 and label[0] in "BIES" and label[1] == "-":
        return label[0], label[2:]
    return "I", label


class TaggingExport(SavedModule):
    """A Keras tagger (encoder inputs -> logits [B, T, L]) behind its tokenizer."""

    def __init__(self, model, vocab, do_lower_case, max_seq_length, labels):
        super().__init__()
        self.hold(model=model)
        self.tokenizer = WordpieceTokenizer(vocab, do_lower_case)
        self.vocab_file = tf.saved_model.Asset(vocab.path)
        self.do_lower_case = tf.Variable(bool(do_lower_case), trainable=False, name="lower")
        self.max_seq_length = tf.Variable(max_seq_length, trainable=False, name="max_len")
        self.variables = [v.value for v in model.variables]
        self.labels = tf.constant(list(labels))
        parts = [_prefix_and_type(label) for label in labels]
        types = sorted({kind for _, kind in parts if kind})
        self._types = tf.constant([""] + types)
        self._prefix = tf.constant([_PREFIXES[prefix] for prefix, _ in parts], tf.int64)
        self._type = tf.constant([types.index(kind) + 1 if kind else 0 for _, kind in parts],
                                 tf.int64)
        self._seq, self._cls, self._sep = max_seq_length, vocab.cls_id, vocab.sep_id
        self._is_continuation = tf.constant(vocab.is_continuation())
        self.serve = tf.function(self._serve, input_signature=[
            tf.TensorSpec([None], tf.string, name="text")])

    def _serve(self, text):
        text = clip(text)
        limit = MAX_WINDOWS * (self._seq - 2)  # the pieces of at most MAX_WINDOWS windows
        ids, starts, ends = (x[:, :limit] for x in self.tokenizer.tokenize_with_offsets(text))
        tags = ids.with_flat_values(self._piece_tags(ids))  # [B, (P)] label ids

        # === Words: a piece that is not a "##" continuation starts one ===
        first = ~tf.gather(self._is_continuation, ids.flat_values)
        word_of_piece = tf.cumsum(tf.cast(first, tf.int64)) - 1  # [P] flat word index
        words = tf.RaggedTensor.from_value_rowids(
            tf.boolean_mask(tf.range(tf.size(first, tf.int64)), first),
            tf.boolean_mask(ids.value_rowids(), first), nrows=ids.nrows())  # [B,(W)] pieces
        count = tf.shape(words.flat_values, tf.int64)[0]
        word_start = tf.gather(starts.flat_values, words.flat_values)
        word_end = tf.math.unsorted_segment_max(ends.flat_values, word_of_piece, count)
        word_tag = tf.gather(tags.flat_values, words.flat_values)  # [W] label ids
        row = words.value_rowids()
        chars = tf.strings.unicode_split(text, "UTF-8")  # [B, (C)], as the offsets count
        word_text = _spans(chars, row, word_start, word_end)

        # === Entities, by conlleval's rules over each text's words ===
        prefix, kind = tf.gather(self._prefix, word_tag), tf.gather(self._type, word_tag)
        row_start = tf.concat([[True], row[1:] != row[:-1]], 0)
        row_end = tf.concat([row[1:] != row[:-1], [True]], 0)
        zero = tf.zeros([1], tf.int64)  # O, and no type, around each text
        previous = tf.where(row_start, zero, tf.concat([zero, prefix[:-1]], 0))
        previous_kind = tf.where(row_start, zero, tf.concat([zero, kind[:-1]], 0))
        following = tf.where(row_end, zero, tf.concat([prefix[1:], zero], 0))
        following_kind = tf.where(row_end, zero, tf.concat([kind[1:], zero], 0))
        O, B, I, E, S = (tf.constant(v, tf.int64) for v in range(5))  # noqa: E741
        starts_entity = ((prefix == B) | (prefix == S)
                         | (((previous == E) | (previous == S) | (previous == O))
                            & ((prefix == E) | (prefix == I)))
                         | ((prefix != O) & (previous_kind != kind)))
        ends_entity = ((prefix == E) | (prefix == S)
                       | (((prefix == B) | (prefix == I))
                          & ((following == B) | (following == S) | (following == O)))
                       | ((prefix != O) & (following_kind != kind)))
        index = tf.range(count)
        entity_first = tf.boolean_mask(index, starts_entity)
        entity_last = tf.boolean_mask(index, ends_entity)  # the k-th closes the k-th
        entity_row = tf.gather(row, entity_first)
        entity_start = tf.gather(word_start, entity_first)
        entity_end = tf.gather(word_end, entity_last)
        entity_text = _spans(chars, entity_row, entity_start, entity_end)
        entity_type = tf.gather(self._types, tf.gather(kind, entity_first))

        nrows = ids.nrows()

        def per_text(values, rows, default):
            return tf.RaggedTensor.from_value_rowids(values, rows, nrows=nrows).to_tensor(
                default_value=default)

        return {"words": per_text(word_text, row, ""), "word_start": per_text(word_start, row, -1),
                "word_end": per_text(word_end, row, -1),
                "tags": per_text(tf.gather(self.labels, word_tag), row, ""),
                "num_words": words.row_lengths(),
                "entities": per_text(entity_text, entity_row, ""),
                "entity_types": per_text(entity_type, entity_row, ""),
                "entity_start": per_text(entity_start, entity_row, -1),
                "entity_end": per_text(entity_end, entity_row, -1),
                "num_entities": tf.math.unsorted_segment_sum(
                    tf.ones_like(entity_row), entity_row, nrows)}

    def _piece_tags(self, ids):
        """The predicted label id of every piece [P], the texts run in windows of
        max_seq_length - 2 pieces."""
        room = self._seq - 2
        lengths = ids.row_lengths()
        windows = tf.maximum((lengths + room - 1) // room, 1)  # [B]
        window_lengths = tf.ragged.range(windows) * 0 + room  # [B, (windows)]
        last = tf.maximum(lengths - (windows - 1) * room, 0)  # the last window's length
        window_lengths = tf.concat([window_lengths[:, :-1],
                                    tf.RaggedTensor.from_tensor(last[:, None])], axis=1)
        chunks = tf.RaggedTensor.from_row_lengths(ids.flat_values,
                                                  window_lengths.flat_values)  # [Wn, (<=room)]
        tokens, types = tf_text.combine_segments([chunks], self._cls, self._sep)
        tokens, mask = tf_text.pad_model_inputs(tokens, self._seq)
        types, _ = tf_text.pad_model_inputs(types, self._seq)
        logits = self.model({"input_word_ids": tf.cast(tokens, tf.int32),
                             "input_mask": tf.cast(mask, tf.int32),
                             "input_type_ids": tf.cast(types, tf.int32)}, training=False)
        best = tf.argmax(logits, axis=-1)  # [Wn, T]
        piece_window = chunks.value_rowids()
        piece_position = tf.ragged.range(chunks.row_lengths()).flat_values + 1  # after [CLS]
        return tf.gather_nd(best, tf.stack([piece_window, piece_position], axis=1))


def _spans(chars, rows, starts, ends):
    """The text of characters [start, end) of text `row`, for each span, from the texts'
    characters [B, (C)]: linear in the spans' lengths (cutting each out of its whole text would
    copy the text once per span, quadratic in a long text's length)."""
    base = tf.gather(chars.row_starts(), rows)
    starts, ends = (base + tf.cast(x, base.dtype) for x in (starts, ends))
    return tf.strings.reduce_join(
        tf.gather(chars.flat_values, tf.ragged.range(starts, ends)), axis=1)


def export_tagger(request, model_dir):
    """Writes model_dir/<version> of an `ExportRequest` (its record's "labels": the tags in id
    order); returns its path."""
    module = TaggingExport(request.model, request.vocab, request.do_lower_case,
                           request.max_seq_length, request.record["labels"])
    return save_version(module, {"serving_default": module.serve}, model_dir, request.version,
                        request.overwrite,
                        warmup=(request.vocab, request.max_seq_length))
