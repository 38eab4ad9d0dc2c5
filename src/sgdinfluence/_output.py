"""Writing an experiment's output directory atomically: complete, or absent."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def output_dir(path: str | Path, overwrite: bool = False):
    """Yield a temporary directory beside ``path``; on success it replaces ``path``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"output directory {path} exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp made it private
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
