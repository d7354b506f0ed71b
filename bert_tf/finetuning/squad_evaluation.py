"""SQuAD's official evaluation (v1.1 and v2.0): exact match and F1 over normalized answers.

An answer is normalized by lower-casing, removing punctuation and the articles a / an / the, and
collapsing whitespace; a prediction scores the best of its exact match (0 or 1) and its token F1
against each gold answer. An unanswerable question (v2.0) has the single gold answer "", so only
"" scores there. Figures are percentages, as the official script prints them; v2.0 also splits
them into HasAns_ and NoAns_.
"""

import collections
import re
import string

_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text):
    text = "".join(c for c in text.lower() if c not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction, gold):
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction, gold):
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not expected:  # unanswerable: 1 only when both are empty
        return float(predicted == expected)
    common = sum((collections.Counter(predicted) & collections.Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def evaluate(gold_answers, predictions):
    """gold_answers {qas_id: [texts], [] when unanswerable}, predictions {qas_id: text} ->
    {"exact_match", "f1", "total"}, plus HasAns_/NoAns_ figures when some are unanswerable.
    A question without a prediction scores 0."""
    scores = {}
    for qas_id, answers in gold_answers.items():
        golds = [a for a in answers if normalize_answer(a)] or [""]
        prediction = predictions.get(qas_id, None)
        if prediction is None:
            scores[qas_id] = (0.0, 0.0)
        else:
            scores[qas_id] = (max(exact_match(prediction, g) for g in golds),
                              max(f1(prediction, g) for g in golds))
    result = _figures(scores.values())
    has_answer = [scores[q] for q, answers in gold_answers.items() if any(map(normalize_answer,
                                                                              answers))]
    no_answer = [scores[q] for q, answers in gold_answers.items() if not any(
        map(normalize_answer, answers))]
    if no_answer:
        for prefix, part in (("HasAns_", has_answer), ("NoAns_", no_answer)):
            if part:
                result.update({prefix + k: v for k, v in _figures(part).items()})
    return result


def _figures(scores):
    scores = list(scores)
    total = len(scores)
    return {"exact_match": 100.0 * sum(s[0] for s in scores) / max(total, 1),
            "f1": 100.0 * sum(s[1] for s in scores) / max(total, 1), "total": total}
