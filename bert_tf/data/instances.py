"""Documents -> pretraining instances, as in Devlin et al. and google-research/bert. Pure and seedable.

A document is a list of sentences, each a list of WordPiece ids. From it come instances

    [CLS] A [SEP] B [SEP]     segment ids 0 ... 0 1 ... 1

where B is the real continuation of A (label 0) or, half the time, text from another document
(label 1, "random next"). Without `next_sentence` (masked-LM-only pretraining: RoBERTa, Cramming,
ModernBERT) an instance is one segment of consecutive sentences, [CLS] A [SEP] (segment ids 0,
label 0), as long as the sequence allows. Then `masked_lm_prob` of the non-special tokens are
chosen for prediction; of those `mask_replace_prob` (80%) become [MASK], `random_replace_prob`
(10%) a random token and the rest stay as they are.

Three deliberate improvements over google's script:
  * with whole-word masking, one 80/10/10 decision per word rather than per piece;
  * random replacements come only from ordinary tokens, never [PAD] [UNK] [CLS] [SEP] [MASK] or
    [unusedN];
  * a chunk of a single sentence is split into A and B half the time; google's always pairs it
    with a random B, which pushes the NSP labels to about 56% "random" on real text.

A buffer of documents is one flat token array (`TokenizedDocuments`). Pairing walks the sentences
in Python (google's logic, one step per sentence); truncation, layout and masking then run on
whole batches in numpy: A and B are ranges of the token array, and their truncated lengths have a
closed form. A `random.Random` drives it all, so a seed fully determines the output.
"""

import dataclasses
import random
from typing import NamedTuple

import numpy as np

from bert_tf.settings import Settings, setting


@dataclasses.dataclass(frozen=True)
class InstanceOptions(Settings):
    """The google-research/bert flags that shape instances."""
    max_seq_length: int = setting(128, "Tokens per example, [CLS] and [SEP]s included (at "
                                       "least 5: [CLS] A [SEP] B [SEP]).", minimum=5)
    max_predictions_per_seq: int = setting(20, "Most masked-LM predictions per example.",
                                           minimum=1)
    masked_lm_prob: float = setting(0.15, "Fraction of tokens chosen for prediction (BERT: "
                                          "0.15; 0.3 in ModernBERT, 0.25 in Cramming).",
                                    above=0, below=1)
    mask_replace_prob: float = setting(0.8, "Of the chosen tokens, the fraction shown as [MASK].",
                                       minimum=0, maximum=1)
    random_replace_prob: float = setting(0.1, "Of the chosen tokens, the fraction replaced by a "
                                              "random token (the rest stay as they are).",
                                         minimum=0, maximum=1)
    next_sentence: bool = setting(True, "Sentence pairs with next-sentence labels, [CLS] A [SEP] "
                                        "B [SEP]; false: single segments of consecutive "
                                        "sentences, [CLS] A [SEP], for masked-LM-only "
                                        "pretraining (run_pretraining --next_sentence=false).")
    short_seq_prob: float = setting(0.1, "Probability of a shorter target sequence length.",
                                    minimum=0, maximum=1)
    do_whole_word_mask: bool = setting(False, "Mask whole words rather than word pieces.")
    dupe_factor: int = setting(10, "Passes over the data, each with different masks.",
                               minimum=1)
    dynamic_masking: bool = setting(False, "Store unmasked pairs, one pass (no dupe_factor "
                                           "copies): run_pretraining masks them each time they "
                                           "are read, with the same rules.")

    def check(self):
        if self.mask_replace_prob + self.random_replace_prob > 1 + 1e-9:
            return [f"--mask_replace_prob={self.mask_replace_prob} and --random_replace_prob="
                    f"{self.random_replace_prob} add up to more than 1"]
        return []

    @property
    def special_tokens(self):
        """[CLS] and [SEP]s per instance: 3 for a pair, 2 for a single segment."""
        return 3 if self.next_sentence else 2

    @property
    def passes(self):
        """Passes over the documents: dupe_factor, or one for dynamic masking."""
        return 1 if self.dynamic_masking else self.dupe_factor


