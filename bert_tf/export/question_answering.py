"""The text-in question-answering SavedModel for TF Serving: a question and a context in, the
answer out, all in the graph.

    serving_default  question [B], context [B] strings ->
                     answer [B] string, start [B] / end [B] int64 (characters of the context,
                     end exclusive: context[start:end] == answer), score [B] float32
                     (start + end logit), has_answer [B] bool

As run_squad predicts: the question (at most max_query_length pieces) and windows of the context
`doc_stride` pieces apart, each [CLS] question [SEP] window [SEP]; a piece counts only in the
window where it has the most context; the best span over every window is the answer, searched
over all valid (start, end) pairs rather than the n best of each. For SQuAD v2.0 models, no
answer ("" , -1, -1, has_answer false) when the [CLS] score beats the best span's by more than
the threshold. A context runs as at most MAX_WINDOWS (export.serving) windows and is read up to
its first MiB: what one request costs is bounded. Only TensorFlow and tensorflow-text ops are inside.
"""

import tensorflow as tf
import tensorflow_text as tf_text

from bert_tf.export.serving import MAX_WINDOWS, SavedModule, save_version
from bert_tf.text.preprocessing import same_batch
from bert_tf.text.tokenization import WordpieceTokenizer

_NONE = -1e9  # the score of an invalid span
# run_squad's windowing flags the export applies, with their defaults
WINDOWING = {"doc_stride": 128, "max_query_length": 64, "max_answer_length": 30,
             "version_2_with_negative": False, "null_score_diff_threshold": 0.0}


