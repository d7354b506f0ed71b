"""Entity-level precision, recall and F1 for tagged sentences, with CoNLL's conlleval rules.

An entity (chunk) starts at B- or S-, at an I- or E- that follows O, E- or S-, or at any tag
whose type differs from the previous one's; it ends before the next tag that starts one, before
an O, and after an E- or S-. So an I-PER after O starts an entity, as conlleval (and seqeval's
default mode) count it. An entity is right when its type, first and last word all match.
"""

import collections


def _prefix_and_type(tag):
    return ("O", "") if tag == "O" else (tag[0], tag[2:])


def ends_chunk(previous, current):
    """Whether an entity ends between tags `previous` and `current`."""
    (p, p_type), (c, c_type) = _prefix_and_type(previous), _prefix_and_type(current)
    return (p in ("E", "S") or (p in ("B", "I") and c in ("B", "S", "O"))
            or (p != "O" and p_type != c_type))


def starts_chunk(previous, current):
    """Whether an entity starts at tag `current` after tag `previous`."""
    (p, p_type), (c, c_type) = _prefix_and_type(previous), _prefix_and_type(current)
    return (c in ("B", "S") or (p in ("E", "S", "O") and c in ("E", "I"))
            or (c != "O" and p_type != c_type))


def entities(tags):
    """{(type, first word, last word)} of a tag sequence."""
    found, start = set(), None
    padded = ["O"] + list(tags) + ["O"]
    for i in range(1, len(padded)):
        if start is not None and ends_chunk(padded[i - 1], padded[i]):
            found.add((_prefix_and_type(padded[start])[1], start - 1, i - 2))
            start = None
        if i < len(padded) - 1 and starts_chunk(padded[i - 1], padded[i]):
            start = i
    return found


def tagging_metrics(gold_sentences, predicted_sentences):
    """Overall and per-type precision, recall, F1 (entity level), and word accuracy."""
    counts = collections.defaultdict(lambda: [0, 0, 0])  # type -> [correct, predicted, gold]
    words = right = 0
    for gold, predicted in zip(gold_sentences, predicted_sentences, strict=True):
        expected, found = entities(gold), entities(predicted)
        for entity in found:
            counts[entity[0]][1] += 1
            counts[entity[0]][0] += entity in expected
        for entity in expected:
            counts[entity[0]][2] += 1
        words += len(gold)
        right += sum(g == p for g, p in zip(gold, predicted))
    total = [sum(c[i] for c in counts.values()) for i in range(3)]
    result = {**_scores(*total), "accuracy": right / max(words, 1),
              "num_sentences": len(gold_sentences)}
    result["per_type"] = {name: {**_scores(*c), "support": c[2]}
                          for name, c in sorted(counts.items())}
    return result


def _scores(correct, predicted, gold):
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}
