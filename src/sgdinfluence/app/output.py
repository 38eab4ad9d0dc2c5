"""Output directories that are complete or absent, and that never replace what the tool did
not write.

Every directory written here ends with a marker file, ``.sgdinfluence-output.json``, naming
the command that wrote it and each file written into it, with its size and SHA-256. An
existing directory is replaced only when asked to (``overwrite``) and only when it holds
exactly what its marker lists, unchanged: a user's own folder, the working directory, a
folder holding the input data, or a previous output into which the user has put anything of
their own (a file, a folder, a link) or in which they changed a file, are refused, before any
work starts. An existing empty directory is written into in place, and kept.

A result is written into a hidden folder beside it (``.<name>.XXXXXXXX``, locked while the
run lives) and then swapped in; a previous result is moved aside (``.<name>.old.XXXXXXXX``)
during the swap. A run killed on the way leaves these behind; the next run for the same path
puts things right (:func:`recover`) and says so in a warning.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path

from ..errors import OutputError

try:
    import fcntl
except ImportError:  # Windows: no locks; a live run's folder is told by nothing
    fcntl = None

MARKER = ".sgdinfluence-output.json"
SHOWN = 5  # paths a refusal names


def check_output(path: str | os.PathLike, overwrite: bool | str = False,
                 inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Refuse an output directory that must not or cannot be written; call it before work.

    ``overwrite``: False, never replace; True, replace a previous result of sgdinfluence; a
    command's name (the demo's ``"demo"``), replace only a previous result of that command.
    ``inputs`` are the paths read (files or directories): the output may neither contain
    them, be them, nor lie inside one of them. What an interrupted run left beside ``path``
    is put right first (:func:`recover`).
    """
    if not os.fspath(path).strip():
        raise OutputError("the output directory is an empty path; name a directory")
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
    _check_above(path)
    recover(path)
    _check_replaceable(path, overwrite)
    return path


@contextlib.contextmanager
def output_dir(path: str | os.PathLike, overwrite: bool | str = False,
               inputs: Iterable[str | os.PathLike] = (), command: str = ""):
    """Yield a temporary directory beside ``path``; on success it becomes ``path`` (replacing
    a previous result, see :func:`check_output`; filling an empty directory in place). On
    failure or interruption nothing is left. The marker records ``command`` (by default
    ``overwrite`` when that names one)."""
    path = check_output(path, overwrite, inputs)
    command = command or (overwrite if isinstance(overwrite, str) else "")
    tmp = old = lock = None
    moved: list[Path] = []  # what an in-place fill has put into path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        lock = _lock(tmp)
        yield tmp
        _write_marker(tmp, command)
        _check_replaceable(path, overwrite)  # still only ours
        if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
            _fill(tmp, path, moved)  # keep the user's directory (its mode, owner, ACLs)
            moved.clear()
        else:
            umask = os.umask(0)
            os.umask(umask)
            tmp.chmod(0o777 & ~umask)  # mkdtemp made it private
            if path.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
                path.rename(old / path.name)
            tmp.rename(path)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OutputError(f"no space left on the device while writing {path}; free some "
                              f"space on it, or choose an output directory on another "
                              f"device") from e
        raise
    finally:
        for p in moved:  # an in-place fill that failed half-way: take back what it put
            _remove(p)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if lock is not None:
            os.close(lock)
        if old is not None:
            if not path.exists():  # the new result did not take its place: keep the old one
                (old / path.name).rename(path)
            shutil.rmtree(old, ignore_errors=True)


def recover(path: str | os.PathLike) -> None:
    """Put right what a run killed while writing ``path`` left beside it, with a warning: a
    previous result it had moved aside comes back (or, when the new one took its place, is
    deleted), a half-done fill of an empty directory is finished, and an unfinished result is
    deleted. Folders of a run still writing (locked) are left alone."""
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        return
    name = re.escape(path.name)
    news, olds = [], []
    for p in sorted(parent.iterdir()):
        if p.is_dir() and not p.is_symlink():
            if re.fullmatch(rf"\.{name}\.[a-z0-9_]{{8}}", p.name):
                news.append(p)
            elif (re.fullmatch(rf"\.{name}\.old\.[a-z0-9_]{{8}}", p.name)
                  and [q.name for q in p.iterdir()] in ([], [path.name])):
                olds.append(p)
    if any(_locked(p) for p in news + olds):
        return  # another run is writing this output now
    done = []
    for old in olds:
        if not _exists(old / path.name):
            done.append(f"deleted its empty folder {old.name}")
        elif not _exists(path):
            (old / path.name).rename(path)
            done.append(f"restored the previous result it had moved aside into {old.name}")
        else:
            done.append(f"deleted the previous result it had replaced ({old.name})")
        shutil.rmtree(old)
    for new in news:
        marker = new / MARKER
        if (marker.is_file() and (path / MARKER).is_file() and not path.is_symlink()
                and (path / MARKER).read_bytes() == marker.read_bytes()):
            _fill(new, path, [])
            done.append("finished writing the result it had left half-written")
        else:
            shutil.rmtree(new)
            done.append(f"deleted its unfinished output ({new.name})")
    if done:
        warnings.warn(f"an interrupted run left {path} half-done: {'; '.join(done)}",
                      stacklevel=3)