class QuestionAnsweringExport(SavedModule):
    """A Keras question answerer (encoder inputs -> start_logits, end_logits) behind its
    tokenizer and the windowing of run_squad."""

    def __init__(self, model, vocab, do_lower_case, max_seq_length, windowing):
        """`windowing`: run_squad's flags (`WINDOWING` gives the defaults)."""
        super().__init__()
        windowing = {**WINDOWING, **{k: v for k, v in windowing.items() if k in WINDOWING}}
        self.hold(model=model)
        self.tokenizer = WordpieceTokenizer(vocab, do_lower_case)
        self.vocab_file = tf.saved_model.Asset(vocab.path)
        self.do_lower_case = tf.Variable(bool(do_lower_case), trainable=False, name="lower")
        self.max_seq_length = tf.Variable(max_seq_length, trainable=False, name="max_len")
        self.variables = [v.value for v in model.variables]
        self._settings = dict(seq=max_seq_length, stride=windowing["doc_stride"],
                              query=windowing["max_query_length"],
                              answer=windowing["max_answer_length"],
                              v2=windowing["version_2_with_negative"],
                              threshold=windowing["null_score_diff_threshold"],
                              cls=vocab.cls_id, sep=vocab.sep_id)
        self.serve = tf.function(self._serve, input_signature=[
            tf.TensorSpec([None], tf.string, name="question"),
            tf.TensorSpec([None], tf.string, name="context")])

    def _serve(self, question, context):
        s = self._settings
        question, context = same_batch("question", question, "context", context)
        batch = tf.shape(question, tf.int64)[0]
        query = self.tokenizer.tokenize(question)[:, :s["query"]]  # [B, (Q)]
        pieces, char_starts, char_ends = self.tokenizer.tokenize_with_offsets(context)  # [B,(P)]

        # === Windows: [CLS] question [SEP] context[start:start + length] [SEP] ===
        room = s["seq"] - 3 - query.row_lengths()  # [B] context pieces per window
        step = tf.minimum(room, s["stride"])
        total = pieces.row_lengths()
        windows = tf.minimum(1 + (tf.maximum(total - room, 0) + step - 1) // step,
                             MAX_WINDOWS)  # [B]; pieces past the last window go unread
        example = tf.repeat(tf.range(batch), windows)  # [W]
        index = tf.ragged.range(windows).flat_values  # [W] window number in its example
        start = index * tf.gather(step, example)
        length = tf.minimum(tf.gather(room, example), tf.gather(total, example) - start)
        positions = tf.ragged.range(start, start + length)  # [W, (L)] context pieces
        flat = positions + tf.gather(pieces.row_starts(), example)[:, None]
        window_pieces = positions.with_flat_values(tf.gather(pieces.flat_values,
                                                             flat.flat_values))
        ids, types = tf_text.combine_segments([tf.gather(query, example), window_pieces],
                                              s["cls"], s["sep"])
        ids, mask = tf_text.pad_model_inputs(ids, s["seq"])
        types, _ = tf_text.pad_model_inputs(types, s["seq"])
        outputs = self.model({"input_word_ids": tf.cast(ids, tf.int32),
                              "input_mask": tf.cast(mask, tf.int32),
                              "input_type_ids": tf.cast(types, tf.int32)}, training=False)
        start_logits = tf.cast(outputs["start_logits"], tf.float32)  # [W, T]
        end_logits = tf.cast(outputs["end_logits"], tf.float32)

        # === Which piece each token is, and whether this window is its best context ===
        offset = tf.gather(query.row_lengths(), example) + 2  # [W] first context token
        token = tf.range(s["seq"], dtype=tf.int64)[None, :] - offset[:, None]  # [W, T]
        in_context = (token >= 0) & (token < length[:, None])
        piece = start[:, None] + token  # [W, T] index among the example's pieces
        left, right = token, length[:, None] - 1 - token
        score = tf.cast(tf.minimum(left, right), tf.float32) + 0.01 * tf.cast(
            length[:, None], tf.float32)
        key = tf.where(in_context, tf.gather(pieces.row_starts(), example)[:, None] + piece, -1)
        flat_key = tf.reshape(key, [-1])
        segments = tf.shape(pieces.flat_values, tf.int64)[0] + 1  # the last one for key -1
        flat_key = tf.where(flat_key < 0, segments - 1, flat_key)
        best = tf.math.unsorted_segment_max(tf.reshape(score, [-1]), flat_key, segments)
        first_best = tf.math.unsorted_segment_min(
            tf.reshape(tf.where(tf.reshape(score, [-1]) >= tf.gather(best, flat_key),
                                tf.repeat(index, s["seq"]), tf.int64.max), [-1]),
            flat_key, segments)
        max_context = in_context & tf.equal(
            tf.reshape(tf.gather(first_best, flat_key), tf.shape(key)), index[:, None])

        # === The best span of each window, then of each example ===
        span = start_logits[:, :, None] + end_logits[:, None, :]  # [W, T(start), T(end)]
        distance = tf.range(s["seq"])[None, :] - tf.range(s["seq"])[:, None]  # end - start
        valid = (max_context[:, :, None] & in_context[:, None, :]
                 & ((distance >= 0) & (distance < s["answer"]))[None])
        span = tf.reshape(tf.where(valid, span, _NONE), [-1, s["seq"] * s["seq"]])
        best_span = tf.argmax(span, axis=1)  # [W]
        window_score = tf.reduce_max(span, axis=1)
        example_score = tf.math.unsorted_segment_max(window_score, example, batch)  # [B]
        chosen = tf.math.unsorted_segment_min(
            tf.where(window_score >= tf.gather(example_score, example),
                     tf.range(tf.shape(example, tf.int64)[0]), tf.int64.max), example, batch)
        chosen = tf.minimum(chosen, tf.shape(example, tf.int64)[0] - 1)
        flat_span = tf.gather(best_span, chosen)
        first = tf.gather(start, chosen) + flat_span // s["seq"] - tf.gather(offset, chosen)
        last = tf.gather(start, chosen) + flat_span % s["seq"] - tf.gather(offset, chosen)
        has_answer = example_score > _NONE / 2
        if s["v2"]:
            null = tf.math.unsorted_segment_min(start_logits[:, 0] + end_logits[:, 0], example,
                                                batch)
            has_answer &= (null - example_score) <= s["threshold"]
        rows = pieces.row_starts()
        char_start = tf.where(has_answer, _gather(char_starts.flat_values, rows + first), -1)
        char_end = tf.where(has_answer, _gather(char_ends.flat_values, rows + last), -1)
        answer = tf.where(has_answer, tf.strings.substr(
            context, tf.maximum(char_start, 0), tf.maximum(char_end - char_start, 0),
            unit="UTF8_CHAR"), "")
        score = tf.where(has_answer, example_score, null if s["v2"] else example_score)
        return {"answer": answer, "start": char_start, "end": char_end, "score": score,
                "has_answer": has_answer}


def _gather(values, index):
    """values[index], with an index out of range (no answer, no piece) giving 0."""
    padded = tf.concat([values, [0]], 0)
    size = tf.shape(values, tf.int64)[0]
    return tf.gather(padded, tf.where((index >= 0) & (index < size), index, size))


def export_question_answerer(request, model_dir):
    """Writes model_dir/<version> of an `ExportRequest`, windowed as its record's "flags" say
    (run_squad's; `WINDOWING` where they are absent); returns its path."""
    module = QuestionAnsweringExport(request.model, request.vocab, request.do_lower_case,
                                     request.max_seq_length, request.record.get("flags", {}))
    return save_version(module, {"serving_default": module.serve}, model_dir, request.version,
                        request.overwrite,
                        warmup=(request.vocab, request.max_seq_length))
