"""Installation: pyproject.toml against the lock, the README's commands against CI, the wheel."""

import glob
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import REPO_ROOT, TF_ERROR_LINE

REQUIREMENT_FILES = {None: "requirements.txt", "dev": "requirements-dev.txt",
                     "bench": "requirements-bench.txt", "beam": "requirements-beam.txt",
                     "tpu": "requirements-tpu.txt"}


def read_pins(name):
    """{canonical name: version} of a requirements or constraints file; `-c` lines are skipped."""
    pins = {}
    with open(os.path.join(REPO_ROOT, name), encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line or line.startswith("-"):
                continue
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", f"{name}: {line} is not an exact pin"
            pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


def pyproject():
    with open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


def readme_command(marker):
    """The README's indented command line that contains `marker`."""
    with open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8") as f:
        (line,) = [line.strip() for line in f if line.startswith("    ") and marker in line]
    return line


@pytest.mark.parametrize("extra", list(REQUIREMENT_FILES))
def test_pyproject_ranges_admit_the_pinned_versions(extra):
    project = pyproject()
    declared = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    ranges = {canonicalize_name(r.name): r.specifier for r in map(Requirement, declared)}
    pins = read_pins(REQUIREMENT_FILES[extra])
    assert ranges.keys() == pins.keys(), (
        f"pyproject.toml {extra or 'dependencies'} and {REQUIREMENT_FILES[extra]} name different "
        f"packages: {sorted(ranges.keys() ^ pins.keys())}")
    for name, version in pins.items():
        assert ranges[name].contains(version), f"{name}=={version} is outside {ranges[name]}"


def test_every_pin_is_the_locked_version_and_every_file_applies_the_lock():
    lock = read_pins("constraints.txt")
    for name in REQUIREMENT_FILES.values():
        with open(os.path.join(REPO_ROOT, name), encoding="utf-8") as f:
            assert "-c constraints.txt\n" in f.readlines(), f"{name} does not apply the lock"
        for package, version in read_pins(name).items():
            assert lock.get(package) == version, f"{name}: {package}=={version}, lock: " \
                                                 f"{lock.get(package)}"


def test_the_lock_covers_everything_installed_from_the_requirement_files():
    """Walks the installed dependency tree from the pinned packages: every package in it is locked,
    at the version installed (so an upgrade that adds a dependency must refresh the lock)."""
    lock = read_pins("constraints.txt")
    pending = [name for file in REQUIREMENT_FILES.values() for name in read_pins(file)]
    seen, problems = set(), []
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # an optional file's (requirements-bench.txt, -tpu.txt), not installed here
        version = distribution.version.split("+")[0]  # torch's +cpu
        if lock.get(name) != version:
            problems.append(f"{name} {version} installed, lock: {lock.get(name)}")
        for text in distribution.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(canonicalize_name(requirement.name))
    assert len(seen) > 100
    assert not problems, problems


def test_ci_runs_the_readme_test_command_with_an_empty_pip_cache():
    with open(os.path.join(REPO_ROOT, ".ci", "run"), encoding="utf-8") as f:
        ci = [line.strip() for line in f]
    positions = [ci.index(step) for step in readme_command("-m pytest").split(" && ")]
    assert positions == sorted(positions), "the README's steps, in order"
    assert "PIP_CACHE_DIR=$(mktemp -d)" in ci and "export PIP_CACHE_DIR" in ci
    assert positions[0] > ci.index("export PIP_CACHE_DIR")
    setup = readme_command("bert_tf.run_pretraining").split(" && ")
    tests = readme_command("-m pytest").split(" && ")
    assert setup[:2] == tests[:2], "both commands make the venv and its pip the same way"


def wheel_contents(tmp_path):
    """Builds the wheel from a copy of the sources (a build writes build/ and *.egg-info), with the
    venv's own setuptools (no download): returns its path and the names inside."""
    source = tmp_path / "source"
    for name in ("bert_tf", "configs"):
        shutil.copytree(os.path.join(REPO_ROOT, name), source / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(REPO_ROOT, name), source / name)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--wheel-dir", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (wheel,) = glob.glob(str(tmp_path / "dist" / "bert_tf-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        return wheel, set(archive.namelist())


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_venv_and_runs_the_embedded_default(tmp_path):
    wheel, names = wheel_contents(tmp_path)
    modules = {os.path.relpath(p, REPO_ROOT)
               for p in glob.glob(os.path.join(REPO_ROOT, "bert_tf", "**", "*.py"), recursive=True)}
    assert modules <= names, f"missing from the wheel: {sorted(modules - names)}"
    configs = {f"bert_tf/configs/{os.path.basename(p)}"
               for p in glob.glob(os.path.join(REPO_ROOT, "configs", "*.json"))}
    assert configs and configs <= names
    assert not [n for n in names if n.startswith(("tests/", "tools/", "tfrecords/"))]

    # A venv of its own, whose only link to this one is a .pth line for the dependencies
    # (TensorFlow is too big to install again): bert_tf itself must come from the wheel.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet",
                    "--no-deps", "--no-index", wheel], check=True, timeout=300)
    site_packages = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(site_packages, "dependencies.pth"), "w", encoding="utf-8") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")

    def installed_files():
        return {os.path.join(d, n) for d, _, files in os.walk(site_packages) for n in files
                if "__pycache__" not in d}

    before = installed_files()
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "XDG_CACHE_HOME", "BERT_TF_CACHE_DIR")}
    env["HOME"] = str(home)

    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the user's environment, not the tests' log settings

    def run(*args, returncode=0):
        result = subprocess.run([python, *args], cwd=work, env=env, capture_output=True,
                                text=True, timeout=900)
        assert result.returncode == returncode, result.stdout[-3000:] + result.stderr[-3000:]
        return result

    where = run("-c", "import bert_tf; print(bert_tf.__file__)").stdout
    assert where.startswith(site_packages), where
    usage = run("-m", "bert_tf.run_pretraining", "--help", returncode=1).stdout  # absl: exit 1
    assert "--input_file" in usage and "pretrain BERT" in usage

    # The README's first command, the embedded default from its data to its end, with a third of
    # its 600 steps (the same job; the loss and masked-LM accuracy already move by then).
    result = run("-m", "bert_tf.run_pretraining", "--num_train_steps=200")
    out, run_dir = result.stdout, work / "runs" / "bert_tiny_sample"
    if not os.path.exists("/proc/driver/nvidia"):  # a CPU-only machine: a quiet first run
        errors = re.findall(TF_ERROR_LINE, result.stderr, flags=re.M)
        assert not errors, errors
    cache = home / ".cache" / "bert_tf"
    assert f"Making the sample data under {cache}" in out
    assert (cache / "sample_128_20_dynamic.manifest.json").is_file()
    assert "step 200/200" in out and "Done at step 200: masked_lm_accuracy" in out
    assert "tensorboard --logdir runs/bert_tiny_sample" in out
    logs = [line for line in out.splitlines() if line.startswith("step ")]
    first_loss = float(logs[0].split("loss=")[1].split()[0])
    last_loss = float(logs[-1].split("loss=")[1].split()[0])
    assert last_loss < first_loss - 2.0, "the loss falls"
    first_mlm = float(logs[0].split("masked_lm_accuracy=")[1].split()[0])
    final_mlm = float(out.split("Done at step 200: masked_lm_accuracy ")[1].split(",")[0])
    assert final_mlm > first_mlm + 0.015, "masked-LM accuracy rises"
    assert "dynamic masking: masked_lm_prob=0.15" in out and "precision: " in out
    run_config = json.loads((run_dir / "run_config.json").read_text())
    assert run_config["flags"]["pack_sequences"]
    assert run_config["data_manifest"]["masking"] == "dynamic"
    assert (run_dir / "ckpt-200.index").is_file()
    assert re.search(r'"hidden_size": 128', (run_dir / "bert_config.json").read_text())
    assert installed_files() == before, "nothing is written into site-packages"
