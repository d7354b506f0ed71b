"""CLI: finetune BERT for token classification (NER, chunking) with Keras fit().

    python -m bert_tf.run_tagging --train_file=train.txt --eval_file=dev.txt \
        --input_format=conll --init_checkpoint=runs/base/ckpt-1000000 --output_dir=runs/ner

Reads CoNLL-style or JSONL files (BIO or IOBES tags); writes labels.json, eval_results.json
(entity-level precision, recall and F1 with conlleval's rules, overall and per type),
predictions.txt (with --predict_file), the model as a run directory and a text-in SavedModel
under output_dir/export/<model_name>/<version>. The flags are the fields of
`bert_tf.finetuning.tagging.TaggingConfig`.
"""

from bert_tf import cli
from bert_tf.finetuning.tagging import TaggingConfig, run


@cli.reports_errors("run_tagging")
def main(argv):
    del argv
    run(cli.from_flags(TaggingConfig))


SETTINGS = (TaggingConfig,)  # the flags

if __name__ == "__main__":
    cli.start(main, SETTINGS)
