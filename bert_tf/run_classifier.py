"""CLI: finetune BERT for sentence or sentence-pair classification with Keras fit().

    python -m bert_tf.run_classifier --train_file=train.tsv --eval_file=dev.tsv \
        --text_a_column=sentence --label_column=label --init_checkpoint=runs/base/ckpt-1000 \
        --output_dir=runs/sst2

The encoder comes from exactly one of --init_checkpoint (a bert_tf checkpoint; its run directory
supplies bert_config.json, vocab.txt and lower-casing unless given) or --encoder_saved_model (an
export; it carries its vocab and lower-casing). Writes labels.json, the best weights by eval
accuracy, TensorBoard logs, eval_results.json, predictions.tsv (with --predict_file) and a
text-in SavedModel under output_dir/export/<model_name>/<version>. The flags are the fields of
`bert_tf.finetuning.classification.ClassificationConfig`.
"""

from bert_tf import cli
from bert_tf.finetuning.classification import ClassificationConfig, run


@cli.reports_errors("run_classifier")
def main(argv):
    del argv
    run(cli.from_flags(ClassificationConfig))


SETTINGS = (ClassificationConfig,)  # the flags

if __name__ == "__main__":
    cli.start(main, SETTINGS)
