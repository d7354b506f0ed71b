import random

import numpy as np
import pytest
import tensorflow as tf

from bert_tf.data.instances import (InstanceOptions, TokenIds, create_instances,
                                      create_masked_lm_predictions, truncated_lengths)
from bert_tf.data.masking import Masker, MaskingRules

# A toy vocab: 0 [PAD], 1 [UNK], 2 [CLS], 3 [SEP], 4 [MASK], 5..9 [unused0-4], 10..59 words,
# 60..79 "##" pieces.
CLS, SEP, MASK = 2, 3, 4
ORDINARY = tuple(range(10, 80))
IDS = TokenIds(cls_id=CLS, sep_id=SEP, mask_id=MASK, ordinary_ids=ORDINARY,
               is_continuation=bytes(1 if 60 <= i < 80 else 0 for i in range(80)))


def toy_documents(num_documents=30, seed=0):
    rng = random.Random(seed)
    return [[[rng.randint(10, 59)] + [rng.randint(10, 79) for _ in range(rng.randint(2, 14))]
             for _ in range(rng.randint(1, 12))] for _ in range(num_documents)]


def check_instance(instance, options, originals=None):
    tokens, segments = instance.tokens, instance.segment_ids
    assert len(tokens) == len(segments) <= options.max_seq_length
    assert tokens[0] == CLS and tokens[-1] == SEP and tokens.count(SEP) == 2
    first_sep = tokens.index(SEP)
    assert segments == [0] * (first_sep + 1) + [1] * (len(tokens) - first_sep - 1)
    positions = instance.masked_lm_positions
    assert positions == sorted(set(positions)), "positions sorted and unique"
    assert 1 <= len(positions) <= options.max_predictions_per_seq
    for position, label in zip(positions, instance.masked_lm_labels):
        assert position not in (0, first_sep, len(tokens) - 1), "special tokens never masked"
        assert label in ORDINARY
        assert tokens[position] == MASK or tokens[position] == label \
            or tokens[position] in ORDINARY


def test_instances_respect_the_layout():
    options = InstanceOptions(max_seq_length=32, max_predictions_per_seq=5, dupe_factor=2)
    instances = create_instances(toy_documents(), options, IDS, random.Random(1))
    assert len(instances) > 100
    for instance in instances:
        check_instance(instance, options)
    labels = [i.is_random_next for i in instances]
    assert 0.35 < sum(labels) / len(labels) < 0.65


def test_original_text_is_recoverable():
    documents = toy_documents()
    all_tokens = {t for d in documents for s in d for t in s}
    options = InstanceOptions(max_seq_length=24, max_predictions_per_seq=4)
    for instance in create_instances(documents, options, IDS, random.Random(2)):
        restored = list(instance.tokens)
        for position, label in zip(instance.masked_lm_positions, instance.masked_lm_labels):
            restored[position] = label
        assert MASK not in restored
        assert set(restored) - {CLS, SEP} <= all_tokens


def test_same_seed_same_instances():
    options = InstanceOptions(max_seq_length=32, max_predictions_per_seq=5)
    a = create_instances(toy_documents(), options, IDS, random.Random(7))
    b = create_instances(toy_documents(), options, IDS, random.Random(7))
    c = create_instances(toy_documents(), options, IDS, random.Random(8))
    assert a == b and a != c


def test_single_document_works():
    options = InstanceOptions(max_seq_length=16, max_predictions_per_seq=3, dupe_factor=3)
    instances = create_instances(toy_documents(1, seed=3), options, IDS, random.Random(0))
    assert instances
    for instance in instances:
        check_instance(instance, options)


def google_truncation(a_length, b_length, max_num_tokens):
    """google's truncate_seq_pair, on lengths: trim the longer (B on a tie), one at a time."""
    while a_length + b_length > max_num_tokens:
        if a_length > b_length:
            a_length -= 1
        else:
            b_length -= 1
    return a_length, b_length


def test_truncated_lengths_match_googles_loop():
    for max_num_tokens in (2, 3, 10, 11, 125):
        for a in range(1, 140, 3):
            for b in range(1, 140, 5):
                assert truncated_lengths(a, b, max_num_tokens) == google_truncation(
                    a, b, max_num_tokens), (a, b, max_num_tokens)


def test_truncation_trims_both_ends_of_a_segment():
    # One long document of distinct tokens: every A is a contiguous run, cut at either end.
    document = [[10 + (i % 40) for i in range(j, j + 10)] for j in range(0, 400, 10)]
    options = InstanceOptions(max_seq_length=12, max_predictions_per_seq=1, dupe_factor=5,
                              short_seq_prob=0.0)
    starts_mid_sentence = ends_mid_sentence = 0
    for instance in create_instances([document, document], options, IDS, random.Random(3)):
        tokens = list(instance.tokens)
        for position, label in zip(instance.masked_lm_positions, instance.masked_lm_labels):
            tokens[position] = label
        a = tokens[1:tokens.index(SEP)]
        assert all((y - x) % 40 == 1 for x, y in zip(a, a[1:])), "contiguous"
        starts_mid_sentence += (a[0] - 10) % 10 != 0
        ends_mid_sentence += (a[-1] - 10) % 10 != 9
    assert starts_mid_sentence > 10 and ends_mid_sentence > 10


