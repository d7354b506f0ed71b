"""A screenshot of TensorBoard's HParams tab over a few pretraining runs (docs/images/).

    python tools/hparams_screenshot.py [--output=docs/images/hparams.png] [--chromium=chromium]

Trains the embedded default's model on its sample data briefly at three learning rates, serves
the runs' parent with `tensorboard` and has headless Chromium (Debian's `chromium` package) take
the picture. Runs and logs go to a temporary directory.
"""

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS
flags.DEFINE_string("output", os.path.join(REPO, "docs", "images", "hparams.png"), "The PNG.")
flags.DEFINE_string("chromium", "chromium", "The Chromium binary.")
flags.DEFINE_list("learning_rates", ["2e-4", "2e-3", "1e-2"], "One run per learning rate.")
flags.DEFINE_integer("num_train_steps", 600, "Steps per run.")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv):
    del argv
    runs = tempfile.mkdtemp(prefix="hparams_runs_")
    for rate in FLAGS.learning_rates:
        subprocess.run([sys.executable, "-m", "bert_tf.run_pretraining",
                        f"--output_dir={os.path.join(runs, f'lr_{rate}')}",
                        f"--learning_rate={rate}", f"--num_train_steps={FLAGS.num_train_steps}",
                        "--save_checkpoints_steps=50", "--num_warmup_steps=20"],
                       cwd=REPO, check=True)
    port = free_port()
    tensorboard = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "tensorboard"), f"--logdir={runs}",
         f"--port={port}", "--host=127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(60):  # until it answers
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs", timeout=2)
                break
            except OSError:
                time.sleep(1)
        os.makedirs(os.path.dirname(FLAGS.output), exist_ok=True)
        subprocess.run([FLAGS.chromium, "--headless", "--no-sandbox", "--disable-gpu",
                        "--hide-scrollbars", "--window-size=2300,560",
                        "--virtual-time-budget=20000", f"--screenshot={FLAGS.output}",
                        f"http://127.0.0.1:{port}/?darkMode=false#hparams"], check=True)
    finally:
        tensorboard.terminate()
    print(f"wrote {FLAGS.output} (runs in {runs})")


if __name__ == "__main__":
    app.run(main)
