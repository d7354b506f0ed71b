"""Files, on every filesystem TensorFlow knows: local paths, gs://, ram://, ...

Every file bert_tf writes goes through here. A file is written under a temporary name beside its
target and renamed when complete, so a reader (or a re-run after a crash) never sees half of one;
a directory likewise (`directory_written_atomically`). On a local disk a rename is atomic. An
object store such as gs:// has no rename: a file's is a copy then a delete, and a directory's
moves its files one by one, so a crash part-way can leave the temporary name behind, or (for a
directory) a target with some files missing, but never a half-written file.
"""

import contextlib
import json
import os
import re
import shutil
import tempfile

import tensorflow as tf


def is_local(path) -> bool:
    """A path on this machine's disk, as opposed to a URL such as gs://bucket/file."""
    return "://" not in os.fspath(path)


def same_file(a, b) -> bool:
    """Whether two paths name one file (a link, a relative path, `./x` and `x` included)."""
    a, b = os.fspath(a), os.fspath(b)
    if not (is_local(a) and is_local(b)):
        return a.rstrip("/") == b.rstrip("/")
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist yet
        return os.path.realpath(a) == os.path.realpath(b)


def temp_name(path, tag=None) -> str:
    """The temporary name `path` is written under: beside it, hidden (a leading dot, so no glob
    of the final names matches it), unique to this process or to `tag`."""
    directory, name = os.path.split(os.fspath(path))
    return os.path.join(directory, f".{name}.tmp-{tag or os.getpid()}")


def temp_pattern(path) -> str:
    """A glob of the temporary names of `path` (a file name or a file-name glob)."""
    return temp_name(path, "*")


def write_file(path, data) -> None:
    """Writes `data` (str or bytes) to `path` through a temporary file, renamed when complete;
    on failure (a full disk) the temporary file is removed."""
    path = os.fspath(path)
    tmp = temp_name(path)
    try:
        with tf.io.gfile.GFile(tmp, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        tf.io.gfile.rename(tmp, path, overwrite=True)
    except BaseException:
        remove_quietly(tmp)
        raise


def remove_all(paths) -> None:
    """Removes files and directories (a killed run's temporary ones)."""
    for path in paths:
        if tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
        elif tf.io.gfile.exists(path):
            tf.io.gfile.remove(path)


def one_line(message) -> str:
    """TensorFlow's "{{function_node ...}} path; No space left on device [Op:SaveV2]" as
    "path: No space left on device"."""
    lines = str(message).strip().splitlines() or ["unknown error"]
    line = re.sub(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\]", "", lines[0])
    return line.replace("; ", ": ", 1)


def remove_quietly(path) -> None:
    """Removes a file if it is there; cleanup that must not hide the error being raised."""
    try:
        if tf.io.gfile.exists(path):
            tf.io.gfile.remove(path)
    except (OSError, tf.errors.OpError):
        pass


def write_json(path, values) -> None:
    """`values` as indented JSON with sorted keys, written through a temporary file."""
    write_file(path, json.dumps(values, indent=2, sort_keys=True) + "\n")


def read_json(path):
    with tf.io.gfile.GFile(os.fspath(path), "r") as f:
        return json.load(f)


def read_text(path) -> str:
    with tf.io.gfile.GFile(os.fspath(path), "r") as f:
        return f.read()


def read_bytes(path) -> bytes:
    with tf.io.gfile.GFile(os.fspath(path), "rb") as f:
        return f.read()


def copy_file(source, target) -> None:
    """Copies through a temporary file, renamed when complete (the target may exist)."""
    tmp = temp_name(target)
    try:
        tf.io.gfile.copy(os.fspath(source), tmp, overwrite=True)
        tf.io.gfile.rename(tmp, os.fspath(target), overwrite=True)
    except BaseException:
        remove_quietly(tmp)
        raise


@contextlib.contextmanager
def directory_written_atomically(target, tmp=None):
    """Yields an empty temporary directory to write into; on success `target` is replaced by it,
    on failure it is removed and `target` is left untouched. `tmp` defaults to a hidden sibling."""
    target = os.fspath(target)
    tmp = tmp or temp_name(target.rstrip("/"))
    if tf.io.gfile.exists(tmp):
        tf.io.gfile.rmtree(tmp)
    tf.io.gfile.makedirs(tmp)
    try:
        yield tmp
        if tf.io.gfile.exists(target):
            tf.io.gfile.rmtree(target)
        move_directory(tmp, target)
    finally:
        if tf.io.gfile.exists(tmp):
            remove_tree(tmp)


def move_directory(source, target) -> None:
    """Renames a directory: at once on a local disk, file by file on object stores (whose
    directories are only name prefixes; a rename there would move the name and leave the files)."""
    source, target = os.fspath(source).rstrip("/"), os.fspath(target).rstrip("/")
    if is_local(source):
        tf.io.gfile.rename(source, target)
        return
    for directory, _, files in tf.io.gfile.walk(source):
        destination = target + directory[len(source):]
        tf.io.gfile.makedirs(destination)
        for name in files:
            path = f"{directory}/{name}"
            # TensorFlow's ram:// lists a sibling's files by bare name prefix ("assets" holds
            # ".extra/..." when "assets.extra/" exists): only names that are files move.
            if tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path):
                tf.io.gfile.rename(path, f"{destination}/{name}", overwrite=True)
    remove_tree(source)


def remove_tree(directory) -> None:
    """tf.io.gfile.rmtree, past ram://'s listing of phantom names (see move_directory): what
    rmtree cannot find is skipped, file by file, then the folders, deepest first."""
    try:
        tf.io.gfile.rmtree(directory)
        return
    except tf.errors.NotFoundError:
        pass
    folders = []
    for folder, _, files in tf.io.gfile.walk(directory):
        folders.append(folder)
        for name in files:
            remove_quietly(f"{folder}/{name}")
    for folder in sorted(folders, key=len, reverse=True):
        try:
            tf.io.gfile.remove(folder)
        except tf.errors.OpError:
            pass


@contextlib.contextmanager
def local_copies(paths):
    """Yields local paths for `paths`, for libraries that read only local files: a local path as
    it is, a URL's file copied into a temporary directory (removed afterwards)."""
    remote = [p for p in paths if not is_local(p)]
    if not remote:
        yield list(paths)
        return
    staging = tempfile.mkdtemp(prefix="bert_tf_")
    try:
        local = {}
        for index, path in enumerate(remote):
            local[path] = os.path.join(staging, f"{index}_{os.path.basename(path)}")
            tf.io.gfile.copy(path, local[path])
        yield [local.get(p, p) for p in paths]
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def file_in(directory, name, source) -> str:
    """`name`, read from the file `source`, as a file beside it in `directory`. Only a plain file
    name is accepted: a path (absolute, into a folder, or up with "..") is refused, so a data
    file cannot make a tool read or copy a file outside its own directory."""
    if (not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name
            or "\0" in name):
        raise ValueError(f"{source}: {name!r} is not a file name; the files this one lists must "
                         f"be beside it, in {directory}")
    return os.path.join(directory, name)


def expand_file_patterns(patterns, flag="--input_file") -> list:
    """A comma list of globs (local or gs://) -> sorted files; a pattern matching nothing is an
    error naming `flag`."""
    files = []
    for pattern in [p.strip() for p in str(patterns).split(",") if p.strip()]:
        matches = sorted(tf.io.gfile.glob(pattern))
        if not matches:
            raise FileNotFoundError(f"{flag}: no files match {pattern!r}")
        files.extend(m for m in matches if m not in files)
    if not files:
        raise FileNotFoundError(f"{flag}: no file pattern given")
    return files
