"""CLI: every GLUE task in GLUE_DIR finetuned from one encoder, one table of dev scores.

    python -m bert_tf.run_glue --data_dir=GLUE_DIR --init_checkpoint=runs/base \
        --output_dir=runs/glue [--learning_rates=paper] [--tasks=cola,mrpc,stsb]

Each task runs as `python -m bert_tf.run_classifier --task_name=...` would (its run directory in
output_dir/<task>/lr_<rate>); the best learning rate per task by dev score is kept; the table
(results.md, results.json) has each task's GLUE metrics and the average, and output_dir/submission
holds the GLUE server's files. The flags are the fields of
`bert_tf.finetuning.glue_suite.GlueSuiteConfig`.
"""

from bert_tf import cli
from bert_tf.finetuning.glue_suite import GlueSuiteConfig, run_suite


@cli.reports_errors("run_glue")
def main(argv):
    del argv
    run_suite(cli.from_flags(GlueSuiteConfig))


SETTINGS = (GlueSuiteConfig,)  # the flags

if __name__ == "__main__":
    cli.start(main, SETTINGS)