def static_masking(rows, options, ids, rng):
    """The static path (data creation): each row masked in place, in Python."""
    out = []
    for tokens in rows:
        tokens = list(tokens)
        positions, labels = create_masked_lm_predictions(tokens, options, ids, rng)
        out.append((tokens, positions, labels))
    return out


def dynamic_masking(rows, options, ids, rng):
    """The dynamic path (run_pretraining's tf.data): all rows as one batch."""
    rules = MaskingRules(options.masked_lm_prob, options.max_predictions_per_seq,
                         options.do_whole_word_mask, ids, options.mask_replace_prob,
                         options.random_replace_prob)
    seq = max(map(len, rows))
    input_ids = np.zeros((len(rows), seq), np.int32)
    for i, tokens in enumerate(rows):
        input_ids[i, :len(tokens)] = tokens
    features = {"input_word_ids": tf.constant(input_ids),
                "input_mask": tf.constant((input_ids > 0).astype(np.int32)),
                "input_type_ids": tf.zeros_like(input_ids)}
    features, labels = Masker(rules)(features, {}, tf.constant([rng.getrandbits(31), 0],
                                                               tf.int64))
    out = []
    for i, tokens in enumerate(rows):
        count = int(labels["masked_lm_weights"][i].numpy().sum())
        out.append((features["input_word_ids"][i, :len(tokens)].numpy().tolist(),
                    features["masked_lm_positions"][i, :count].numpy().tolist(),
                    labels["masked_lm_ids"][i, :count].numpy().tolist()))
    return out


MASKINGS = pytest.mark.parametrize("masking", [static_masking, dynamic_masking],
                                   ids=["static", "dynamic"])


def masked_split(masking, do_whole_word_mask, trials=3000, **options):
    options = InstanceOptions(max_seq_length=64, max_predictions_per_seq=20,
                              do_whole_word_mask=do_whole_word_mask, **options)
    predicted = min(20, round(options.masked_lm_prob * 40))
    rng = random.Random(0)
    counts = {"mask": 0, "random": 0, "keep": 0, "predictions": 0, "candidates": 0}
    rows = [[CLS] + [rng.randint(10, 59) for _ in range(40)] + [SEP] for _ in range(trials)]
    for original, (tokens, positions, labels) in zip(rows, masking(rows, options, IDS, rng)):
        counts["candidates"] += 40
        assert positions == sorted(set(positions)) and len(positions) == predicted
        for position, label in zip(positions, labels):
            assert original[position] == label
            counts["predictions"] += 1
            shown = tokens[position]
            key = "mask" if shown == MASK else "keep" if shown == label else "random"
            counts[key] += 1
            assert shown in ORDINARY or shown == MASK
        unmasked = set(range(len(original))) - set(positions)
        assert all(tokens[p] == original[p] for p in unmasked)
    return counts


@MASKINGS
def test_masking_statistics(masking):
    counts = masked_split(masking, False)
    assert counts["predictions"] / counts["candidates"] == pytest.approx(0.15, abs=0.01)
    n = counts["predictions"]
    assert counts["mask"] / n == pytest.approx(0.8, abs=0.02)
    assert counts["random"] / n == pytest.approx(0.1, abs=0.02)
    assert counts["keep"] / n == pytest.approx(0.1, abs=0.02)


@MASKINGS
def test_masking_rate_and_split_are_settings(masking):
    # ModernBERT's 30%, and a split other than 80/10/10
    counts = masked_split(masking, False, trials=2000, masked_lm_prob=0.3,
                          mask_replace_prob=0.6, random_replace_prob=0.25)
    assert counts["predictions"] / counts["candidates"] == pytest.approx(0.3, abs=0.005)
    n = counts["predictions"]
    assert counts["mask"] / n == pytest.approx(0.6, abs=0.02)
    assert counts["random"] / n == pytest.approx(0.25, abs=0.02)
    assert counts["keep"] / n == pytest.approx(0.15, abs=0.02)


@MASKINGS
def test_masked_positions_are_uniform_over_the_candidates(masking):
    options = InstanceOptions(max_seq_length=64, max_predictions_per_seq=20)
    rng = random.Random(1)
    rows = [[CLS] + [rng.randint(10, 59) for _ in range(20)] + [SEP] for _ in range(4000)]
    hits = np.zeros(22)
    for _, positions, _ in masking(rows, options, IDS, rng):
        hits[positions] += 1
    assert hits[0] == hits[21] == 0  # [CLS] and [SEP] never
    share = hits[1:21] / hits.sum()  # 3 of 20 per row: 1/20 each
    assert np.all(np.abs(share - 0.05) < 0.01), share


