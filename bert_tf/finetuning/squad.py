"""SQuAD v1.1 / v2.0 for extractive question answering: examples from the JSON files, the
model's features, and predictions from its logits, as google-research/bert's run_squad.py makes
them (the Model Garden's squad_lib is the same code).

    examples = read_squad("dev-v1.1.json", is_training=False)
    features = make_features(examples, tokenizer, max_seq_length=384, doc_stride=128,
                             max_query_length=64, is_training=False)
    predictions, nbest, null_odds = predict(examples, features, start_logits, end_logits,
                                            pieces, Answering(n_best_size=20))

A feature is one window of a context: [CLS] question [SEP] context piece window [SEP], padded.
Contexts longer than a window are covered by windows `doc_stride` pieces apart; a piece's
logits count only in the window where it has the most context on both sides. Answers are mapped
back to the exact characters of the context through the tokenizer's offsets (google's
`get_final_text` approximated this with a character alignment heuristic).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from bert_tf.finetuning.labelled_files import InputFileError

# google's run_squad splits the context into words on these characters only.
_WHITESPACE = frozenset(" \t\r\n\u202f")


class SquadExample(NamedTuple):
    qas_id: str
    question: str
    context: str
    words: list  # the context split on _WHITESPACE
    word_starts: list  # character offset of each word in the context
    answers: list  # every gold answer text ([] when impossible)
    start_word: int = -1  # training: the first answer's words; -1 when impossible
    end_word: int = -1
    answer_text: str = ""
    is_impossible: bool = False
    labelled: bool = True  # the file gives its answers (a test set's questions have none)


def split_words(context):
    """(words, their character starts), split as google's run_squad splits a context."""
    words, starts, previous_space = [], [], True
    for index, char in enumerate(context):
        if char in _WHITESPACE:
            previous_space = True
            continue
        if previous_space:
            words.append(char)
            starts.append(index)
        else:
            words[-1] += char
        previous_space = False
    return words, starts


def read_squad(path, is_training, version_2_with_negative=False) -> list:
    """The questions of a SQuAD file. Training takes the first answer of each question (or none,
    for v2's impossible ones); a problem names the file and the JSON path of the entry."""
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))["data"]
    except tf.errors.NotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputFileError(f"{path}: not a JSON file ({e})") from None
    except (KeyError, TypeError):
        raise InputFileError(f"{path}: not a SQuAD file (no top-level 'data' list)") from None
    examples, ids = [], {}
    for i, entry in enumerate(data):
        for j, paragraph in enumerate(_field(entry, "paragraphs", path, f"data[{i}]")):
            where = f"data[{i}].paragraphs[{j}]"
            context = _field(paragraph, "context", path, where)
            if not isinstance(context, str) or not context.strip():
                raise InputFileError(f"{path}: {where}: the context is empty")
            words, word_starts = split_words(context)
            char_to_word = np.cumsum([c not in _WHITESPACE and (k == 0 or context[k - 1] in
                                                                _WHITESPACE)
                                      for k, c in enumerate(context)]) - 1
            for k, qa in enumerate(_field(paragraph, "qas", path, where)):
                here = f"{where}.qas[{k}]"
                qas_id = str(_field(qa, "id", path, here))
                if qas_id in ids:
                    raise InputFileError(f"{path}: {here}: question id {qas_id!r} is also the id "
                                         f"of {ids[qas_id]}; ids must be unique")
                ids[qas_id] = here
                labelled = "answers" in qa or "is_impossible" in qa
                answers = [] if qa.get("is_impossible") else (
                    _field(qa, "answers", path, here) if is_training else qa.get("answers", []))
                answers = _checked_answers(answers, context, path, here, qas_id,
                                           version_2_with_negative)
                impossible = bool(version_2_with_negative and (qa.get("is_impossible", False)
                                                               or labelled and not answers))
                example = dict(qas_id=qas_id, labelled=labelled,
                               question=_field(qa, "question", path, here), context=context,
                               words=words, word_starts=word_starts,
                               answers=[a["text"] for a in answers], is_impossible=impossible)
                if is_training and not impossible:
                    if not answers:
                        raise InputFileError(f"{path}: {here}: a training question needs an "
                                             f"answer (or is_impossible, with SQuAD v2.0)")
                    first = answers[0]
                    end_char = first["answer_start"] + len(first["text"]) - 1
                    example.update(start_word=int(char_to_word[first["answer_start"]]),
                                   end_word=int(char_to_word[end_char]),
                                   answer_text=first["text"])
                examples.append(SquadExample(**example))
    if not examples:
        raise InputFileError(f"{path}: no questions")
    return examples


