"""The pretraining job: settings -> data checks -> model, optimizer, Trainer -> train, evaluate.

    run(PretrainingConfig(bert_config_file="configs/bert_base.json",
                          input_file="tfrecords/wiki-*", output_dir="runs/base", ...))

(`python -m bert_tf.run_pretraining` is its command line.) Without `input_file` it trains on
the embedded default's sample data. The same settings again resume from the latest checkpoint in
`output_dir`; SIGTERM (or SIGINT) saves a checkpoint and returns.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os

import keras
import tensorflow as tf

from bert_tf import io, locks, preemption, run_dir
from bert_tf.config import BertConfig, configs_dir
from bert_tf.data import input_pipeline, packing
from bert_tf.data.pretraining_data import open_pretraining_data
from bert_tf.data.sample_data import make_sample_data
from bert_tf.modeling import build_pretrainer
from bert_tf.modeling.layers import REMAT_MODES
from bert_tf.settings import flat_dict, setting
from bert_tf.training import budget as budget_lib
from bert_tf.training import optimization
from bert_tf.training import precision as precision_lib
from bert_tf.training import strategy as strategies
from bert_tf.training.evaluation import BestCheckpoint
from bert_tf.training.summaries import format_metrics
from bert_tf.training.trainer import Trainer, TrainOptions


MODES = ("train", "continuous_eval")

EMBEDDED_CONFIG = os.path.join(configs_dir(), "bert_tiny.json")
# The optimizer and schedule a run takes for the flags it leaves unset, by what it is (`recipe`).
# The embedded default (bert_tiny on the sample data) keeps its few-minute demo; a run from
# scratch on the user's data takes Devlin et al.'s recipe (BERT, appendix A.2: batch 256, 1M
# steps, Adam at 1e-4 with 10,000 warmup steps, then linear decay); a run that starts from
# --init_checkpoint (further pretraining) takes google-research/bert run_pretraining.py's own
# defaults. Checkpoints every 1,000 steps, as google's script. A run that gives
# --num_train_steps but not --num_warmup_steps warms up for the recipe's share of its steps
# (`warmup_share`; the demo's 60 steps at most), and checkpoints at least at its end.
# --optimizer=lamb has no default learning rate: LAMB's depends on the batch size.
RECIPES = {
    "embedded default": {
        "flags": dict(learning_rate=2e-3, num_warmup_steps=60, num_train_steps=600,
                      save_checkpoints_steps=200, train_batch_size=16),
        "warmup_share": None},
    "BERT paper (from scratch)": {
        "flags": dict(learning_rate=1e-4, num_warmup_steps=10_000, num_train_steps=1_000_000,
                      save_checkpoints_steps=1_000, train_batch_size=256),
        "warmup_share": 0.01},
    "google-research/bert (from --init_checkpoint)": {
        "flags": dict(learning_rate=5e-5, num_warmup_steps=10_000, num_train_steps=100_000,
                      save_checkpoints_steps=1_000, train_batch_size=32),
        "warmup_share": 0.1},
}
# --lr_schedule: (a final decay over --decay_fraction only, its shape)
LR_SCHEDULES = {"linear": (False, "linear"), "trapezoidal": (True, "linear"),
                "trapezoidal_sqrt": (True, "sqrt")}
_UNSET = "; unset: from the run's recipe (docs/pretraining.md#hyper-parameters)"
BEST_METRICS = ("masked_lm_accuracy", "next_sentence_accuracy", "loss", "masked_lm_loss",
                "next_sentence_loss", "none")


@dataclasses.dataclass(frozen=True)
class PretrainingConfig(TrainOptions, strategies.DeviceSettings):
    """The settings of a pretraining run (the command line's flags): the training loop's, with
    the defaults of the embedded default, and the data's, the model's and the optimizer's."""
    # the loop (TrainOptions), with the embedded default's values
    output_dir: str = setting(os.path.join("runs", "bert_tiny_sample"),
                              "Checkpoints, TensorBoard logs and the resolved config go here.")
    num_train_steps: int | None = setting(None, "Optimizer steps" + _UNSET, minimum=1)
    save_checkpoints_steps: int | None = setting(None, "Checkpoint every this many steps"
                                                 + _UNSET, minimum=1)
    log_steps: int = setting(50, "Log and write summaries every this many steps.", minimum=1)
    # data and model
    bert_config_file: str = setting(EMBEDDED_CONFIG, "google-format bert_config.json.")
    input_file: str | None = setting(None, "Comma list of globs of training shards; empty: the "
                                           "embedded sample data (made on first use).")
    eval_input_file: str | None = setting(None, "Shards for --do_eval (default: input_file).")
    init_checkpoint: str | None = setting(None, "Start from these weights (fresh optimizer).")
    max_seq_length: int = setting(128, "Must match the data.", minimum=1)
    max_predictions_per_seq: int = setting(20, "Must match the data.", minimum=1)
    next_sentence: bool = setting(True, "Train BERT's next-sentence head with the masked LM; "
                                        "false: masked LM only (RoBERTa, Cramming, ModernBERT): "
                                        "no next-sentence head or loss; needed for data made "
                                        "with create_pretraining_data --next_sentence=false.")
    masked_lm_prob: float | None = setting(None, "Data masked as read (--dynamic_masking): "
                                                 "the fraction of tokens chosen for prediction "
                                                 "instead of the data's own (e.g. 0.3); unset: "
                                                 "the data's.", above=0, below=1)
    # packing (bert_tf/data/packing.py)
    pack_sequences: bool = setting(False, "Pack several sequences into each training row "
                                          "(attention kept within each); batches are of rows.")
    max_sequences_per_row: int = setting(4, "With --pack_sequences: sequences per row at most.",
                                         minimum=1)
    max_predictions_per_row: int = setting(0, "With --pack_sequences: masked positions per row; "
                                              "0: --max_predictions_per_seq.", minimum=0)
    # batches
    train_batch_size: int | None = setting(None, "Global batch size (of rows, when packing)"
                                                 + _UNSET, minimum=1)
    eval_batch_size: int = setting(32, "Global eval batch size.", minimum=1)
    # how long, and the schedule over it
    train_budget: str = setting("", "Train for this long: training time (4h, 90m, 1h30m, 45s: "
                                    "the training steps' wall time, not start-up, saves or "
                                    "evaluations, kept in the checkpoints so that a resumed "
                                    "run keeps its place) or "
                                    "steps (20000steps); the schedule is laid out over it "
                                    "(--warmup_fraction, --decay_fraction). Empty: "
                                    "--num_train_steps.")
    warmup_fraction: float | None = setting(None, "Warmup as a share of the run (its budget, "
                                                  "or --num_train_steps) instead of "
                                                  "--num_warmup_steps; unset with a budget: "
                                                  "the recipe's share.", minimum=0, maximum=1)
    lr_schedule: str = setting("linear", "linear: warmup, then linear decay to "
                                         "--end_learning_rate at the end (BERT); trapezoidal: "
                                         "warmup, constant, then linear decay over the last "
                                         "--decay_fraction of the run (warmup-stable-decay); "
                                         "trapezoidal_sqrt: the same with a 1 - sqrt decay "
                                         "(ModernBERT's).", choices=tuple(LR_SCHEDULES))
    decay_fraction: float = setting(0.1, "--lr_schedule=trapezoidal(_sqrt): the share of the "
                                         "run the final decay takes.", above=0, maximum=1)
    # optimizer
    num_warmup_steps: int | None = setting(None, "Linear warmup steps" + _UNSET)
    learning_rate: float | None = setting(None, "Peak learning rate" + _UNSET, above=0)
    end_learning_rate: float = setting(0.0, "Learning rate at num_train_steps.", minimum=0)
    optimizer: str = setting("adamw", "Optimizer.", choices=("adamw", "lamb"))
    weight_decay_rate: float = setting(0.01, "Decoupled weight decay (not on LayerNorm weights "
                                             "and biases).", minimum=0)
    # execution (and DeviceSettings': --distribution_strategy, --tpu, --mixed_precision, ...)
    remat: str = setting("none", "Rematerialization (gradient checkpointing): layers: keep "
                                 "only each block's input for the backward pass and recompute "
                                 "the rest there; full: also recompute its attention and "
                                 "feed-forward parts one at a time. Less memory (longer "
                                 "sequences, bigger batches), more compute.",
                         choices=REMAT_MODES)
    tf_data_service: str = setting("", "grpc://HOST:PORT of a tf.data service dispatcher: its "
                                       "workers read, mask and pack the training batches "
                                       "(distributed_epoch mode), for hosts whose input "
                                       "pipeline cannot keep up; empty: this host does.")
    random_seed: int = setting(12345, "Seed for weights and data order.")
    # evaluation
    mode: str = setting("train", "train: train (evaluating each checkpoint with --do_eval); "
                                 "continuous_eval: a sidecar that evaluates each checkpoint of "
                                 "the run in --output_dir as it appears, writes eval/ summaries "
                                 "and best/ there, and exits once the run's last step is "
                                 "evaluated.", choices=MODES)
    do_eval: bool = setting(True, "Evaluate each checkpoint saved on schedule (the last one "
                                  "too) on --max_eval_steps batches of --eval_input_file.")
    max_eval_steps: int = setting(20, "Eval batches.", minimum=1)
    best_checkpoint_metric: str = setting("masked_lm_accuracy", "Keep the model of the best "
                                                                "evaluated checkpoint by this "
                                                                "metric in OUTPUT_DIR/best/ "
                                                                "(losses: lowest; accuracies: "
                                                                "highest); none: keep none.",
                                          choices=BEST_METRICS)
    eval_timeout_secs: int = setting(3600, "--mode=continuous_eval: give up after waiting this "
                                           "long for a new checkpoint.", minimum=1)

    def __post_init__(self):
        budget = budget_lib.parse_budget(self.train_budget)  # (a bad one is named here)
        problems = []
        if budget and budget.steps and self.num_train_steps not in (None, budget.steps):
            problems.append(f"--train_budget={self.train_budget} and --num_train_steps="
                            f"{self.num_train_steps} disagree: give one")
        if budget and budget.seconds:  # (the values it sets below pass: dataclasses.replace)
            problems += [f"--{name}={getattr(self, name)} counts steps; --train_budget="
                         f"{self.train_budget} is a time: leave it unset"
                         + ("; --warmup_fraction sets the warmup" if name == "num_warmup_steps"
                            else "") for name, own in (("num_train_steps", budget_lib.NO_STEP_LIMIT),
                                                       ("num_warmup_steps", 0))
                         if getattr(self, name) not in (None, own)]
        steps = budget.steps if budget and budget.steps else self.num_train_steps
        if (self.warmup_fraction is not None and self.num_warmup_steps is not None
                and not (budget and budget.seconds) and steps is not None
                and self.num_warmup_steps != round(self.warmup_fraction * steps)):
            problems.append("--warmup_fraction and --num_warmup_steps both set: give one")
        if problems:
            raise ValueError("; ".join(problems))
        if budget and budget.steps:
            object.__setattr__(self, "num_train_steps", budget.steps)
        if budget and budget.seconds:  # bounded by time; no warmup steps (it is in seconds)
            object.__setattr__(self, "num_train_steps", budget_lib.NO_STEP_LIMIT)
            object.__setattr__(self, "num_warmup_steps", 0)
        elif self.warmup_fraction is not None and self.num_train_steps is not None:
            object.__setattr__(self, "num_warmup_steps",
                               round(self.warmup_fraction * self.num_train_steps))
        # the flags left unset take the recipe's values before the settings are checked
        recipe = dict(RECIPES[self.recipe]["flags"])
        share = RECIPES[self.recipe]["warmup_share"]
        if self.num_train_steps is not None:  # given: warmup and checkpoints that fit it
            recipe["num_warmup_steps"] = (min(recipe["num_warmup_steps"], self.num_train_steps)
                                          if share is None
                                          else round(share * self.num_train_steps))
            recipe["save_checkpoints_steps"] = min(recipe["save_checkpoints_steps"],
                                                   self.num_train_steps)
        filled = tuple(name for name in recipe if getattr(self, name) is None
                       and not (name == "learning_rate" and self.optimizer == "lamb"))
        for name in filled:
            object.__setattr__(self, name, recipe[name])
        object.__setattr__(self, "filled", filled)
        super().__post_init__()

    @property
    def budget(self):
        """The run's budget_lib.Budget, or None (--num_train_steps)."""
        return budget_lib.parse_budget(self.train_budget)

    def schedule(self, clock=None) -> dict:
        """create_optimizer's schedule arguments: over steps, or over the seconds of `clock`'s
        budget."""
        if clock is not None:
            total = clock.budget_seconds
            warmup = total * (self.warmup_fraction if self.warmup_fraction is not None
                              else RECIPES[self.recipe]["warmup_share"] or 0.1)
        else:
            total, warmup = self.num_train_steps, self.num_warmup_steps
        trapezoidal, shape = LR_SCHEDULES[self.lr_schedule]
        decay = self.decay_fraction * total if trapezoidal else None
        return dict(num_train_steps=total, num_warmup_steps=warmup, num_decay_steps=decay,
                    clock=clock, decay_shape=shape)

    @property
    def recipe(self) -> str:
        """Which of RECIPES gives the flags this run leaves unset."""
        if (not self.input_file and not self.init_checkpoint
                and os.path.realpath(self.bert_config_file) == os.path.realpath(EMBEDDED_CONFIG)):
            return "embedded default"
        return ("google-research/bert (from --init_checkpoint)" if self.init_checkpoint
                else "BERT paper (from scratch)")

    def recipe_record(self) -> dict:
        """run_config.json's "recipe": its name and the flags that took its values."""
        return {"name": self.recipe, "filled": {name: getattr(self, name)
                                                for name in self.filled}}

    def check(self):
        problems = super().check()
        if self.learning_rate is None:
            problems.append("--learning_rate is needed with --optimizer=lamb (LAMB's depends on "
                            "the batch size; You et al. and NVIDIA's BERT recipes scale it with "
                            "the batch): set it")
        if (self.pack_sequences and self.max_predictions_per_row
                and self.max_predictions_per_row < self.max_predictions_per_seq):
            problems.append(f"--max_predictions_per_row={self.max_predictions_per_row} is "
                            f"smaller than --max_predictions_per_seq="
                            f"{self.max_predictions_per_seq}: a packed row must hold the "
                            f"masked positions of at least one sequence")
        if not self.next_sentence and self.best_checkpoint_metric.startswith("next_sentence"):
            problems.append(f"--best_checkpoint_metric={self.best_checkpoint_metric} needs the "
                            f"next-sentence head, which --next_sentence=false leaves out")
        if self.tf_data_service and not strategies.grpc_address(self.tf_data_service):
            problems.append(f"--tf_data_service={self.tf_data_service}: expected "
                            f"grpc://HOST:PORT, the address of a tf.data service dispatcher")
        if (self.num_warmup_steps is not None and self.num_train_steps is not None
                and not 0 <= self.num_warmup_steps <= self.num_train_steps):
            problems.append(f"--num_warmup_steps={self.num_warmup_steps} must be in "
                            f"[0, --num_train_steps={self.num_train_steps}]")
        return problems

    def validate(self, num_replicas=1):
        """Raises a ValueError naming every setting that does not fit `num_replicas`."""
        problems = []
        parts = num_replicas * self.gradient_accumulation_steps
        if self.train_batch_size % parts:
            problems.append(f"--train_batch_size={self.train_batch_size} does not divide into "
                            f"{num_replicas} replica(s) x --gradient_accumulation_steps="
                            f"{self.gradient_accumulation_steps}")
        if self.eval_batch_size % num_replicas:
            problems.append(f"--eval_batch_size={self.eval_batch_size} does not divide into "
                            f"{num_replicas} replica(s)")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def packing(self):
        """(max_sequences_per_row, max_predictions_per_row) when packing, else None."""
        if not self.pack_sequences:
            return None
        return (self.max_sequences_per_row, self.max_predictions_per_row
                or packing.default_predictions_per_row(self.max_predictions_per_seq,
                                                       self.max_sequences_per_row))


def for_this_task(config: PretrainingConfig, log=print) -> PretrainingConfig:
    """The settings this process runs with: the `evaluator` task of a launcher's TF_CONFIG
    (Kubeflow's TFJob, Vertex AI's worker pool 3) trains nothing; it is the sidecar evaluator
    (--mode=continuous_eval) on one device of its own, whatever strategy the job names."""
    if strategies.task_type() != "evaluator" or config.mode != "train":
        return config
    log("TF_CONFIG: this process is the evaluator task: it evaluates the run's checkpoints as "
        "they appear (--mode=continuous_eval) and exits after the last step's")
    return dataclasses.replace(config, mode="continuous_eval",
                               distribution_strategy="one_device")


def run(config: PretrainingConfig, log=print):
    """The whole job; returns the final metrics (with "step"; "preempted" and "signal" after
    SIGTERM or SIGINT, which save a checkpoint and stop)."""
    if config.mode != "train":
        raise ValueError(f"--mode={config.mode} is not training: call "
                         f"bert_tf.training.continuous_eval.continuous_eval")
    # The strategy first: MultiWorkerMirroredStrategy must exist before any other TF op.
    strategy, chosen = strategies.start(config.distribution_strategy, config.tpu,
                                        config.worker_wait_secs, log)
    config.validate(strategy.num_replicas_in_sync)
    if config.tf_data_service:  # before the run directory: the service's client would wait
        problem = strategies.unanswered(*strategies.grpc_address(config.tf_data_service))
        if problem:
            raise ValueError(f"--tf_data_service={config.tf_data_service}: {problem}. Start "
                             f"the dispatcher first (bert_tf.data.service), or drop the flag "
                             f"to read the data here")
    recipe = config.recipe_record()
    if recipe["filled"]:
        log(f"hyper-parameters not given, from the {recipe['name']} recipe: "
            + " ".join(f"--{name}={value}" for name, value in recipe["filled"].items()))
    # One writer per run directory: the chief holds its lock (the workers write elsewhere).
    with (locks.run_lock(config.output_dir) if strategies.is_chief(strategy)
          else contextlib.nullcontext()):
        try:
            return _run(strategy, config, log, {"strategy": chosen, "recipe": recipe})
        except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                tf.errors.AbortedError, tf.errors.CancelledError) as e:
            if strategies.workers(strategy) < 2:
                raise
            tf_config = strategies.read_tf_config()
            raise preemption.LostPeer(
                f"multi_worker_mirrored: lost contact with "
                f"{strategies.lost_worker(tf_config, e.message)} ({type(e).__name__}); this "
                f"worker stops. The last checkpoint is "
                f"{tf.train.latest_checkpoint(config.output_dir)}: start every worker again "
                f"to resume from it") from None