@MASKINGS
def test_random_replacements_are_ordinary_tokens(masking):
    options = InstanceOptions(max_seq_length=64, max_predictions_per_seq=60, masked_lm_prob=0.9)
    ids = TokenIds(CLS, SEP, MASK, ordinary_ids=(10, 11), is_continuation=IDS.is_continuation)
    rng = random.Random(0)
    replaced = set()
    rows = [[CLS] + [20] * 50 + [SEP] for _ in range(200)]
    for tokens, positions, _ in masking(rows, options, ids, rng):
        replaced |= {tokens[p] for p in positions} - {MASK, 20}
    assert replaced == {10, 11}


@MASKINGS
def test_whole_word_masking_groups_pieces_with_one_decision(masking):
    options = InstanceOptions(max_seq_length=64, max_predictions_per_seq=20,
                              do_whole_word_mask=True, masked_lm_prob=0.3)
    rng = random.Random(0)
    seen_multi_piece, rows, all_words = 0, [], []
    for _ in range(500):
        # words of 1-3 pieces: a word id (10..59) then "##" pieces (60..79)
        words, tokens = [], [CLS]
        for _ in range(12):
            word = [rng.randint(10, 59)] + [rng.randint(60, 79) for _ in range(rng.randint(0, 2))]
            words.append(list(range(len(tokens), len(tokens) + len(word))))
            tokens.extend(word)
        tokens.append(SEP)
        rows.append(tokens)
        all_words.append(words)
    budget_used = []
    for original, words, (tokens, positions, _) in zip(rows, all_words,
                                                       masking(rows, options, IDS, rng)):
        chosen = set(positions)
        budget = min(20, round(0.3 * (len(original) - 2)))
        assert 1 <= len(positions) <= budget
        budget_used.append(len(positions) / budget)
        for word in words:
            picked = [p in chosen for p in word]
            assert all(picked) or not any(picked), "a word is predicted whole or not at all"
            if all(picked) and len(word) > 1:
                seen_multi_piece += 1
                kinds = {"mask" if tokens[p] == MASK else
                         "keep" if tokens[p] == original[p] else "random" for p in word}
                # One decision per word (a random draw can equal the original, hence <=).
                assert len(kinds) == 1 or kinds <= {"random", "keep"}
    assert seen_multi_piece > 100
    assert np.mean(budget_used) > 0.9  # words that do not fit are skipped, later ones taken


def test_single_segments_for_masked_lm_only_data():
    documents = toy_documents()
    options = InstanceOptions(max_seq_length=32, max_predictions_per_seq=5, dupe_factor=1,
                              next_sentence=False, short_seq_prob=0.0)
    instances = create_instances(documents, options, IDS, random.Random(4))
    # the text of each document once, in order, split at sentence boundaries, [CLS] A [SEP]
    sentence_lengths = {len(s) for d in documents for s in d}
    restored = []
    for instance in instances:
        tokens = list(instance.tokens)
        assert tokens[0] == CLS and tokens[-1] == SEP and tokens.count(SEP) == 1
        assert instance.segment_ids == [0] * len(tokens) and not instance.is_random_next
        assert len(tokens) <= 32 and 1 <= len(instance.masked_lm_positions) <= 5
        for position, label in zip(instance.masked_lm_positions, instance.masked_lm_labels):
            assert 0 < position < len(tokens) - 1
            tokens[position] = label
        restored.append(tokens[1:-1])
    everything = sorted(map(tuple, restored))
    expected = []
    for document in documents:
        chunk = []
        for sentence in document:
            if chunk and len(chunk) + len(sentence) > 30:
                expected.append(tuple(chunk))
                chunk = []
            chunk += sentence
        expected.append(tuple(chunk))  # (toy sentences are at most 15 tokens: none cut)
    assert max(sentence_lengths) <= 30 and everything == sorted(expected)
    # sequences are filled: most are longer than half the room
    assert np.mean([len(r) > 15 for r in restored]) > 0.5


def test_options_are_validated():
    with pytest.raises(ValueError, match="mask_replace_prob=0.9 and --random_replace_prob=0.2 "
                                         "add up to more than 1"):
        InstanceOptions(mask_replace_prob=0.9, random_replace_prob=0.2)
    with pytest.raises(ValueError, match="max_seq_length must be at least 5"):
        InstanceOptions(max_seq_length=4)
    with pytest.raises(ValueError, match="masked_lm_prob must be in"):
        InstanceOptions(masked_lm_prob=0.0)
    with pytest.raises(ValueError, match="dupe_factor"):
        InstanceOptions(dupe_factor=0)
