"""The package's environment default: oneDNN on for x86 CPUs unless the user says otherwise."""

import os
import platform
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

PROBE = ("import os, bert_tf, tensorflow as tf; "
         "from tensorflow.python.util import _pywrap_util_port as p; "
         "print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'), p.IsMklEnabled())")


def probe(**env):
    environment = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    environment.update(env, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            env=environment, check=True)
    return result.stdout.split()


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="the default applies to x86 CPUs only")
def test_onednn_is_on_by_default_and_the_user_can_turn_it_off():
    assert probe() == ["1", "True"]
    assert probe(TF_ENABLE_ONEDNN_OPTS="0") == ["0", "False"]