def _run(strategy, config: PretrainingConfig, log, record):
    if not config.input_file:  # the embedded default: its sample data, masked as read, packed
        config = dataclasses.replace(config, pack_sequences=True, input_file=make_sample_data(
            config.max_seq_length, config.max_predictions_per_seq, log, dynamic_masking=True,
            next_sentence=config.next_sentence))
    bert_config = BertConfig.from_json_file(config.bert_config_file)
    data = open_pretraining_data(config.input_file, config.eval_input_file,
                                 config.max_seq_length, config.max_predictions_per_seq,
                                 bert_config.vocab_size, config.do_eval, config.bert_config_file)
    data = with_objective(data, config)
    if data.masking:
        rules = data.masking
        log(f"dynamic masking: masked_lm_prob={rules.masked_lm_prob}, whole words: "
            f"{rules.do_whole_word_mask}, [MASK]/random/kept {rules.mask_replace_prob:g}/"
            f"{rules.random_replace_prob:g}/"
            f"{1 - rules.mask_replace_prob - rules.random_replace_prob:g}, new masks every time "
            f"an example is read")
        expected = rules.masked_lm_prob * (config.max_seq_length - 2)
        if rules.max_predictions_per_seq < expected:
            log(f"warning: --max_predictions_per_seq={rules.max_predictions_per_seq} is below "
                f"masked_lm_prob x sequence tokens = {expected:.1f}: long sequences get fewer "
                f"than {100 * rules.masked_lm_prob:.0f}% of their tokens masked")
    bert_config.check_sequence_length(config.max_seq_length)
    single = (data.manifest or {}).get("options", {}).get("next_sentence") is False
    if bert_config.type_vocab_size == 1 and not single:
        raise ValueError(f"--bert_config_file {config.bert_config_file}: type_vocab_size=1, "
                         f"but --input_file pairs two segments (segment ids 0 and 1): it must "
                         f"be at least 2, or 0 (no segment table)")
    output_dir = config.output_dir
    check_resume(output_dir, bert_config, config, data.manifest)
    precision = precision_lib.resolve(config.mixed_precision, strategy)
    log(f"precision: {precision.policy} ({precision.reason})")

    keras.utils.set_random_seed(config.random_seed)
    keras.mixed_precision.set_global_policy(precision.policy)
    with strategy.scope():
        pretrainer = build_pretrainer(bert_config, packed=config.pack_sequences,
                                      next_sentence=config.next_sentence)
        pretrainer.encoder.set_remat(config.remat)
        budget = config.budget
        clock = budget_lib.Clock(budget.seconds) if budget and budget.seconds else None
        optimizer = optimization.create_optimizer(
            config.optimizer, learning_rate=config.learning_rate, **config.schedule(clock),
            end_learning_rate=config.end_learning_rate,
            weight_decay_rate=config.weight_decay_rate,
            clip_norm=0.0,  # the Trainer clips (--clip_norm), after the all-reduce
            mixed_precision=precision.policy)
    trainer = Trainer(strategy, pretrainer, optimizer, config, clock=clock)
    try:
        log(trainer.restore(config.init_checkpoint))
    except tf.errors.InvalidArgumentError as e:
        raise ValueError(f"--output_dir {output_dir}: its checkpoint does not fit the model of "
                         f"--bert_config_file {config.bert_config_file}: "
                         f"{io.one_line(e.message)}") from None
    best = best_checkpoint(config, pretrainer, strategy) if config.do_eval else None
    # The run directory's files only now, when every check of this (re)start has passed: a
    # refused resume leaves the run as it was.
    try:
        if strategies.is_chief(strategy):
            write_run_files(output_dir, bert_config, config, data.files, data.manifest,
                            precision, **record)
        else:
            tf.io.gfile.makedirs(output_dir)
    except (OSError, tf.errors.OpError) as e:
        raise OSError(f"--output_dir {output_dir} is not writable: {e}") from None

    def distributed_dataset(input_files, batch_size, training=True):
        return make_distributed_dataset(strategy, config, data, input_files, batch_size,
                                        trainer.step if training else None, log)

    evaluation = None
    if config.do_eval:
        evaluation = (distributed_dataset(data.eval_files, config.eval_batch_size,
                                          training=False), config.max_eval_steps)
    try:
        metrics = trainer.train(distributed_dataset(data.files, config.train_batch_size),
                                summary_dir=output_dir, log=log,
                                hyperparameters=flat_dict(config), evaluation=evaluation,
                                best=best)
    except tf.errors.DataLossError as e:
        bad = input_pipeline.find_corrupt_shard(data.files)
        raise input_pipeline.DataMismatchError(
            f"--input_file: corrupt shard {bad or '(not found by re-reading)'}: {e.message}"
        ) from None
    if trainer.preempted:
        return {"preempted": True, "signal": trainer.signal, "step": trainer.step, **metrics}
    if clock is not None and strategies.is_chief(strategy):  # where a budget of time ended
        run_dir.record_last_step(output_dir, trainer.step)
    if config.do_eval:
        if trainer.last_evaluation is None or trainer.last_evaluation[0] != trainer.step:
            trainer.evaluate(*evaluation, summary_dir=output_dir, best=best)  # a finished run
        eval_metrics = trainer.last_evaluation[1]
        log("eval: " + format_metrics(eval_metrics))
        metrics = {**metrics, **{f"eval_{k}": v for k, v in eval_metrics.items()}}
    return {"step": trainer.step, **metrics}


