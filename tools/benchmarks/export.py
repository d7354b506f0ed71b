"""export: seconds to write a text-in classifier SavedModel, with the tokenizer traced once as a
graph function (what bert_tf does) against traced inline at every use (what it did)."""

import os
import statistics
import tempfile
import time

from benchmarks.settings import FLAGS, REPO


def bench_export(log):
    """The text-in classifier export of bert_<--finetune_config> (random weights, the sample
    vocab), --repeats times each way, interleaved; the median seconds and their ratio."""
    import keras

    from bert_tf.config import BertConfig
    from bert_tf.data.sample_data import make_sample_data, sample_prefix
    from bert_tf.export.classifier import export_classifier
    from bert_tf.export.serving import ExportRequest
    from bert_tf.modeling import BertEncoder, build_classifier
    from bert_tf.text import tokenization
    from bert_tf.text.tokenization import load_vocab

    make_sample_data(FLAGS.seq_length, FLAGS.predictions, log=log)
    vocab = load_vocab(f"{sample_prefix()}_vocab.txt")
    config = BertConfig.from_json_file(os.path.join(REPO, "configs",
                                                    f"bert_{FLAGS.finetune_config}.json"))
    keras.utils.set_random_seed(0)
    model = build_classifier(BertEncoder(config), 2)
    request = ExportRequest("classification", model, vocab, True, FLAGS.serving_seq_length,
                            {"labels": ["a", "b"], "pair": True})
    tokenizer_class = tokenization.WordpieceTokenizer
    graph_init = tokenizer_class.__init__

    def inline_init(self, *args, **kwargs):  # the methods themselves: traced at every use
        graph_init(self, *args, **kwargs)
        self.tokenize, self.tokenize_with_offsets = (self._tokenize,
                                                     self._tokenize_with_offsets)

    seconds = {"graph_function": [], "inline": []}
    with tempfile.TemporaryDirectory() as work:
        for repeat in range(FLAGS.repeats):
            for way, init in (("graph_function", graph_init), ("inline", inline_init)):
                tokenizer_class.__init__ = init
                try:
                    start = time.perf_counter()
                    export_classifier(request, os.path.join(work, f"{way}_{repeat}"))
                    seconds[way].append(time.perf_counter() - start)
                finally:
                    tokenizer_class.__init__ = graph_init
    result = {way: statistics.median(times) for way, times in seconds.items()}
    result["inline_vs_graph_function"] = result["inline"] / result["graph_function"]
    log(f"export bert_{FLAGS.finetune_config} text-in pair classifier: "
        f"{result['graph_function']:.1f} s (tokenizer traced once), {result['inline']:.1f} s "
        f"(traced at every use): {result['inline_vs_graph_function']:.2f}x")
    return result
