"""Documents -> pretraining instances, as in Devlin et al. and google-research/bert. Pure and seedable.

A document is a list of sentences, each a list of WordPiece ids. From it come instances

    [CLS] A [SEP] B [SEP]     segment ids 0 ... 0 1 ... 1

where B is the real continuation of A (label 0) or, half the time, text from another document
(label 1, "random next"). Then `masked_lm_prob` of the non-special tokens are chosen for prediction;
of those 80% become [MASK], 10% a random token and 10% stay as they are.

Three deliberate improvements over google's script:
  * with whole-word masking, one 80/10/10 decision per word rather than per piece;
  * random replacements come only from ordinary tokens, never [PAD] [UNK] [CLS] [SEP] [MASK] or
    [unusedN];
  * a chunk of a single sentence is split into A and B half the time; google's always pairs it
    with a random B, which pushes the NSP labels to about 56% "random" on real text.

Everything here is plain Python on lists of ints, driven by a `random.Random`, so that a seed fully
determines the output.
"""

import dataclasses
import random
from typing import NamedTuple


@dataclasses.dataclass(frozen=True)
class InstanceOptions:
    """The google-research/bert flags that shape instances."""
    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    masked_lm_prob: float = 0.15
    short_seq_prob: float = 0.1
    do_whole_word_mask: bool = False
    dupe_factor: int = 10

    def __post_init__(self):
        problems = []
        if self.max_seq_length < 5:
            problems.append(f"max_seq_length must be at least 5 ([CLS] A [SEP] B [SEP]), "
                            f"got {self.max_seq_length}")
        if self.max_predictions_per_seq < 1:
            problems.append(f"max_predictions_per_seq must be at least 1, "
                            f"got {self.max_predictions_per_seq}")
        if not 0.0 < self.masked_lm_prob < 1.0:
            problems.append(f"masked_lm_prob must be in (0, 1), got {self.masked_lm_prob}")
        if not 0.0 <= self.short_seq_prob <= 1.0:
            problems.append(f"short_seq_prob must be in [0, 1], got {self.short_seq_prob}")
        if self.dupe_factor < 1:
            problems.append(f"dupe_factor must be at least 1, got {self.dupe_factor}")
        if problems:
            raise ValueError("; ".join(problems))


@dataclasses.dataclass(frozen=True)
class TokenIds:
    """What instance creation needs to know of the vocab, looked up by name (see tokenization)."""
    cls_id: int
    sep_id: int
    mask_id: int
    ordinary_ids: tuple  # candidates for the 10% random replacement
    is_continuation: bytes  # is_continuation[id] == 1 for "##" pieces (whole-word masking)


class Instance(NamedTuple):
    tokens: list  # [CLS] A [SEP] B [SEP], unpadded
    segment_ids: list
    masked_lm_positions: list  # sorted, unique
    masked_lm_labels: list  # the original ids at those positions
    is_random_next: bool


def create_instances(documents, options: InstanceOptions, ids: TokenIds, rng: random.Random):
    """All instances from a buffer of documents: `dupe_factor` passes with fresh masks, shuffled.

    Random-next segments are drawn from the other documents of the same buffer.
    """
    documents = [d for d in documents if d]
    instances = []
    for _ in range(options.dupe_factor):
        for index in range(len(documents)):
            instances.extend(create_instances_from_document(documents, index, options, ids, rng))
    rng.shuffle(instances)
    return instances


def create_instances_from_document(documents, index, options, ids, rng):
    """google-research/bert's `create_instances_from_document`, for one document."""
    document = documents[index]
    max_num_tokens = options.max_seq_length - 3  # [CLS], [SEP], [SEP]
    # Usually fill the sequence; sometimes (short_seq_prob) use a shorter one so that the model
    # also sees the short inputs of finetuning.
    target_length = max_num_tokens
    if rng.random() < options.short_seq_prob:
        target_length = rng.randint(2, max_num_tokens)

    instances = []
    chunk, chunk_length, i = [], 0, 0
    while i < len(document):
        chunk.append(document[i])
        chunk_length += len(document[i])
        if i == len(document) - 1 or chunk_length >= target_length:
            if len(chunk) == 1 and len(chunk[0]) >= 2 and rng.random() < 0.5:
                # One long segment: google forces "random next" here, which skews the NSP
                # labels towards random; split it instead, B being A's real continuation.
                cut = rng.randint(1, len(chunk[0]) - 1)
                chunk = [chunk[0][:cut], chunk[0][cut:]]
                a_end, force_real = 1, True
            else:
                a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
                force_real = False
            tokens_a = [t for sentence in chunk[:a_end] for t in sentence]
            if not force_real and (len(chunk) == 1 or rng.random() < 0.5):
                is_random_next = True
                tokens_b = random_segment(documents, index, target_length - len(tokens_a), rng)
                # The segments not used for A go back, to be used by the next instance.
                i -= len(chunk) - a_end
            else:
                is_random_next = False
                tokens_b = [t for sentence in chunk[a_end:] for t in sentence]
            truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
            if tokens_a and tokens_b:
                tokens = [ids.cls_id] + tokens_a + [ids.sep_id] + tokens_b + [ids.sep_id]
                segment_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
                positions, labels = create_masked_lm_predictions(tokens, options, ids, rng)
                instances.append(Instance(tokens, segment_ids, positions, labels,
                                          is_random_next))
            chunk, chunk_length = [], 0
        i += 1
    return instances


def random_segment(documents, index, target_length, rng):
    """At least `target_length` tokens (or a document's end) from a random point of another doc."""
    other = index
    for _ in range(10):  # a one-document buffer falls back to itself, as google's does
        other = rng.randint(0, len(documents) - 1)
        if other != index:
            break
    document = documents[other]
    tokens = []
    for sentence in document[rng.randint(0, len(document) - 1):]:
        tokens.extend(sentence)
        if len(tokens) >= target_length:
            break
    return tokens


def truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng):
    """Trims the longer segment, one token at a time from its front or back at random."""
    while len(tokens_a) + len(tokens_b) > max_num_tokens:
        longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def create_masked_lm_predictions(tokens, options, ids, rng):
    """Masks `tokens` in place; returns (sorted positions, original ids at them).

    Candidates are the non-special tokens; with whole-word masking a "##" piece joins the word
    before it and the word is masked, replaced or kept as one.
    """
    candidates = [p for p, t in enumerate(tokens) if t != ids.cls_id and t != ids.sep_id]
    num_to_predict = min(options.max_predictions_per_seq,
                         max(1, int(round(len(candidates) * options.masked_lm_prob))))
    if options.do_whole_word_mask:
        words = []
        for position in candidates:
            if words and ids.is_continuation[tokens[position]] and words[-1][-1] == position - 1:
                words[-1].append(position)
            else:
                words.append([position])
    else:
        words = [[p] for p in candidates]

    # Words in random order, as google's shuffle of all candidates, but drawn lazily (a partial
    # Fisher-Yates shuffle): only the words looked at are shuffled.
    positions, labels = [], []
    random = rng.random
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
            if draw < 0.8:
                tokens[position] = ids.mask_id
            elif draw >= 0.9:  # 10% random; the remaining 10% keep the original
                tokens[position] = ids.ordinary_ids[int(random() * len(ids.ordinary_ids))]
    order = sorted(range(len(positions)), key=positions.__getitem__)
    return [positions[k] for k in order], [labels[k] for k in order]