def with_objective(data, config: PretrainingConfig):
    """`data` checked against the objective: single-segment data (made with --next_sentence=
    false) cannot train a next-sentence head; --masked_lm_prob replaces dynamic data's rate
    (training and evaluation alike, so that eval accuracy measures the same task)."""
    options = (data.manifest or {}).get("options", {})
    if config.next_sentence and options.get("next_sentence") is False:
        raise ValueError("--input_file holds single segments (made with create_pretraining_data "
                         "--next_sentence=false): it has no next-sentence labels to learn; pass "
                         "--next_sentence=false to train the masked LM only")
    if config.masked_lm_prob is None:
        return data
    if data.masking is None:
        raise ValueError(f"--masked_lm_prob={config.masked_lm_prob}: --input_file was masked "
                         f"when it was made (masked_lm_prob="
                         f"{options.get('masked_lm_prob', 0.15)}); a new rate needs data made "
                         f"with create_pretraining_data --dynamic_masking (or new data with "
                         f"--masked_lm_prob)")
    masking = data.masking._replace(masked_lm_prob=config.masked_lm_prob)
    eval_masking = (data.eval_masking._replace(masked_lm_prob=config.masked_lm_prob)
                    if data.eval_masking is not None else None)
    return data._replace(masking=masking, eval_masking=eval_masking)


