"""The data of a pretraining run, opened and checked in one call before any model is built:
the shard lists (training and evaluation), the manifest that bert_tf data carries, and the
masking rules of dynamic data.

    data = open_pretraining_data("tfrecords/wiki-*", None, 128, 20, vocab_size=30522)
    data.files, data.manifest, data.masking, data.eval_files, data.eval_masking

Every error names the flag (--input_file, --eval_input_file) and what was expected.
"""

from typing import NamedTuple

from bert_tf import io
from bert_tf.data import input_pipeline, masking


class PretrainingData(NamedTuple):
    files: list  # training shards
    manifest: dict | None  # bert_tf's NAME.manifest.json; None for google's shards
    masking: object  # masking.MaskingRules of dynamic data, else None (masked when written)
    eval_files: list | None  # None without evaluation
    eval_masking: object


def masking_rules(files, manifest):
    """The masking rules of dynamic data (its manifest's options and vocab), else None."""
    from bert_tf.text.tokenization import load_vocab

    if not masking.is_dynamic(manifest):
        return None
    return masking.rules_from_manifest(manifest, load_vocab(input_pipeline.data_vocab_file(files)))


def open_pretraining_data(input_file, eval_input_file, max_seq_length, max_predictions_per_seq,
                          vocab_size, do_eval=True, bert_config_file="the bert config"):
    """Expands and checks the shards against the settings (sequence length, predictions, the
    model's `vocab_size`); evaluation shards (`eval_input_file`, default the training ones) are
    checked now too, not after the whole training run."""
    files = io.expand_file_patterns(input_file)
    manifest = _checked(files, max_seq_length, max_predictions_per_seq, vocab_size,
                        bert_config_file, "--input_file")
    eval_files = eval_masking = None
    if do_eval:
        eval_files, _, eval_masking = open_eval_data(
            eval_input_file or input_file, max_seq_length, max_predictions_per_seq, vocab_size,
            bert_config_file, manifest)
    return PretrainingData(files, manifest, masking_rules(files, manifest), eval_files,
                           eval_masking)


def open_eval_data(eval_input_file, max_seq_length, max_predictions_per_seq, vocab_size,
                   bert_config_file="the bert config", trained_manifest=None,
                   trained_on="--input_file"):
    """(files, manifest, masking rules) of the evaluation shards, checked as the training ones
    are (errors name --eval_input_file), and made with the vocab of `trained_manifest` (the
    training data's, `trained_on`) when both record one."""
    files = io.expand_file_patterns(eval_input_file, "--eval_input_file")
    manifest = _checked(files, max_seq_length, max_predictions_per_seq, vocab_size,
                        bert_config_file, "--eval_input_file")
    held = (trained_manifest or {}).get("vocab", {}).get("sha256")
    if manifest is not None and held and manifest["vocab"]["sha256"] != held:
        raise ValueError(f"--eval_input_file was made with another vocab than {trained_on} "
                         f"(sha256 {manifest['vocab']['sha256'][:12]}... vs {held[:12]}...): "
                         f"its metrics would mean nothing")
    return files, manifest, masking_rules(files, manifest)


def _checked(files, max_seq_length, max_predictions_per_seq, vocab_size, bert_config_file, flag):
    """check_data, then the data's vocab against the model's `vocab_size`."""
    manifest = input_pipeline.check_data(files, max_seq_length, max_predictions_per_seq, flag)
    if manifest is not None and manifest["vocab"]["size"] > vocab_size:
        raise ValueError(f"{flag}: the data's vocab has {manifest['vocab']['size']} tokens, "
                         f"more than vocab_size={vocab_size} of {bert_config_file}")
    if manifest is None:  # no vocab recorded: look at the ids themselves
        largest = input_pipeline.largest_token_id(files, max_seq_length, max_predictions_per_seq)
        if largest >= vocab_size:
            raise ValueError(f"{flag}: the data holds token id {largest}, outside "
                             f"vocab_size={vocab_size} of {bert_config_file}")
    return manifest