@dataclasses.dataclass(frozen=True)
class TokenIds:
    """What instance creation needs to know of the vocab, looked up by name (see tokenization)."""
    cls_id: int
    sep_id: int
    mask_id: int
    ordinary_ids: tuple  # candidates for the 10% random replacement
    is_continuation: bytes  # is_continuation[id] == 1 for "##" pieces (whole-word masking)

    @classmethod
    def from_vocab(cls, vocab):
        """From a `tokenization.Vocab`."""
        return cls(cls_id=vocab.cls_id, sep_id=vocab.sep_id, mask_id=vocab.mask_id,
                   ordinary_ids=tuple(vocab.ordinary_ids().tolist()),
                   is_continuation=vocab.is_continuation().astype("uint8").tobytes())


class Instance(NamedTuple):
    """One example, unpadded (the list form of a row of `create_examples`)."""
    tokens: list  # [CLS] A [SEP] B [SEP]
    segment_ids: list
    masked_lm_positions: list  # sorted, unique
    masked_lm_labels: list  # the original ids at those positions
    is_random_next: bool


class TokenizedDocuments(NamedTuple):
    """Documents of sentences of token ids, as flat arrays."""
    tokens: np.ndarray  # [T] every sentence of every document, back to back
    sentence_starts: np.ndarray  # [S + 1] offsets of the sentences in tokens; the last is T
    document_starts: np.ndarray  # [D + 1] offsets of the documents in sentences; the last is S

    @classmethod
    def from_lists(cls, documents):
        """From documents as lists of sentences as lists of ids; empty ones are dropped."""
        documents = [[s for s in d if len(s)] for d in documents]
        documents = [d for d in documents if d]
        sentences = [s for d in documents for s in d]
        tokens = np.array([t for s in sentences for t in s], np.int64)
        return cls(tokens, np.cumsum([0] + [len(s) for s in sentences]),
                   np.cumsum([0] + [len(d) for d in documents]))


def create_examples(documents: TokenizedDocuments, options: InstanceOptions, ids: TokenIds,
                    rng: random.Random):
    """All examples of a buffer, shuffled: google's feature dict of arrays [N, length].

    `dupe_factor` passes over the documents, each with fresh pairs and masks (one unmasked
    pass with `dynamic_masking`); random-next segments come from the other documents of the
    same buffer.
    """
    np_rng = np.random.default_rng(rng.getrandbits(64))
    pairs = (plan_pairs if options.next_sentence else plan_segments)(documents, options, rng)
    # Truncation: google trims the longer segment one token at a time, from its front or back
    # at random. The final lengths follow in closed form; the front/back split is binomial.
    reserved = options.special_tokens
    a_length, b_length = truncated_lengths(pairs["a_length"], pairs["b_length"],
                                           options.max_seq_length - reserved)
    a_start = pairs["a_start"] + np_rng.binomial(pairs["a_length"] - a_length, 0.5)
    b_start = pairs["b_start"] + np_rng.binomial(pairs["b_length"] - b_length, 0.5)

    # Layout: [CLS] A [SEP] B [SEP] (a single segment: [CLS] A [SEP]), padded.
    n, seq = len(a_length), options.max_seq_length
    j = np.arange(seq)[None, :]
    la, lb = a_length[:, None], b_length[:, None]
    in_a = (j >= 1) & (j <= la)
    in_b = (j >= la + 2) & (j < la + 2 + lb)
    source = np.where(in_a, a_start[:, None] + j - 1, np.where(in_b, b_start[:, None] + j - la - 2,
                                                               0))
    input_ids = np.where(in_a | in_b, documents.tokens[source], 0)
    rows = np.arange(n)
    input_ids[:, 0] = ids.cls_id
    input_ids[rows, a_length + 1] = ids.sep_id
    if options.next_sentence:
        input_ids[rows, a_length + b_length + 2] = ids.sep_id
    input_mask = j < (a_length + b_length + reserved)[:, None]
    segment_ids = (j >= la + 2) & input_mask

    if options.dynamic_masking:  # masked when read (bert_tf.data.masking)
        shape = (n, options.max_predictions_per_seq)
        positions, labels, valid = np.zeros(shape, np.int64), np.zeros(shape, np.int64), \
            np.zeros(shape, bool)
    elif options.do_whole_word_mask:
        positions, labels, valid = _mask_whole_words(input_ids, a_length, b_length, options, ids,
                                                     rng)
    else:
        positions, labels, valid = _mask_pieces(input_ids, in_a | in_b, options, ids, np_rng)
    order = np_rng.permutation(n)
    return {"input_ids": input_ids[order],
            "input_mask": input_mask[order].astype(np.int64),
            "segment_ids": segment_ids[order].astype(np.int64),
            "masked_lm_positions": positions[order],
            "masked_lm_ids": labels[order],
            "masked_lm_weights": valid[order].astype(np.float32),
            "next_sentence_labels": pairs["is_random_next"][order, None].astype(np.int64)}