def _checked_answers(answers, context, path, here, qas_id, version_2_with_negative):
    """The answers of a question, each checked to lie in the context; empty ones (text "",
    as some files mark a question without answer) are dropped under SQuAD v2.0 (the question
    is then impossible) and refused under v1.1."""
    if not isinstance(answers, list):
        raise InputFileError(f"{path}: {here}: 'answers' must be a list")
    kept = []
    for a, answer in enumerate(answers):
        at = f"{here}.answers[{a}]"
        text = _field(answer, "text", path, at)
        start = _field(answer, "answer_start", path, at)
        if not isinstance(text, str):
            raise InputFileError(f"{path}: {at}: the answer text must be a string, got {text!r}")
        if not text:
            if version_2_with_negative:
                continue
            raise InputFileError(
                f"{path}: {at}: question {qas_id!r} has an empty answer; SQuAD v1.1 questions "
                f"need one (a question without answer needs --version_2_with_negative)")
        if isinstance(start, bool) or not isinstance(start, int):
            raise InputFileError(f"{path}: {at}: answer_start must be a whole number, got "
                                 f"{start!r}")
        if not 0 <= start <= len(context) - len(text) or \
                context[start:start + len(text)] != text:
            raise InputFileError(
                f"{path}: {at}: the answer {text!r} is not at answer_start={start} (the "
                f"context has {context[max(start, 0):max(start, 0) + len(text)]!r} there)")
        kept.append(answer)
    return kept


def _field(value, key, path, where):
    try:
        return value[key]
    except (KeyError, TypeError, IndexError):
        raise InputFileError(f"{path}: {where}: no {key!r}") from None


# === Features ===

class Features(NamedTuple):
    """The windows of all examples: model inputs [F, T] and what maps them back."""
    input_word_ids: np.ndarray
    input_mask: np.ndarray
    input_type_ids: np.ndarray
    start_positions: np.ndarray  # [F] answer start in the window (0, [CLS], when not in it)
    end_positions: np.ndarray
    example_index: np.ndarray  # [F] which example
    token_to_piece: np.ndarray  # [F, T] index among the context's pieces, -1 outside it
    token_is_max_context: np.ndarray  # [F, T] bool

    def inputs(self):
        return {"input_word_ids": self.input_word_ids, "input_mask": self.input_mask,
                "input_type_ids": self.input_type_ids}


class ContextPieces(NamedTuple):
    """A context's WordPiece ids, each piece's word and [start, end) characters."""
    ids: list
    word: list
    starts: list
    ends: list


def tokenize_contexts(examples, tokenizer, batch=20_000) -> dict:
    """{context: ContextPieces}: each word tokenized on its own, as google's run_squad does."""
    contexts = list(dict.fromkeys(e.context for e in examples))
    words, owner = [], []
    for c, context in enumerate(contexts):
        split, _ = split_words(context)
        words.extend(split)
        owner.extend([c] * len(split))
    ids, starts, ends = [], [], []
    for offset in range(0, len(words), batch):
        chunk = tf.constant(words[offset:offset + batch])
        exact = tokenizer.tokenize(chunk).to_list()
        offset_ids, piece_starts, piece_ends = (
            x.to_list() for x in tokenizer.tokenize_with_offsets(chunk))
        for row, word_ids in enumerate(exact):
            if word_ids == offset_ids[row]:
                starts.append(piece_starts[row])
                ends.append(piece_ends[row])
            else:  # normalized otherwise one character at a time (rare): the whole word
                length = len(words[offset + row])
                starts.append([0] * len(word_ids))
                ends.append([length] * len(word_ids))
            ids.append(word_ids)
    result, index = {}, 0
    for c, context in enumerate(contexts):
        _, word_starts = split_words(context)
        pieces = ContextPieces([], [], [], [])
        for w, base in enumerate(word_starts):
            pieces.ids.extend(ids[index])
            pieces.word.extend([w] * len(ids[index]))
            pieces.starts.extend(base + s for s in starts[index])
            pieces.ends.extend(base + e for e in ends[index])
            index += 1
        result[context] = pieces
    return result


