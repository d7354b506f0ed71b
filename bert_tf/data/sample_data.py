"""The embedded default's data: a vocab and TFRecord shards made once from Python's own
documentation (`sample_corpus`), cached where they never land in site-packages.
"""

import os


def sample_data_dir():
    """$BERT_TF_CACHE_DIR if set; else tfrecords/ of the source checkout this package runs from;
    else (an installed package) $XDG_CACHE_HOME/bert_tf, by default ~/.cache/bert_tf."""
    if os.environ.get("BERT_TF_CACHE_DIR"):
        return os.environ["BERT_TF_CACHE_DIR"]
    checkout = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if os.path.isfile(os.path.join(checkout, "pyproject.toml")) and os.path.isdir(
            os.path.join(checkout, "tfrecords")):
        return os.path.join(checkout, "tfrecords")
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "bert_tf")


def sample_prefix():
    """The sample files' common prefix: <prefix>_corpus.txt, <prefix>_vocab.txt, shards."""
    return os.path.join(sample_data_dir(), "sample")


def make_sample_data(max_seq_length, max_predictions_per_seq, log=print, dynamic_masking=False,
                     next_sentence=True):
    """Makes the sample data once (3 MB of text, a 30,522-token vocab, 4 shards): static masks
    (3 masked copies), or with `dynamic_masking` one unmasked pass (masked as it is read);
    sentence pairs, or without `next_sentence` single segments; returns the shards' glob."""
    from bert_tf import locks
    from bert_tf.data import schema

    common = sample_prefix()
    prefix = (f"{common}_{max_seq_length}_{max_predictions_per_seq}"
              f"{'_dynamic' if dynamic_masking else ''}{'' if next_sentence else '_single'}")
    if os.path.exists(schema.manifest_path(prefix)):
        return f"{prefix}-*-of-*.tfrecord"
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    # Two runs started at once: the second waits for the first's data.
    lock = os.path.join(os.path.dirname(prefix), f".{os.path.basename(prefix)}.making.lock")
    with locks.output_lock(lock, "the sample data", wait=3600):
        if not os.path.exists(schema.manifest_path(prefix)):
            _make(common, prefix, max_seq_length, max_predictions_per_seq, dynamic_masking,
                  next_sentence, log)
    return f"{prefix}-*-of-*.tfrecord"


def _make(common, prefix, max_seq_length, max_predictions_per_seq, dynamic_masking,
          next_sentence, log):
    from bert_tf.data.instances import InstanceOptions
    from bert_tf.data.sample_corpus import write_corpus
    from bert_tf.data.writer import DataCreationConfig, create_pretraining_data
    from bert_tf.text.tokenization import write_vocab
    from bert_tf.text.vocab_learning import learn_vocab

    corpus, vocab = f"{common}_corpus.txt", f"{common}_vocab.txt"
    log(f"Making the sample data under {os.path.dirname(prefix)} (once) ...")
    if not (os.path.exists(corpus) and os.path.exists(vocab)):  # shared by the data sets
        write_corpus(corpus, 3_000_000)
        write_vocab(learn_vocab(corpus, vocab_size=30522), vocab)
    create_pretraining_data(DataCreationConfig(
        corpus, prefix, vocab, options=InstanceOptions(
            max_seq_length=max_seq_length, max_predictions_per_seq=max_predictions_per_seq,
            dupe_factor=3, dynamic_masking=dynamic_masking, next_sentence=next_sentence),
        num_shards=4, num_workers=min(2, os.cpu_count() or 1),
        overwrite=True, progress=False))