def make_distributed_dataset(strategy, config: PretrainingConfig, data, input_files, batch_size,
                             trained_steps=None, log=print):
    """The run's batches of `input_files` for `strategy`: training batches (`trained_steps`:
    the steps done, whose batches a resumed stream skips), or, with `trained_steps` None, eval
    batches (unpacked, eval masks), the same ones every time."""
    training = trained_steps is not None

    def fn(context):
        # Each step takes one batch per replica from its worker's stream: a resumed run
        # skips the batches of the steps done and goes on exactly where it would have.
        consumed = (trained_steps * strategy.num_replicas_in_sync
                    // context.num_input_pipelines) if training else 0
        service = config.tf_data_service if training else None
        if service:
            log(f"input: training batches from the tf.data service at {service} "
                f"(distributed_epoch)" + ("; its order is not reproducible: a resumed run "
                                          "does not skip the batches of the steps done"
                                          if consumed else ""))
            consumed = 0
        if consumed:
            log(f"input: the data stream resumes after its first {consumed:,} batches "
                f"(those of steps 1-{trained_steps})")
        options = input_pipeline.PipelineOptions(
            seed=config.random_seed, packing=config.packing if training else None,
            masking_rules=data.masking if training else data.eval_masking,
            skip_batches=consumed, reshuffle=training, data_service=service,
            job_name=f"bert_tf_train_{os.path.basename(config.output_dir.rstrip('/'))}")
        dataset = input_pipeline.make_dataset(
            input_files, context.get_per_replica_batch_size(batch_size),
            config.max_seq_length, config.max_predictions_per_seq, options, context)
        if config.pack_sequences and not training:  # evaluated as it comes, one per row
            dataset = dataset.map(packing.as_one_sequence_rows)
        return dataset
    return strategy.distribute_datasets_from_function(fn)


def best_checkpoint(config: PretrainingConfig, model, strategy):
    """The run's BestCheckpoint by --best_checkpoint_metric, or None for none."""
    if config.best_checkpoint_metric == "none":
        return None
    chief = strategies.is_chief(strategy)
    scratch = None if chief else strategies.worker_dir(config.output_dir, strategy, "best_tmp")
    return BestCheckpoint(config.output_dir, config.best_checkpoint_metric, model, chief, scratch)


# Settings a run cannot change once it has a checkpoint: the data stream and the model's inputs
# depend on them (the model's shape is checked against bert_config.json).
# (next_sentence: the model's heads.)
FIXED_ON_RESUME = ("max_seq_length", "max_predictions_per_seq", "pack_sequences",
                   "next_sentence")


def check_resume(output_dir, bert_config, config: PretrainingConfig, manifest):
    """Refuses to resume a run (`output_dir` has a checkpoint) with another model, another vocab
    or settings that would change its data stream, naming the flag and both values. Nothing is
    written before this check."""
    if not tf.train.latest_checkpoint(output_dir):
        return
    problems = []
    config_file = run_dir.RunDir(output_dir).config
    if tf.io.gfile.exists(config_file):
        held = dataclasses.asdict(BertConfig.from_json_file(config_file))
        changed = [f"{key} {held[key]} -> {value}" for key, value in
                   dataclasses.asdict(bert_config).items() if held[key] != value]
        if changed:
            problems.append(f"--bert_config_file {config.bert_config_file} differs from the "
                            f"run's {config_file}: {', '.join(changed)}")
    record = run_dir.read_record(output_dir)
    flags = record.get("flags", {})
    for name in FIXED_ON_RESUME + (("max_sequences_per_row",) if config.pack_sequences else ()):
        if name in flags and flags[name] != getattr(config, name):
            problems.append(f"--{name}={getattr(config, name)}, but the run was trained with "
                            f"--{name}={flags[name]}")
    if "flags" in record:
        held_budget = budget_lib.parse_budget(flags.get("train_budget", ""))
        timed = [bool(b and b.seconds) for b in (held_budget, config.budget)]
        if timed[0] != timed[1]:  # the checkpoints hold a clock, or not
            problems.append(f"--train_budget={config.train_budget or '(none)'}, but the run "
                            f"was trained with --train_budget="
                            f"{flags.get('train_budget') or '(none)'}: a run keeps a budget of "
                            f"time, or of steps, from start to end")
        held_vocab = (record.get("data_manifest") or {}).get("vocab", {}).get("sha256")
        vocab = (manifest or {}).get("vocab", {}).get("sha256")
        if held_vocab != vocab:
            problems.append(
                "--input_file: the data's vocab is not the one the run was trained on (" + (
                    f"sha256 {held_vocab[:12]}... recorded in "
                    f"{run_dir.RunDir(output_dir).record}" if held_vocab else
                    "the run's data recorded no vocab") + ", the data's " + (
                    f"{vocab[:12]}..." if vocab else "none (no manifest)") + ")")
    if problems:
        raise ValueError(f"--output_dir {output_dir} holds a run that cannot resume with these "
                         f"settings: {'; '.join(problems)}. Nothing was changed; to go on with "
                         f"new settings, start another --output_dir with --init_checkpoint="
                         f"{output_dir}")


def write_run_files(output_dir, bert_config, config: PretrainingConfig, files, manifest,
                    precision=None, **more):
    """The run directory's files: the config, the settings (and the precision they resolved
    to, and `more`: the strategy, the recipe), and the data's vocab and lower-casing (bert_tf
    data; google's shards carry neither)."""
    record = {"flags": flat_dict(config), **more}
    if precision is not None:
        record["precision"] = precision.as_record()
    vocab_file = None
    if manifest is not None:
        record.update(do_lower_case=manifest["vocab"]["do_lower_case"], data_manifest=manifest)
        vocab_file = input_pipeline.data_vocab_file(files)
    run_dir.write(output_dir, bert_config, vocab_file, **record)