def doc_spans(num_pieces, max_tokens_for_doc, doc_stride):
    """[(start, length)] of the windows over a context of `num_pieces` pieces."""
    spans, start = [], 0
    while start < num_pieces:
        length = min(num_pieces - start, max_tokens_for_doc)
        spans.append((start, length))
        if start + length == num_pieces:
            break
        start += min(length, doc_stride)
    return spans


def is_max_context(spans, span_index, position):
    """Whether window `span_index` gives the piece at `position` its most context: the largest
    min(left, right) context, ties to the longer window, then to the first."""
    best, best_index = None, None
    for index, (start, length) in enumerate(spans):
        end = start + length - 1
        if start <= position <= end:
            score = min(position - start, end - position) + 0.01 * length
            if best is None or score > best:
                best, best_index = score, index
    return best_index == span_index


def make_features(examples, tokenizer, max_seq_length, doc_stride, max_query_length,
                  is_training, pieces=None) -> Features:
    """The windows of every example. Training windows that do not hold the answer point at
    [CLS] (position 0), as google's do."""
    vocab = tokenizer.vocab
    pieces = pieces or tokenize_contexts(examples, tokenizer)
    questions = tokenizer.tokenize(tf.constant([e.question for e in examples])).to_list()
    answers = {}
    if is_training:
        texts = [e.answer_text for e in examples]
        answers = dict(enumerate(tokenizer.tokenize(tf.constant(texts)).to_list()))
    rows = collections.defaultdict(list)
    for index, example in enumerate(examples):
        query = questions[index][:max_query_length]
        context = pieces[example.context]
        start_piece = end_piece = -1
        if is_training and not example.is_impossible:
            start_piece, end_piece = _answer_pieces(example, context, answers[index])
        spans = doc_spans(len(context.ids), max_seq_length - len(query) - 3, doc_stride)
        for span_index, (span_start, span_length) in enumerate(spans):
            ids = [vocab.cls_id] + query + [vocab.sep_id]
            types = [0] * len(ids)
            to_piece, max_context = [-1] * len(ids), [False] * len(ids)
            for i in range(span_length):
                position = span_start + i
                to_piece.append(position)
                max_context.append(is_max_context(spans, span_index, position))
                ids.append(context.ids[position])
                types.append(1)
            ids.append(vocab.sep_id)
            types.append(1)
            to_piece.append(-1)
            max_context.append(False)
            start = end = 0
            if start_piece >= 0 and span_start <= start_piece and end_piece < span_start + \
                    span_length:
                offset = len(query) + 2 - span_start
                start, end = start_piece + offset, end_piece + offset
            padding = max_seq_length - len(ids)
            rows["input_word_ids"].append(ids + [0] * padding)
            rows["input_mask"].append([1] * len(ids) + [0] * padding)
            rows["input_type_ids"].append(types + [0] * padding)
            rows["start_positions"].append(start)
            rows["end_positions"].append(end)
            rows["example_index"].append(index)
            rows["token_to_piece"].append(to_piece + [-1] * padding)
            rows["token_is_max_context"].append(max_context + [False] * padding)
    dtypes = dict(input_word_ids="int32", input_mask="int32", input_type_ids="int32",
                  start_positions="int32", end_positions="int32", example_index="int64",
                  token_to_piece="int64", token_is_max_context=bool)
    return Features(**{name: np.asarray(rows[name], dtypes[name]).reshape(
        (-1, max_seq_length) if name.startswith(("input", "token")) else (-1,))
        for name in Features._fields})


