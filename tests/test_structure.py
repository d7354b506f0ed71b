"""The package's shape: no import cycle between its modules (imports inside functions count:
they close a cycle as surely at run time), and every command's flags come from typed settings."""

import ast
import importlib
import pathlib

from conftest import REPO_ROOT

PACKAGE = pathlib.Path(REPO_ROOT) / "bert_tf"


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path, modules):
    """The package modules `path` imports anywhere in it (`from a.b import c` imports a.b.c when
    that is a module, else a.b)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules
                         else node.module for alias in node.names)
    return {name for name in found if name in modules}


def import_graph():
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports(path, paths) - {name} for name, path in paths.items()}


def test_no_import_cycles():
    graph = import_graph()
    # a package's __init__ re-exports its modules: importing it is importing them, not a cycle
    # of the modules that import the package's names
    edges = {name: {t for t in targets if not name.startswith(t + ".")}
             for name, targets in graph.items()}
    state, stack = {}, []

    def visit(name):
        state[name] = "open"
        stack.append(name)
        for target in sorted(edges[name]):
            if state.get(target) == "open":
                cycle = stack[stack.index(target):] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[name] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name)


def test_the_model_code_imports_no_other_stage():
    """modeling/ is the bottom of the model's ladder: it imports config, the table of model
    kinds (which imports nothing of the package) and itself only."""
    graph = import_graph()
    assert graph["bert_tf.tasks"] <= {"bert_tf"}
    for name, targets in graph.items():
        if name.startswith("bert_tf.modeling"):
            assert {t for t in targets if not t.startswith("bert_tf.modeling")} <= {
                "bert_tf.config", "bert_tf.tasks", "bert_tf"}, (name, targets)


def test_no_command_defines_a_flag_by_hand():
    """Every flag is a field of a typed settings class (bert_tf.settings declares them)."""
    for path in PACKAGE.rglob("*.py"):
        if path.name == "settings.py":
            continue
        text = path.read_text(encoding="utf-8")
        for forbidden in ("flags.DEFINE_", "argparse", "mark_flag_as_required"):
            assert forbidden not in text, f"{path.relative_to(PACKAGE.parent)}: {forbidden}"


def test_every_command_declares_its_settings():
    """Each `python -m bert_tf.<name>` module starts with the flags of its SETTINGS, typed
    settings classes (what tests/test_docs.py checks the docs' command lines against)."""
    from bert_tf.settings import Settings, flag_names

    commands = [p for p in PACKAGE.rglob("*.py") if 'if __name__ == "__main__"' in p.read_text()]
    assert len(commands) == 13, [str(p) for p in commands]
    for path in commands:
        assert "cli.start(main, SETTINGS" in path.read_text(), path
        module = importlib.import_module(module_name(path))
        assert module.SETTINGS and all(issubclass(c, Settings) and flag_names(c)
                                       for c in module.SETTINGS), path
