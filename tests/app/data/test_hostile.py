"""Hostile inputs (issue 20, "safe to open, safe to run"): files that would hang a reader,
exhaust its memory, write outside the output folder, or give silently wrong numbers. Each is
refused at the public entry point in one line naming the file and the fix, or read right."""

import contextlib
import io
import os
import signal
import socket
import tarfile

import numpy as np
import pytest
from PIL import Image

from sgdinfluence.app.data import load_data, read_like
from sgdinfluence.app.data.files import read_csv, read_image_folder, read_npz
from sgdinfluence.errors import DataError

LIMIT = 1 << 16  # the max_bytes the bombs are read with: 64 KiB


@contextlib.contextmanager
def deadline(seconds=5):
    """Fail, rather than hang, where a reader blocks (opening a named pipe, say)."""
    def expire(signum, frame):
        raise TimeoutError(f"still reading after {seconds} s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def refused(call, *parts, error=DataError) -> str:
    """The one-line message of the ``error`` that ``call`` raises, holding every one of
    ``parts``."""
    with deadline(), pytest.raises(error) as e:
        call()
    message = str(e.value)
    assert "\n" not in message and all(p in message for p in parts), message
    return message


def csv_text(n=30, labels=("a", "b")):
    return "x,label\n" + "".join(f"{i},{labels[i % len(labels)]}\n" for i in range(n))


@pytest.fixture()
def reference(tmp_path):
    (tmp_path / "train.csv").write_text(csv_text())
    return read_csv(tmp_path / "train.csv", "label")


def png(array=None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8) if array is None else array).save(buffer, "PNG")
    return buffer.getvalue()


def image_folder(root, splits=("train", "test"), n=3):
    for split in splits:
        for c in "ab":
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                (root / split / c / f"{i}.png").write_bytes(png())
    return root


def tar_of(path, members, mode="w"):
    """A tar archive of ``members``: {name: bytes, or a size whose zeros are streamed}."""
    with tarfile.open(path, mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = data if isinstance(data, int) else len(data)
            tar.addfile(info, Zeros(data) if isinstance(data, int) else io.BytesIO(data))
    return path


class Zeros(io.RawIOBase):
    """``n`` zero bytes, streamed."""

    def __init__(self, n):
        self.left = n

    def readinto(self, buffer):
        k = min(len(buffer), self.left)
        buffer[:k] = bytes(k)
        self.left -= k
        return k


# --- non-regular files: refused from os.stat, before they are opened --------------------------

def fifo(path):
    os.mkfifo(path)
    return path


def unix_socket(path):
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))  # the file stays when the socket is closed
    return path


# (name, what os.stat calls it, a function making one at a path), under names of each format
SPECIAL = [*[(f"fifo-{name}", "named pipe (FIFO)", fifo, name)
             for name in ("data", "d.csv", "d.npz", "d.tar")],
           *[(f"socket-{name}", "socket", unix_socket, name) for name in ("data", "d.csv")],
           ("dev-zero", "character device", lambda path: "/dev/zero", "")]
ENTRY = [("load_data", lambda p, ref: load_data(str(p))),
         ("load_data-csv", lambda p, ref: load_data(str(p), "label")),
         ("read_csv", lambda p, ref: read_csv(p, "label")),
         ("read_npz", lambda p, ref: read_npz(p)),
         ("read_image_folder", lambda p, ref: read_image_folder(p)),
         ("read_like", lambda p, ref: read_like(p, ref, "target file"))]


@pytest.mark.parametrize("what, make, name", [s[1:] for s in SPECIAL], ids=[s[0] for s in SPECIAL])
@pytest.mark.parametrize("read", [e[1] for e in ENTRY], ids=[e[0] for e in ENTRY])
def test_a_pipe_socket_or_device_is_refused_never_opened(tmp_path, reference, what, make, name,
                                                         read):
    path = make(tmp_path / name)
    refused(lambda: read(path, reference), f"{path}: is a {what}, not a regular file; give "
                                           "the path of a file")


def test_a_pipe_or_device_inside_an_image_folder_is_refused(tmp_path):
    for i, make in enumerate([lambda p: os.mkfifo(p), lambda p: os.symlink("/dev/zero", p)]):
        root = image_folder(tmp_path / f"imgs{i}")
        make(root / "train" / "a" / "zz.png")
        refused(lambda r=root: read_image_folder(r),
                f"{root}: train/a/zz.png: is a", "not a regular file; remove it from the folder")
