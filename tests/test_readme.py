"""The README's Python example runs as written."""

import os
import re

from conftest import REPO_ROOT


def test_readme_python_example_runs(monkeypatch):
    with open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8") as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)
    assert blocks, "README has no python example"
    monkeypatch.chdir(REPO_ROOT)
    for block in blocks:
        namespace = {}
        exec(compile(block, "README.md", "exec"), namespace)
    outputs = namespace["outputs"]
    assert tuple(outputs["sequence_output"].shape) == (1, 6, 128)
    assert tuple(namespace["logits"]["masked_lm_logits"].shape) == (1, 2, 30522)