def _check_replaceable(path: Path, overwrite: bool | str) -> None:
    """``path`` is absent, an empty directory, or a previous result that ``overwrite``
    allows to be replaced and that holds exactly what its marker lists, unchanged."""
    if not _exists(path):
        return
    if not path.is_dir() or path.is_symlink():
        raise OutputError(f"output path {path} exists and is not a directory; choose another")
    if not any(path.iterdir()):
        _check_writable(path, path)  # filled in place
        return
    if not overwrite:
        raise OutputError(f"output directory {path} exists; choose another, or pass "
                          "overwrite=True to replace a previous result")
    marker = _read_marker(path)
    if marker is not None and not isinstance(marker.get("written"), dict):
        raise OutputError(f"output directory {path} holds the result of an older sgdinfluence, "
                          "which did not record what it wrote, so it cannot tell whether you "
                          "changed it; it is not replaced: delete it yourself, or choose "
                          "another directory")
    theirs = _not_written_by_us(path, marker)
    if theirs:
        raise OutputError(f"output directory {path} holds files sgdinfluence did not write "
                          f"({', '.join(theirs[:SHOWN])}{', ...' if len(theirs) > SHOWN else ''})"
                          "; it is not replaced: move them, or choose another directory")
    wrote = marker.get("command") or "an unnamed command"
    if isinstance(overwrite, str) and wrote != overwrite:
        raise OutputError(f"output directory {path} holds a result of {wrote}, which {overwrite} "
                          f"does not replace (it replaces only its own); choose another "
                          "directory")
    for entry in [path, *path.rglob("*")]:  # moved and deleted: a user's protection holds
        if not entry.stat().st_mode & stat.S_IWUSR or not os.access(entry, os.W_OK):
            raise OutputError(f"output directory {path} cannot be replaced: {entry} is "
                              "read-only; make it writable (chmod -R u+w), or choose another "
                              "directory")
    _check_writable(path, path.parent)


def _not_written_by_us(path: Path, marker: dict | None) -> list[str]:
    """What under ``path`` its marker does not list as written, as it was written: files
    (``name (changed)`` when edited), links, and folders holding nothing listed."""
    written = marker["written"] if marker else {}
    ours = {str(p) for f in written for p in Path(f).parents}  # folders holding a listed file
    found = []
    for top, dirs, files in os.walk(path):
        rel = Path(top).relative_to(path)
        for d in dirs:
            entry = str(rel / d)
            if (path / entry).is_symlink():
                found.append(entry)
            elif entry not in ours and not any(os.scandir(path / entry)):
                found.append(entry + "/")
        for f in files:
            entry = str(rel / f)
            if entry == MARKER and marker:
                continue
            if entry not in written or (path / entry).is_symlink():
                found.append(entry)
            elif _fingerprint(path / entry) != written[entry]:
                found.append(f"{entry} (changed)")
    return sorted(found)


def _write_marker(folder: Path, command: str) -> None:
    files = sorted(p for p in folder.rglob("*") if not p.is_dir())
    written = {str(p.relative_to(folder)): _fingerprint(p) for p in files}
    (folder / MARKER).write_text(json.dumps({"tool": "sgdinfluence", "command": command,
                                             "written": written}, indent=1))


def _read_marker(path: Path) -> dict | None:
    marker = path / MARKER
    if marker.is_symlink() or not marker.is_file():
        return None
    try:
        found = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) and found.get("tool") == "sgdinfluence" else None


def _fingerprint(file: Path) -> dict:
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"size": file.stat().st_size, "sha256": digest.hexdigest()}


def _fill(tmp: Path, path: Path, moved: list[Path]) -> None:
    """Move ``tmp``'s entries into the directory ``path`` (but those already there), the
    marker first: a fill interrupted half-way is told by the same marker in both (see
    :func:`recover`). ``moved`` gets each entry moved, as it is."""
    for entry in sorted(tmp.iterdir(), key=lambda p: p.name != MARKER):
        if not _exists(path / entry.name):
            entry.rename(path / entry.name)
            moved.append(path / entry.name)
    shutil.rmtree(tmp)


def _check_above(path: Path) -> None:
    """No folder above ``path`` may be a file or a link to nothing, and the nearest existing
    one must be a directory we can create in."""
    parent = path.parent
    while not parent.exists():
        if parent.is_symlink():
            raise OutputError(f"cannot write output directory {path}: {parent} is a link to "
                              f"{os.readlink(parent)}, which does not exist; create that "
                              "folder, or choose another directory")
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"cannot write output directory {path}: {parent} is a file")
    _check_writable(path, parent)


def _check_writable(path: Path, folder: Path) -> None:
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".sgdinfluence-check.", dir=folder))
    except OSError as e:
        raise OutputError(f"cannot write output directory {path}: {folder} is not writable "
                          f"({e.strerror}); choose another directory") from e


def _lock(folder: Path) -> int:
    """Hold an exclusive lock on ``folder`` while this process lives (released when it dies,
    even by kill -9); returns the descriptor to close."""
    fd = os.open(folder, os.O_RDONLY)
    if fcntl is not None:
        with contextlib.suppress(OSError):  # a file system without locks: run unlocked
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def _locked(folder: Path) -> bool:
    if fcntl is None:
        return False
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return True  # cannot tell: leave it alone
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False  # a file system without locks
    finally:
        os.close(fd)  # and with it the lock, if taken


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
