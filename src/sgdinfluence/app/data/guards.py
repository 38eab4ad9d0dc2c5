"""What every reader checks before it trusts a user's file: that it is a regular file (a named
pipe or a device would block or never end), that it expands to at most ``max_bytes`` once
decompressed, that the names inside an archive stay inside it, and, for
:func:`~sgdinfluence.app.data.files.write_cleaned`, a hash of its content to tell whether it
changed since it was read.

``max_bytes`` (default :data:`MAX_BYTES`, 4 GiB) bounds the bytes one input file may expand
to: a CSV file once decompressed, the arrays of an ``.npz`` file as their headers declare
them, the members of a tar archive as its headers declare them. Sizes are checked from
headers before anything is read, and a compressed CSV file is read through a counter that
stops at the limit, so a small file that claims or unpacks to terabytes costs at most
``max_bytes``.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path, PurePosixPath

import numpy as np

from ...errors import ConfigError, DataError

# A fixed default rather than one derived from the machine's memory, so that a file is read or
# refused alike everywhere. 4 GiB holds the largest dataset of the paper (CIFAR-10 as float32,
# 0.6 GB) several times over, while parsing CSV text takes several times its size in memory
# (1 GiB of short rows did not fit in 6 GB).
MAX_BYTES = 4 << 30
CHUNK = 1 << 20  # what a stream is read and hashed by
SPECIAL_FILES = ((stat.S_ISFIFO, "named pipe (FIFO)"), (stat.S_ISCHR, "character device"),
                 (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"),
                 (stat.S_ISDIR, "directory"))


def check_max_bytes(max_bytes) -> None:
    """A TypeError unless ``max_bytes`` is an int, a ConfigError unless it is positive."""
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)):
        raise TypeError(f"max_bytes must be an int, got {type(max_bytes).__name__} "
                        f"{max_bytes!r}")
    if max_bytes < 1:
        raise ConfigError(f"max_bytes must be at least 1, got {max_bytes}")


def check_regular(path: Path, where: str, folder: bool = False, fix: str | None = None) -> bool:
    """Refuse ``path`` unless it is a regular file (or, with ``folder``, a directory), from
    its ``os.stat`` alone: opening a named pipe blocks until someone writes to it, and a
    device like /dev/zero never ends. Returns whether it is a directory; a missing path (a
    dangling link too) is a FileNotFoundError."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{where}: no file or folder at {path}") from None
    if stat.S_ISREG(mode) or folder and stat.S_ISDIR(mode):
        return stat.S_ISDIR(mode)
    kind = next((name for test, name in SPECIAL_FILES if test(mode)), "special file")
    fix = fix or "give the path of a file" + (" or folder" if folder else "")
    raise DataError(f"{where}: is a {kind}, not a regular file; {fix}")


def too_big(where: str, what: str, max_bytes: int) -> DataError:
    """The error for an input that would expand past ``max_bytes``; ``what`` says how far
    ("decompresses to more than", "takes 5,000,000,000 bytes, more than")."""
    return DataError(f"{where}: {what} the max_bytes limit of {max_bytes:,} bytes "
                     f"({max_bytes / 2**30:.3g} GiB); raise max_bytes if you trust the file and "
                     "have the memory")


def read_bounded(stream, max_bytes: int | None, where: str, what: str) -> bytes:
    """Everything ``stream`` yields, read by chunks and refused (:func:`too_big`, with
    ``what``) as soon as it passes ``max_bytes`` (None: no limit), so that a compressed bomb
    is never unpacked whole."""
    buffer = bytearray()
    while chunk := stream.read(CHUNK):
        buffer += chunk
        if max_bytes is not None and len(buffer) > max_bytes:
            raise too_big(where, what, max_bytes)
    return bytes(buffer)


def check_name(name: str, where: str, what: str = "the member name") -> PurePosixPath:
    """The path of an archive member (a tar member, an array of an ``.npz``) or of a file in
    a folder, as relative parts; refused: a name that would leave the folder it is extracted
    or written to (an absolute path, ``..``), and one that holds a control
    character (a line break would split ``cleaned.txt``, one path a line)."""
    if name.startswith(("/", "\\")) or ".." in re.split(r"[/\\]", name):
        raise DataError(f"{where}: {what} {name!r} points outside the archive (an absolute "
                        "path or '..'), so it could be written outside the folder it is "
                        "extracted to; rename it")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise DataError(f"{where}: {what} {name!r} holds a line break or another control "
                        "character, which would break the list of files written back "
                        "(cleaned.txt, one path a line); rename it")
    return PurePosixPath(*[p for p in name.split("/") if p not in ("", ".")])


def fingerprint(path: Path, where: str, max_bytes: int | None) -> tuple[int, str]:
    """(size, SHA-256 of the content) of a file: what :func:`write_cleaned` compares to tell
    whether the file changed since it was read, an edit that keeps its size and restores its
    modification time included. Take it before reading the file, so that an edit while it is
    read shows too. Streamed by 1 MiB chunks: 1.3 GB/s measured on one core, so a second per
    GB, once when the file is read and once when it is written back. A file larger on disk than
    ``max_bytes`` (None: no limit) is refused before it is hashed."""
    size = os.stat(path).st_size
    if max_bytes is not None and size > max_bytes:
        raise too_big(where, f"is {size:,} bytes on disk, more than", max_bytes)
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