def _answer_pieces(example, context, answer_ids):
    """The answer's first and last piece: its words' pieces, then the smallest sub-span whose
    pieces are the answer text's own (google's `_improve_answer_span`: "(1895-1943)." -> "1895")."""
    word = np.asarray(context.word)
    start = int(np.searchsorted(word, example.start_word, side="left"))
    end = int(np.searchsorted(word, example.end_word, side="right")) - 1
    for new_start in range(start, end + 1):
        for new_end in range(end, new_start - 1, -1):
            if context.ids[new_start:new_end + 1] == answer_ids:
                return new_start, new_end
    return start, end


# === Predictions ===

@dataclasses.dataclass(frozen=True)
class Answering:
    """How answers are chosen from the logits (run_squad's flags of the same names)."""
    n_best_size: int = 20
    max_answer_length: int = 30
    version_2_with_negative: bool = False
    null_score_diff_threshold: float = 0.0

    @classmethod
    def of(cls, config) -> "Answering":
        """The fields of a job's settings (a QuestionAnsweringConfig)."""
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls)})


def predict(examples, features, start_logits, end_logits, pieces, answering=Answering()):
    """(predictions {qas_id: text}, nbest {qas_id: [{text, probability, start_logit,
    end_logit}]}, null_odds {qas_id: score} for v2) from the windows' logits [F, T]."""
    n_best_size, max_answer_length = answering.n_best_size, answering.max_answer_length
    version_2_with_negative = answering.version_2_with_negative
    null_score_diff_threshold = answering.null_score_diff_threshold
    by_example = collections.defaultdict(list)
    for feature, example_index in enumerate(features.example_index):
        by_example[int(example_index)].append(feature)
    predictions, nbest_json, null_odds = {}, {}, {}
    for index, example in enumerate(examples):
        context = pieces[example.context]
        candidates, null = [], None
        for feature in by_example[index]:
            starts, ends = start_logits[feature], end_logits[feature]
            to_piece = features.token_to_piece[feature]
            max_context = features.token_is_max_context[feature]
            if version_2_with_negative:
                score = float(starts[0] + ends[0])
                if null is None or score < null[0]:
                    null = (score, float(starts[0]), float(ends[0]))
            best_starts = np.argsort(-starts, kind="stable")[:n_best_size]
            best_ends = np.argsort(-ends, kind="stable")[:n_best_size]
            for s in best_starts:
                for e in best_ends:
                    if (to_piece[s] < 0 or to_piece[e] < 0 or not max_context[s] or e < s
                            or e - s + 1 > max_answer_length):
                        continue
                    candidates.append((float(starts[s] + ends[e]), float(starts[s]),
                                       float(ends[e]), int(to_piece[s]), int(to_piece[e])))
        candidates.sort(key=lambda c: -c[0])
        nbest, seen = [], set()
        if null is not None:
            candidates.append((null[0], null[1], null[2], -1, -1))
            candidates.sort(key=lambda c: -c[0])
        for _, start_logit, end_logit, first, last in candidates:
            if len(nbest) >= n_best_size:
                break
            text = ("" if first < 0 else
                    example.context[context.starts[first]:context.ends[last]])
            if text in seen:
                continue
            seen.add(text)
            nbest.append({"text": text, "start_logit": start_logit, "end_logit": end_logit})
        if null is not None and "" not in seen:
            nbest.append({"text": "", "start_logit": null[1], "end_logit": null[2]})
        if not nbest:
            nbest.append({"text": "empty", "start_logit": 0.0, "end_logit": 0.0})
        totals = [n["start_logit"] + n["end_logit"] for n in nbest]
        top = max(totals)
        exps = [math.exp(t - top) for t in totals]
        for entry, value in zip(nbest, exps):
            entry["probability"] = value / sum(exps)
        nbest_json[example.qas_id] = nbest
        if not version_2_with_negative:
            predictions[example.qas_id] = nbest[0]["text"]
            continue
        best = next((n for n in nbest if n["text"]), None)
        if best is None:
            null_odds[example.qas_id] = null[0]
            predictions[example.qas_id] = ""
            continue
        difference = null[0] - best["start_logit"] - best["end_logit"]
        null_odds[example.qas_id] = difference
        predictions[example.qas_id] = "" if difference > null_score_diff_threshold else \
            best["text"]
    return predictions, nbest_json, null_odds