def plan_pairs(documents: TokenizedDocuments, options: InstanceOptions, rng: random.Random):
    """google's `create_instances_from_document` over sentences: segments A and B as ranges.

    Returns int64 arrays a_start, a_length, b_start, b_length (offsets into documents.tokens,
    before truncation) and bool is_random_next.
    """
    starts = documents.sentence_starts.tolist()
    doc_starts = documents.document_starts.tolist()
    num_documents = len(doc_starts) - 1
    max_num_tokens = options.max_seq_length - 3  # [CLS], [SEP], [SEP]
    out = ([], [], [], [], [])  # a_start, a_length, b_start, b_length, is_random_next
    for _ in range(options.passes):
        for doc in range(num_documents):
            end = doc_starts[doc + 1]
            # Usually fill the sequence; sometimes (short_seq_prob) use a shorter one so that
            # the model also sees the short inputs of finetuning.
            target = max_num_tokens
            if rng.random() < options.short_seq_prob:
                target = rng.randint(2, max_num_tokens)
            first = i = doc_starts[doc]  # first: the chunk's first sentence
            while i < end:
                chunk_length = starts[i + 1] - starts[first]
                if i == end - 1 or chunk_length >= target:
                    count = i + 1 - first
                    if count == 1 and chunk_length >= 2 and rng.random() < 0.5:
                        # One sentence: google always pairs it with a random B, which skews
                        # the NSP labels towards random; half the time split it instead.
                        cut = rng.randint(1, chunk_length - 1)
                        pair = (starts[first], cut, starts[first] + cut, chunk_length - cut, False)
                    else:
                        a_end = first + (rng.randint(1, count - 1) if count >= 2 else 1)
                        a = (starts[first], starts[a_end] - starts[first])
                        if count == 1 or rng.random() < 0.5:
                            pair = a + _random_segment(starts, doc_starts, doc,
                                                       target - a[1], rng) + (True,)
                            i = a_end - 1  # the sentences not used for A go back
                        else:
                            pair = a + (starts[a_end], starts[i + 1] - starts[a_end], False)
                    for column, value in zip(out, pair):
                        column.append(value)
                    first = i + 1
                i += 1
    names = ("a_start", "a_length", "b_start", "b_length")
    pairs = {name: np.array(column, np.int64) for name, column in zip(names, out)}
    pairs["is_random_next"] = np.array(out[4], bool)
    return pairs


def plan_segments(documents: TokenizedDocuments, options: InstanceOptions, rng: random.Random):
    """Single segments for masked-LM-only data, as `plan_pairs`'s arrays (b_length 0, never
    random next): each document's sentences in order, as many whole sentences per segment as
    fit the target length (usually max_seq_length - 2; `short_seq_prob` of the documents a
    shorter one); a sentence longer than that is one segment, truncated later."""
    starts = documents.sentence_starts.tolist()
    doc_starts = documents.document_starts.tolist()
    max_num_tokens = options.max_seq_length - 2  # [CLS], [SEP]
    a_start, a_length = [], []
    for _ in range(options.passes):
        for doc in range(len(doc_starts) - 1):
            target = max_num_tokens
            if rng.random() < options.short_seq_prob:
                target = rng.randint(2, max_num_tokens)
            first, end = doc_starts[doc], doc_starts[doc + 1]
            for i in range(first, end):
                if i > first and starts[i + 1] - starts[first] > target:  # i starts the next
                    a_start.append(starts[first])
                    a_length.append(starts[i] - starts[first])
                    first = i
            a_start.append(starts[first])
            a_length.append(starts[end] - starts[first])
    n = len(a_start)
    return {"a_start": np.array(a_start, np.int64), "a_length": np.array(a_length, np.int64),
            "b_start": np.zeros(n, np.int64), "b_length": np.zeros(n, np.int64),
            "is_random_next": np.zeros(n, bool)}


