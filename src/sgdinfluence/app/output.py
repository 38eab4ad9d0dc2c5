"""Output directories that are complete or absent, and that never replace what the tool did
not write.

Every directory written here ends with a marker file, ``.sgdinfluence-output.json``, listing
the files written into it. An existing directory is replaced only when asked to
(``overwrite=True``) and only when its marker lists every file it holds: a user's own folder,
the working directory, a folder holding the input data, or a previous output into which the
user has put a file of their own are refused, before any work starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from ..errors import OutputError

MARKER = ".sgdinfluence-output.json"


def check_output(path: str | os.PathLike, overwrite: bool = False,
                 inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Refuse an output directory that must not or cannot be written; call it before work.

    ``inputs`` are the paths read (files or directories): the output may neither contain
    them, be them, nor lie inside one of them.
    """
    path = Path(path).expanduser()
    real = path.resolve()
    cwd = Path.cwd().resolve()
    if real == cwd or real in cwd.parents:
        raise OutputError(f"output directory {path} is the working directory or contains it; "
                          "choose a new directory for the output")
    for given in inputs:
        source = Path(given).expanduser().resolve()
        if real == source or real in source.parents:
            raise OutputError(f"output directory {path} contains the input {given}; choose a "
                              "directory outside the input data")
        if source.is_dir() and source in real.parents:
            raise OutputError(f"output directory {path} lies inside the input folder {given}; "
                              "choose a directory outside the input data")
    if path.exists() or path.is_symlink():
        if not path.is_dir() or path.is_symlink():
            raise OutputError(f"output path {path} exists and is not a directory; choose another")
        if not any(path.iterdir()):
            pass  # an empty directory: nothing to lose
        elif not overwrite:
            raise OutputError(f"output directory {path} exists; choose another, or pass "
                              "overwrite=True to replace a previous result")
        foreign = _not_written_by_us(path)
        if foreign:
            raise OutputError(f"output directory {path} holds files sgdinfluence did not write "
                              f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}); "
                              "it is not replaced: move them, or choose another directory")
    _check_writable(path)
    return path


@contextlib.contextmanager
def output_dir(path: str | os.PathLike, overwrite: bool = False,
               inputs: Iterable[str | os.PathLike] = ()):
    """Yield a temporary directory beside ``path``; on success it becomes ``path`` (replacing
    a previous result, see :func:`check_output`). On failure or interruption nothing is left."""
    path = check_output(path, overwrite, inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    old = None
    try:
        yield tmp
        written = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if not p.is_dir())
        (tmp / MARKER).write_text(json.dumps({"tool": "sgdinfluence", "written": written}))
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp made it private
        if path.exists():
            check_output(path, overwrite, inputs)  # still only ours
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            path.rename(old / path.name)
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            if not path.exists():  # the new result did not take its place: keep the old one
                (old / path.name).rename(path)
            shutil.rmtree(old, ignore_errors=True)


def _not_written_by_us(path: Path) -> list[str]:
    """The files under ``path`` that its marker does not list (all of them without one)."""
    found = sorted(str(p.relative_to(path)) for p in path.rglob("*") if not p.is_dir())
    try:
        written = set(json.loads((path / MARKER).read_text())["written"])
    except (OSError, ValueError, KeyError, TypeError):
        return found
    return [f for f in found if f not in written and f != MARKER]


def _check_writable(path: Path) -> None:
    """The nearest existing folder above ``path`` must be a directory we can create in."""
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"cannot write output directory {path}: {parent} is a file")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".sgdinfluence-check.", dir=parent))
    except OSError as e:
        raise OutputError(f"cannot write output directory {path}: {parent} is not writable "
                          f"({e.strerror}); choose another directory") from e
