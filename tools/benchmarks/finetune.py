"""finetune and tasks: classifier, question-answering and tagging training, batches by length
against padded."""

import os

from benchmarks.settings import FLAGS, REPO
from benchmarks.train import median_rate


def bench_finetune(log):
    """Classifier fit() examples/s on short texts: dynamic padding vs padding to max length."""
    import random

    import keras
    import numpy as np

    from bert_tf.config import BertConfig
    from bert_tf.data.sample_data import make_sample_data, sample_prefix
    from bert_tf.finetuning import classification as classifier
    from bert_tf.finetuning.labelled_files import Example
    from bert_tf.modeling import BertEncoder, build_classifier
    from bert_tf.text.preprocessing import Preprocessor
    from bert_tf.text.tokenization import load_vocab

    make_sample_data(FLAGS.seq_length, FLAGS.predictions, log=log)
    vocab = load_vocab(f"{sample_prefix()}_vocab.txt")
    with open(f"{sample_prefix()}_corpus.txt", encoding="utf-8") as f:
        words = f.read(2_000_000).split()
    rng = random.Random(0)
    examples = []  # short texts, 5-25 words, as in sentiment or intent sets
    for _ in range(1024):
        start = rng.randrange(len(words) - 30)
        examples.append(Example(" ".join(words[start:start + rng.randint(5, 25)]), None, "x",
                                len(examples) + 1))
    ids = np.array([rng.randint(0, 1) for _ in examples])
    config = BertConfig.from_json_file(os.path.join(REPO, "configs",
                                                    f"bert_{FLAGS.finetune_config}.json"))
    preprocessor = Preprocessor(vocab, True, FLAGS.seq_length)
    results = {}
    for dynamic in (False, True):
        keras.utils.set_random_seed(0)
        model = build_classifier(BertEncoder(config), 2)
        model.compile(optimizer=keras.optimizers.AdamW(2e-5),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        data = classifier.make_dataset(examples, ids, preprocessor, 32, shuffle=True, seed=0,
                                       dynamic_padding=dynamic)  # as run_classifier trains
        steps = len(examples) // 32  # a pass's worth of the endless training batches
        rate = median_rate(lambda: model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0),
                            steps * 32, FLAGS.repeats)
        results["dynamic_padding" if dynamic else "padded_to_max"] = rate
        log(f"finetune bert_{FLAGS.finetune_config} seq {FLAGS.seq_length}, short texts, "
            f"{'dynamic padding' if dynamic else 'padded to max'}: {rate:.1f} examples/s")
    results["ratio"] = results["dynamic_padding"] / results["padded_to_max"]
    log(f"finetune: dynamic padding {results['ratio']:.2f}x padded")
    return results


def bench_tasks(log):
    """fit() examples/s of the question-answering (seq 384 windows) and tagging (seq 128)
    models as run_squad and run_tagging train them, batches by length against batches padded to
    max_seq_length, for bert_tiny and bert_mini. The rows are made by the tasks' own feature
    code from real text (the sample corpus): tagging rows are its sentences; question-answering
    examples are a question of 8 words before a context of about 120 words (SQuAD's mean),
    windowed with doc_stride 128."""
    import random

    import keras
    import numpy as np
    import tensorflow as tf

    from bert_tf.config import BertConfig
    from bert_tf.data.sample_data import make_sample_data, sample_prefix
    from bert_tf.finetuning import squad
    from bert_tf.finetuning.batching import batch_by_length
    from bert_tf.finetuning.tagged_files import Sentence
    from bert_tf.finetuning.tagging import make_features
    from bert_tf.modeling import BertEncoder, build_question_answerer, build_tagger
    from bert_tf.text.tokenization import WordpieceTokenizer, load_vocab

    make_sample_data(FLAGS.seq_length, FLAGS.predictions, log=log)
    tokenizer = WordpieceTokenizer(load_vocab(f"{sample_prefix()}_vocab.txt"), True)
    with open(f"{sample_prefix()}_corpus.txt", encoding="utf-8") as f:
        lines = [line.split() for line in f if len(line.split()) >= 3][:20_000]
    rng, n, batch = random.Random(0), 512, 32
    sentences = [Sentence(words, ["O"] * len(words), i)
                 for i, words in enumerate(rng.sample(lines, n))]
    tagging = make_features(sentences, tokenizer, ["O"], 128)
    tagging_rows = tf.data.Dataset.from_tensor_slices(
        (tagging.inputs(), tagging.labels, tagging.weights))
    examples = []
    for i in range(n):
        start = rng.randrange(len(lines) - 40)
        words = [w for line in lines[start:start + 40] for w in line][:rng.randint(60, 180)]
        answer = rng.randrange(len(words))
        context = " ".join(words)
        starts = [0]
        for word in words[:-1]:
            starts.append(starts[-1] + len(word) + 1)
        examples.append(squad.SquadExample(
            str(i), " ".join(rng.choice(lines)[:8]), context, words, starts, [words[answer]],
            answer, answer, words[answer]))
    qa = squad.make_features(examples, tokenizer, 384, 128, 64, True)
    qa_rows = tf.data.Dataset.from_tensor_slices((qa.inputs(), {
        "start_logits": qa.start_positions, "end_logits": qa.end_positions}))
    lengths = {"tagging": tagging.input_mask.sum(1), "question_answering": qa.input_mask.sum(1)}
    for task, values in lengths.items():
        log(f"{task}: {len(values)} rows, tokens per row mean {values.mean():.0f}, "
            f"p90 {np.percentile(values, 90):.0f}")

    results = {}
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    for name in ("tiny", "mini"):
        config = BertConfig.from_json_file(os.path.join(REPO, "configs", f"bert_{name}.json"))
        for task, rows, seq in (("question_answering", qa_rows, 384),
                                ("tagging", tagging_rows, 128)):
            count = len(lengths[task])
            for dynamic in (False, True):
                keras.utils.set_random_seed(0)
                if task == "question_answering":
                    model = build_question_answerer(BertEncoder(config))
                    model.compile(optimizer=keras.optimizers.AdamW(5e-5),
                                  loss={"start_logits": loss, "end_logits": loss},
                                  loss_weights={"start_logits": 0.5, "end_logits": 0.5})
                else:
                    model = build_tagger(BertEncoder(config), 9)
                    model.compile(optimizer=keras.optimizers.AdamW(5e-5), loss=loss,
                                  weighted_metrics=["accuracy"])
                data = batch_by_length(rows, batch, seq, shuffle=True, seed=0,
                                       dynamic_padding=dynamic, num_rows=count)
                steps = count // batch  # a pass's worth of the endless training batches
                model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)  # trace, warm up
                rate = median_rate(lambda: model.fit(data, epochs=1, steps_per_epoch=steps,
                                                      verbose=0), steps * batch, FLAGS.repeats)
                key = f"{task}_{name}_{'by_length' if dynamic else 'padded'}"
                results[key] = rate
                log(f"{task} bert_{name} seq {seq} batch {batch}, fit(), "
                    f"{'batches by length' if dynamic else 'padded to max'}: "
                    f"{rate:.1f} rows/s")
            results[f"{task}_{name}_ratio"] = (results[f"{task}_{name}_by_length"]
                                               / results[f"{task}_{name}_padded"])
            log(f"{task} bert_{name}: by length {results[f'{task}_{name}_ratio']:.2f}x padded")
    return results