def _random_segment(starts, doc_starts, doc, target_length, rng):
    """(start, length): whole sentences from a random point of another document, at least
    `target_length` tokens unless that document ends first."""
    other = doc
    for _ in range(10):  # a one-document buffer falls back to itself, as google's does
        other = rng.randint(0, len(doc_starts) - 2)
        if other != doc:
            break
    first = rng.randint(doc_starts[other], doc_starts[other + 1] - 1)
    last = first
    while starts[last + 1] - starts[first] < target_length and last + 1 < doc_starts[other + 1]:
        last += 1
    return starts[first], starts[last + 1] - starts[first]


def _mask_pieces(input_ids, candidates, options, ids, np_rng):
    """Masks [N, L] `input_ids` in place; returns positions, labels [N, P] and valid [N, P]."""
    num_predictions = options.max_predictions_per_seq
    count = np.minimum(num_predictions, np.maximum(
        1, np.round(candidates.sum(1) * options.masked_lm_prob).astype(np.int64)))
    # A uniformly random subset of `count` candidates: the smallest of random keys.
    keys = np.where(candidates, np_rng.random(candidates.shape), 2.0)
    chosen = np.argsort(keys, axis=1)[:, :num_predictions]
    if chosen.shape[1] < num_predictions:  # more predictions allowed than positions (google's
        chosen = np.pad(chosen, ((0, 0), (0, num_predictions - chosen.shape[1])))  # does too)
    valid = np.arange(num_predictions)[None, :] < count[:, None]
    positions = np.sort(np.where(valid, chosen, input_ids.shape[1]), axis=1)
    positions = np.where(valid, positions, 0)  # valid stays a prefix after sorting
    labels = np.where(valid, np.take_along_axis(input_ids, positions, 1), 0)
    draw = np_rng.random(positions.shape)
    ordinary = np.asarray(ids.ordinary_ids)
    replacement = ordinary[np_rng.integers(0, len(ordinary), positions.shape)]
    shown = np.where(draw < options.mask_replace_prob, ids.mask_id,
                     np.where(draw >= 1 - options.random_replace_prob, replacement, labels))
    rows, columns = np.nonzero(valid)
    input_ids[rows, positions[rows, columns]] = shown[rows, columns]
    return positions, labels, valid


def _mask_whole_words(input_ids, a_length, b_length, options, ids, rng):
    """Whole-word masking, one row at a time (words make the rows ragged)."""
    n, num_predictions = len(input_ids), options.max_predictions_per_seq
    positions = np.zeros((n, num_predictions), np.int64)
    labels = np.zeros((n, num_predictions), np.int64)
    valid = np.zeros((n, num_predictions), bool)
    for row in range(n):
        la, lb = int(a_length[row]), int(b_length[row])
        tokens = input_ids[row, :la + lb + options.special_tokens].tolist()
        candidates = [*range(1, la + 1), *range(la + 2, la + lb + 2)]
        p, l = create_masked_lm_predictions(tokens, options, ids, rng, candidates)
        input_ids[row, :len(tokens)] = tokens
        positions[row, :len(p)], labels[row, :len(l)], valid[row, :len(p)] = p, l, True
    return positions, labels, valid


