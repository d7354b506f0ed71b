"""Pretraining: the optimizer, strategies, the training loop and the pretraining job.

  optimization.py   AdamW / LAMB, warmup + linear decay, weight-decay exclusions
  strategy.py       tf.distribute strategies by name, the chief
  trainer.py        the loop: compiled steps, host calls, checkpoints, preemption
  summaries.py      console lines and TensorBoard scalars
  pretraining.py    PretrainingConfig and run(): the job behind run_pretraining
  model_summary.py  parameter counts and a first step of a config's model
"""
