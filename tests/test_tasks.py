"""The table of model kinds (bert_tf.tasks): every layer reads it, none compares kind names."""

import ast
import pathlib

import pytest

from bert_tf import tasks
from bert_tf.export.tasks import TEXT_IN
from bert_tf.modeling.heads import HEADS, build_task_model
from conftest import REPO_ROOT

PACKAGE = pathlib.Path(REPO_ROOT) / "bert_tf"
KIND_NAMES = set(tasks.SPECS)
HEAD_NAMES = {spec.head for spec in tasks.SPECS.values()}


def _string_constants(node):
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant)
            and isinstance(n.value, str)}


def _uses(names):
    """{file: lines} where a comparison or a dict key holds one of `names` as a literal."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            literals = set()
            if isinstance(node, ast.Compare):
                literals = _string_constants(node)
            elif isinstance(node, ast.Dict):
                literals = {k.value for k in node.keys if isinstance(k, ast.Constant)}
            if literals & names:
                found.setdefault(str(path.relative_to(PACKAGE)), []).append(node.lineno)
    return found


def test_no_module_but_the_table_compares_or_keys_a_kind_name():
    assert _uses(KIND_NAMES) == {}


def test_a_new_kind_needs_its_spec_its_head_and_its_text_in_export():
    # the only tables keyed by a spec's head: the head builders and the text-in exports
    assert set(_uses(HEAD_NAMES)) == {"modeling/heads.py", "export/tasks.py"}
    assert set(HEADS) == set(TEXT_IN) == HEAD_NAMES


def test_unknown_kind_is_one_clear_error():
    with pytest.raises(ValueError, match=r"unknown task 'multiple_choice'.*classification"):
        tasks.spec_for("multiple_choice")
    assert tasks.spec_for(None) is tasks.PRETRAINED
    with pytest.raises(ValueError, match="no task model for None"):
        build_task_model(None, encoder=None)


def test_specs_agree_with_themselves():
    for name, spec in tasks.SPECS.items():
        assert spec.name == name and spec.head in HEADS
        # a head google's checkpoints name has a part name for reports, and the reverse
        assert (spec.google_head is None) == (spec.google_part is None)
        assert tasks.with_google_head({spec.google_head + "weights"} if spec.google_head
                                      else set()) in (spec, None)
        if spec.huggingface:
            assert tasks.from_huggingface([spec.huggingface]) is spec
    names = [spec.export_name for spec in [tasks.PRETRAINED, *tasks.SPECS.values()]]
    assert len(set(names)) == len(names)