def examples_to_instances(examples):
    """The rows of `create_examples` as unpadded `Instance`s (for tests and inspection)."""
    instances = []
    for row in range(len(examples["input_ids"])):
        n = int(examples["input_mask"][row].sum())
        m = int(examples["masked_lm_weights"][row].sum())
        instances.append(Instance(
            examples["input_ids"][row, :n].tolist(), examples["segment_ids"][row, :n].tolist(),
            examples["masked_lm_positions"][row, :m].tolist(),
            examples["masked_lm_ids"][row, :m].tolist(),
            bool(examples["next_sentence_labels"][row, 0])))
    return instances


def instances_to_examples(instances, max_seq_length, max_predictions_per_seq):
    """`Instance`s as google's padded feature arrays (the inverse of `examples_to_instances`)."""
    n = len(instances)
    out = {name: np.zeros((n, max_seq_length), np.int64)
           for name in ("input_ids", "input_mask", "segment_ids")}
    out.update({name: np.zeros((n, max_predictions_per_seq), np.int64)
                for name in ("masked_lm_positions", "masked_lm_ids")})
    out["masked_lm_weights"] = np.zeros((n, max_predictions_per_seq), np.float32)
    out["next_sentence_labels"] = np.zeros((n, 1), np.int64)
    for row, instance in enumerate(instances):
        length, m = len(instance.tokens), len(instance.masked_lm_positions)
        out["input_ids"][row, :length] = instance.tokens
        out["input_mask"][row, :length] = 1
        out["segment_ids"][row, :length] = instance.segment_ids
        out["masked_lm_positions"][row, :m] = instance.masked_lm_positions
        out["masked_lm_ids"][row, :m] = instance.masked_lm_labels
        out["masked_lm_weights"][row, :m] = 1.0
        out["next_sentence_labels"][row, 0] = int(instance.is_random_next)
    return out


def create_instances(documents, options: InstanceOptions, ids: TokenIds, rng: random.Random):
    """`create_examples` on documents given as lists of sentences of ids; returns `Instance`s."""
    return examples_to_instances(create_examples(TokenizedDocuments.from_lists(documents),
                                                 options, ids, rng))


def truncated_lengths(a_length, b_length, max_num_tokens):
    """The lengths (ints or arrays) google's one-token-at-a-time truncation ends with: the
    longer segment loses a token at a time, B on a tie, until both fit `max_num_tokens`."""
    b = np.minimum(b_length, np.maximum(max_num_tokens // 2, max_num_tokens - a_length))
    return np.minimum(a_length, max_num_tokens - b), b


def create_masked_lm_predictions(tokens, options, ids, rng, candidates=None):
    """Masks `tokens` in place; returns (sorted positions, original ids at them).

    Candidates are the positions of non-special tokens (found when not given); with whole-word
    masking a "##" piece joins the word before it and the word is masked, replaced or kept as one.
    """
    if candidates is None:
        candidates = [p for p, t in enumerate(tokens) if t != ids.cls_id and t != ids.sep_id]
    num_to_predict = min(options.max_predictions_per_seq,
                         max(1, int(round(len(candidates) * options.masked_lm_prob))))
    random = rng.random
    words = []
    for position in candidates:
        if (options.do_whole_word_mask and words and ids.is_continuation[tokens[position]]
                and words[-1][-1] == position - 1):
            words[-1].append(position)
        else:
            words.append([position])

    # Words in random order, as google's shuffle of all candidates, but drawn lazily (a partial
    # Fisher-Yates shuffle): only the words looked at are shuffled.
    positions, labels = [], []
    for j in range(len(words)):
        if len(positions) >= num_to_predict:
            break
        k = j + int(random() * (len(words) - j))
        words[j], words[k] = words[k], words[j]
        word = words[j]
        if len(positions) + len(word) > num_to_predict:
            continue  # a whole word that does not fit is skipped, as in google's script
        draw = random()
        for position in word:
            positions.append(position)
            labels.append(tokens[position])
            if draw < options.mask_replace_prob:
                tokens[position] = ids.mask_id
            elif draw >= 1 - options.random_replace_prob:  # the rest keep the original
                tokens[position] = ids.ordinary_ids[int(random() * len(ids.ordinary_ids))]
    order = sorted(range(len(positions)), key=positions.__getitem__)
    return [positions[k] for k in order], [labels[k] for k in order]

