"""The text-in pretrained model for TF Serving: strings in, embeddings and fill-mask out.

    serving_default  text [B] -> pooled_output [B,H], sentence_embedding [B,H] (mean over real
                     tokens, L2-normalised)
    pair             text, text_b -> the same
    fill_mask        text with [MASK] -> mask_positions [B,S], top_tokens [B,S,K],
                     top_scores [B,S,K] for the first S=8 masks, K=5
"""

import tensorflow as tf

from bert_tf.export.serving import SavedModule

FILL_MASK_SLOTS = 8  # [MASK]s answered per text
FILL_MASK_TOP_K = 5


class TextModel(SavedModule):
    """A `BertPretrainer` behind a `Preprocessor`."""

    def __init__(self, pretrainer, preprocessor):
        super().__init__()
        self.hold(pretrainer=pretrainer)
        self.preprocessor = preprocessor
        self.variables = [v.value for v in pretrainer.variables]
        self.serve = tf.function(self._serve, input_signature=[
            tf.TensorSpec([None], tf.string, name="text")])
        self.serve_pair = tf.function(self._serve_pair, input_signature=[
            tf.TensorSpec([None], tf.string, name="text"),
            tf.TensorSpec([None], tf.string, name="text_b")])
        self.fill_mask = tf.function(self._fill_mask, input_signature=[
            tf.TensorSpec([None], tf.string, name="text")])
        self._tokens = tf.constant(list(preprocessor.tokenizer.vocab.tokens))

    def signatures(self):
        return {"serving_default": self.serve, "pair": self.serve_pair,
                "fill_mask": self.fill_mask}

    def _embed(self, inputs):
        outputs = self.pretrainer.encoder(inputs, training=False)
        sequence = tf.cast(outputs["sequence_output"], tf.float32)  # [B, T, H]
        mask = tf.cast(inputs["input_mask"], tf.float32)[:, :, None]
        mean = tf.reduce_sum(sequence * mask, 1) / tf.maximum(tf.reduce_sum(mask, 1), 1.0)
        return {"pooled_output": tf.cast(outputs["pooled_output"], tf.float32),
                "sentence_embedding": tf.math.l2_normalize(mean, axis=-1)}

    def _serve(self, text):
        return self._embed(self.preprocessor.single(text))

    def _serve_pair(self, text, text_b):
        return self._embed(self.preprocessor.pair(text, text_b))

    def _fill_mask(self, text):
        inputs = self.preprocessor.tokenize_with_masks(text)
        is_mask = tf.equal(inputs["input_word_ids"], self.preprocessor.mask_id)
        # the positions of the first FILL_MASK_SLOTS masks of each text; -1 where there are fewer
        order = tf.argsort(tf.cast(~is_mask, tf.int32), axis=1, stable=True)
        positions = order[:, :FILL_MASK_SLOTS]  # [B, S]
        found = tf.gather(is_mask, positions, batch_dims=1)
        logits = self.pretrainer({**inputs, "masked_lm_positions": positions},
                                 training=False)["masked_lm_logits"]  # [B, S, V]
        scores, ids = tf.math.top_k(tf.nn.softmax(logits), FILL_MASK_TOP_K)  # [B, S, K]
        return {"mask_positions": tf.where(found, positions, -1),
                "top_tokens": tf.where(found[:, :, None], tf.gather(self._tokens, ids), ""),
                "top_scores": tf.where(found[:, :, None], scores, 0.0)}
