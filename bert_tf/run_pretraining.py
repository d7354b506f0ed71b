"""CLI: pretrain BERT (masked LM + next sentence) on TFRecord shards.

    python -m bert_tf.run_pretraining --bert_config_file=configs/bert_base.json \
        --input_file='tfrecords/wiki-*' --output_dir=runs/base --train_batch_size=256 \
        --num_train_steps=1000000 --num_warmup_steps=10000 --learning_rate=1e-4

With no flags at all it runs the embedded default: a vocab and TFRecords made once from Python's
own documentation (cached in tfrecords/ of a source checkout, else in ~/.cache/bert_tf), then
bert_tiny trained for a few hundred steps on CPU into runs/bert_tiny_sample under the current
directory. Running the same command again resumes from the latest checkpoint in --output_dir;
SIGTERM saves a checkpoint within --preemption_grace_secs and exits with status 143 (Ctrl-C: 130),
which schedulers retry; a finished run exits 0 (bert_tf.preemption.EXIT_STATUS). The flags are the fields of
`bert_tf.training.pretraining.PretrainingConfig`. --mode=continuous_eval runs the sidecar evaluator
of a run instead (bert_tf/training/continuous_eval.py), as does the evaluator task of a TF_CONFIG.
"""

from bert_tf import cli, preemption
from bert_tf.training.pretraining import PretrainingConfig, for_this_task, run


@cli.reports_errors("run_pretraining", errors=(ValueError, OSError, FloatingPointError))
def main(argv):
    del argv
    config = for_this_task(cli.from_flags(PretrainingConfig))
    if config.mode == "continuous_eval":
        from bert_tf.training.continuous_eval import continuous_eval

        continuous_eval(config)
        return 0
    metrics = run(config)
    if metrics.get("preempted"):  # saved: a status a scheduler retries (SIGTERM) or not
        return preemption.EXIT_STATUS[metrics["signal"]]
    source = "eval_" if "eval_loss" in metrics else ""
    shown = ("masked_lm_accuracy",) + (("next_sentence_accuracy",) if config.next_sentence
                                        else ())
    print(f"\nDone at step {metrics['step']}: " + ", ".join(
        f"{name} {metrics.get(source + name, float('nan')):.4f}" for name in shown)
        + f"{' (eval)' if source else ''}")
    print(f"TensorBoard: tensorboard --logdir {config.output_dir}")


SETTINGS = (PretrainingConfig,)  # the flags

if __name__ == "__main__":
    cli.start(main, SETTINGS)
