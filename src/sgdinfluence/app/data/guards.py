"""What every reader checks before it trusts a user's file: that it is a regular file (a named
pipe or a device would block or never end).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ...errors import DataError

SPECIAL_FILES = ((stat.S_ISFIFO, "named pipe (FIFO)"), (stat.S_ISCHR, "character device"),
                 (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"),
                 (stat.S_ISDIR, "directory"))


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
