"""The benchmark's flags (one set for every part) and where the repository is."""

import os

from absl import flags


FLAGS = flags.FLAGS
flags.DEFINE_list("parts", ["train", "input", "data", "serving", "finetune", "tasks", "packing",
                            "time_to_accuracy"],
                  "What to measure.")
flags.DEFINE_list("configs", ["tiny", "mini", "small", "base"], "configs/bert_<name>.json")
flags.DEFINE_list("jit", ["off", "on"], "XLA settings for the train step.")
flags.DEFINE_list("precisions", ["float32", "mixed_bfloat16"],
                  "train: Keras dtype policies; every implementation is timed in each, "
                  "interleaved, and the bfloat16/float32 step ratios are reported.")
flags.DEFINE_list("peers", ["model_garden", "keras_hub"], "Peers to time when installed.")
flags.DEFINE_integer("seq_length", 128, "Sequence length.")
flags.DEFINE_integer("batch_size", 32, "Batch size (train step).")
flags.DEFINE_integer("base_batch_size", 8, "Batch size for bert_base and larger.")
flags.DEFINE_integer("predictions", 20, "Masked-LM predictions per sequence.")
flags.DEFINE_float("seconds", 4.0, "Target seconds per timed call (sets the steps per call).")
flags.DEFINE_integer("repeats", 3, "Timed calls per figure; the median is reported.")
flags.DEFINE_integer("matmul_size", 2048, "train: N of the N x N matmul whose speed is the "
                     "peak MFU is measured against.")
flags.DEFINE_string("output", None, "Write the figures as JSON here.")
flags.DEFINE_float("data_megabytes", 11.0, "Corpus size for the data-creation part.")
flags.DEFINE_list("serving_configs", ["minilm", "base"], "Configs for the serving parts: "
                  "minilm is all-MiniLM-L6-v2's real weights on a real sentence task, the others "
                  "configs/bert_NAME.json with random weights.")
flags.DEFINE_integer("serving_seq_length", 64, "serving: the classifier's max_seq_length.")
flags.DEFINE_string("finetune_config", "mini", "Config for the finetuning part.")
flags.DEFINE_string("remat_config", "base", "remat: configs/bert_<name>.json.")
flags.DEFINE_integer("remat_seq_length", 512, "remat: sequence length.")
flags.DEFINE_integer("remat_batch_size", 8, "remat: batch size.")
flags.DEFINE_integer("remat_steps", 3, "remat: timed training steps per mode.")
flags.DEFINE_string("remat_child", None, "(internal) run one --remat mode in this process.")
flags.DEFINE_float("tta_seconds", 150.0, "time_to_accuracy: training seconds per pipeline.")
flags.DEFINE_integer("tta_eval_every", 50, "time_to_accuracy: evaluate every this many steps.")
flags.DEFINE_integer("tta_eval_batches", 40, "time_to_accuracy: held-out eval batches.")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "tools", "benchmark.py")  # the command line (remat runs it again)
