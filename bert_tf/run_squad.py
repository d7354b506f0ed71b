"""CLI: finetune BERT for extractive question answering on SQuAD v1.1 / v2.0 with Keras fit().

    python -m bert_tf.run_squad --do_train --do_predict --train_file=train-v1.1.json \
        --predict_file=dev-v1.1.json --init_checkpoint=runs/base/ckpt-1000000 \
        --max_seq_length=384 --doc_stride=128 --output_dir=runs/squad

google-research/bert's run_squad flags and outputs: predictions.json, nbest_predictions.json,
null_odds.json (--version_2_with_negative) and eval_results.json (exact_match, f1) when
--predict_file has answers; the model as a run directory (--init_checkpoint of a later
--do_predict) and a text-in SavedModel under output_dir/export/<model_name>/<version>. The flags
are the fields of `bert_tf.finetuning.question_answering.QuestionAnsweringConfig`.
"""

from bert_tf import cli
from bert_tf.finetuning.question_answering import QuestionAnsweringConfig, run


@cli.reports_errors("run_squad")
def main(argv):
    del argv
    run(cli.from_flags(QuestionAnsweringConfig))


SETTINGS = (QuestionAnsweringConfig,)  # the flags

if __name__ == "__main__":
    cli.start(main, SETTINGS)
