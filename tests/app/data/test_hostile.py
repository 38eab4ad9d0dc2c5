"""Hostile inputs (issue 20, "safe to open, safe to run"): files that would hang a reader,
exhaust its memory, write outside the output folder, or give silently wrong numbers. Each is
refused at the public entry point in one line naming the file and the fix, or read right.
Bombs are built cheaply (a header that claims a huge size, zeros compressed as they are
streamed) and read under a small ``max_bytes``, so the module takes about a second."""

import bz2
import contextlib
import gzip
import io
import lzma
import os
import signal
import socket
import tarfile
import zipfile
from functools import partial

import numpy as np
import pytest
from PIL import Image

from sgdinfluence.app.data import load_data, read_like, write_cleaned
from sgdinfluence.app.data.files import read_csv, read_image_folder, read_npz
from sgdinfluence.errors import ConfigError, DataError

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


def refused(call, *parts) -> str:
    """The one-line message of the DataError that ``call`` raises, holding all ``parts``."""
    with deadline(), pytest.raises(DataError) as e:
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


def png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buffer, "PNG")
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


# --- decompression bombs: bounded by max_bytes, sizes read from headers -----------------------

def csv_bomb(path, opener, size=2 * LIMIT):
    """A CSV file of ``size`` bytes compressed as it is written: a header, then rows."""
    with opener(path) as f:
        f.write(b"x,label\n")
        for _ in range(size // (1 << 14)):
            f.write(b"0,a\n1,b\n" * (1 << 11))
    return path


@contextlib.contextmanager
def zipped(path):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive, \
            archive.open("d.csv", "w") as f:
        yield f


OPENERS = [("gz", partial(gzip.open, mode="wb", compresslevel=1)),
           ("bz2", partial(bz2.open, mode="wb", compresslevel=1)),
           ("xz", partial(lzma.open, mode="wb", preset=0)), ("zip", zipped),
           ("", partial(open, mode="wb"))]


@pytest.mark.parametrize("suffix, opener", OPENERS, ids=[s or "plain" for s, _ in OPENERS])
def test_a_csv_file_that_expands_past_max_bytes_is_refused(tmp_path, reference, suffix,
                                                           opener):
    path = csv_bomb(tmp_path / f"bomb.csv{'.' + suffix if suffix else ''}", opener)
    what = ("decompresses to more than" if suffix else  # refused before it is hashed:
            f"is {path.stat().st_size:,} bytes on disk, more than")
    for read in (lambda: load_data(str(path), "label", max_bytes=LIMIT),
                 lambda: read_like(path, reference, "target file", max_bytes=LIMIT)):
        refused(read, f"{path}: {what} the max_bytes limit of 65,536 bytes (6.1e-05 GiB); "
                      "raise max_bytes if you trust the file")
    assert len(load_data(str(path), "label", max_bytes=4 * LIMIT)["all"].y) == LIMIT // 2


def npy(shape, body=b"", dtype="<f4") -> bytes:
    """An .npy file whose header declares ``shape`` and whose data is ``body``."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False,
                                                  "shape": shape})
    return buffer.getvalue() + body


def npz_of(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in members.items():
            z.writestr(f"{name}.npy", data)
    return path


def test_npz_arrays_are_checked_from_their_headers_before_they_are_read(tmp_path):
    y = npy((4,), bytes(32), "<i8")
    liar = npz_of(tmp_path / "liar.npz", {"X": npy((10**6, 10**4), bytes(100)), "y": y})
    refused(lambda: read_npz(liar), f"{liar}: the array 'X' of shape (1000000, 10000) and "
            "dtype float32 takes 40,000,000,000 bytes, more than the max_bytes limit of "
            "4,294,967,296 bytes (4 GiB)")  # the default
    truncated = npz_of(tmp_path / "short.npz", {"X": npy((4, 1000), bytes(100)), "y": y})
    refused(lambda: read_npz(truncated), f"{truncated}: the array 'X' is truncated: its header "
            "declares 16,000 bytes, the file holds 100")
    bomb = npz_of(tmp_path / "bomb.npz", {"X": npy((4, LIMIT), bytes(16 * LIMIT)), "y": y},
                  zipfile.ZIP_DEFLATED)
    assert bomb.stat().st_size < LIMIT
    refused(lambda: read_npz(bomb, max_bytes=LIMIT), "the array 'X' of shape (4, 65536)",
            "takes 1,048,576 bytes, more than the max_bytes limit of 65,536 bytes")
    extra = npz_of(tmp_path / "extra.npz", {"X": npy((4, 2), bytes(32)), "y": y,
                                            "junk": npy((LIMIT,), bytes(4 * LIMIT))},
                   zipfile.ZIP_DEFLATED)  # never trained on, but write_cleaned copies it
    refused(lambda: load_data(str(extra), max_bytes=LIMIT), "the array 'junk' of shape "
            "(65536,) and dtype float32 takes 262,144 bytes, more than the max_bytes limit")


def test_tar_members_are_checked_from_their_headers_before_they_are_read(tmp_path):
    header = tarfile.TarInfo("train/a/x.png")
    header.size = 3 << 30  # 3 GiB declared, nothing behind it
    liar = tmp_path / "liar.tar"
    liar.write_bytes(header.tobuf(tarfile.GNU_FORMAT) + bytes(2048))
    refused(lambda: read_image_folder(liar, max_bytes=LIMIT),
            f"{liar}: its members hold 3,221,225,472 bytes (up to 'train/a/x.png'), more than "
            "the max_bytes limit of 65,536 bytes")
    refused(lambda: read_image_folder(liar), f"{liar}: cannot be read as a tar archive")
    bomb = tar_of(tmp_path / "bomb.tar.gz", {"train/a/0.png": png(), "train/a/1.png": 4 * LIMIT},
                  "w:gz")
    refused(lambda: load_data(str(bomb), max_bytes=LIMIT),
            "its members hold 262,", "(up to 'train/a/1.png'), more than the max_bytes limit")


# --- images of 16 and 32 bits: scaled by their real range, or refused -------------------------

def images(root, arrays, suffix):
    for i, a in enumerate(arrays):
        (root / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(root / "ab"[i % 2] / f"{i}{suffix}")
    return root


@pytest.mark.parametrize("dtype, suffix, values, expected", [
    (np.uint16, ".png", [1000, 65535, 0, 30000], [1000 / 65535, 1, 0, 30000 / 65535]),  # I;16
    (np.uint16, ".tif", [1000, 65535, 0, 30000], [1000 / 65535, 1, 0, 30000 / 65535]),
    (np.int32, ".tif", [1000, 65535, 0, 30000], [1000 / 65535, 1, 0, 30000 / 65535]),  # I
    (np.float32, ".tif", [0.25, 1.0, 0.0, 0.75], [0.25, 1.0, 0.0, 0.75]),  # F
])
def test_16_and_32_bit_images_are_scaled_by_their_range(tmp_path, dtype, suffix, values,
                                                        expected):
    root = images(tmp_path / "imgs", [np.full((4, 4), v, dtype) for v in values], suffix)
    with tarfile.open(tmp_path / "imgs.tar", "w") as tar:
        tar.add(root, arcname=".")
    for source in (root, tmp_path / "imgs.tar"):
        t = read_image_folder(source)["all"]
        X = np.asarray(t.X)
        assert X.shape == (4, 1, 4, 4) and X.dtype == np.float32
        order = [int(n.split("/")[-1].split(".")[0]) for n in t.names]
        np.testing.assert_allclose(X[:, 0, 0, 0], np.array(expected)[order], rtol=1e-6)


@pytest.mark.parametrize("dtype, value, message", [
    (np.int32, 70000, "an integer image (mode I) with values in [70000, 70000], outside 0 to "
                      "65535; save it with 8 or 16 bits"),
    (np.int32, -5, "an integer image (mode I) with values in [-5, -5]"),
    (np.float32, 2.0, "a floating-point image (mode F) with values in [2, 2], outside [0, 1]; "
                      "scale it to [0, 1] or save it with 8 or 16 bits"),
    (np.float32, np.nan, "a floating-point image (mode F) with values in [nan, nan]"),
])
def test_32_bit_images_out_of_range_are_refused(tmp_path, dtype, value, message):
    arrays = [np.zeros((4, 4), dtype)] * 3 + [np.full((4, 4), value, dtype)]
    root = images(tmp_path / "imgs", arrays, ".tif")
    with tarfile.open(tmp_path / "imgs.tar", "w") as tar:
        tar.add(root, arcname=".")
    for source in (root, tmp_path / "imgs.tar"):  # a folder too: checked now, not in training
        refused(lambda s=source: read_image_folder(s), f"{source}: b/3.tif: {message}")


# --- labels and features that would be read wrong ---------------------------------------------

X40 = np.random.default_rng(0).random((40, 4)).astype(np.float32)
Y40 = np.arange(40) % 2

NPZ = [
    ("nan-label", dict(X=X40, y=np.where(np.arange(40) == 3, np.nan, Y40)),
     "y holds NaN or infinite values in 1 row ([3]); give every instance its class"),
    ("complex-X", dict(X=X40 + 1j, y=Y40),
     "X holds complex numbers; give real features (the real and imaginary parts as two)"),
    ("regression-y", dict(X=X40, y=np.linspace(0, 1, 40)),
     "y holds numbers that are not whole (e.g. 0.02564102564102564 in row 1): it looks like a "
     "regression target, and sgdinfluence does classification; bin the values into classes"),
    ("1d-X", dict(X=X40[:, 0], y=Y40), "X has shape (40,); give X of shape (N, features), "
                                       "(N, height, width) or (N, channels, height, width)"),
    ("5d-X", dict(X=X40.reshape(40, 1, 1, 2, 2), y=Y40), "X has shape (40, 1, 1, 2, 2); give X"),
    ("0d-X", dict(X=np.float32(1), y=Y40), "X has shape (); give X of shape (N, features)"),
    ("no-rows", dict(X=X40[:0], y=Y40[:0]), "X has no instances (shape (0, 4))"),
    ("huge-X", dict(X=np.where(np.arange(40)[:, None] == 3, 1e300, X40.astype(float)), y=Y40),
     "X holds numbers too large for float32 (at most 3.4e+38): 1e+300 in row 3, feature 0; "
     "rescale X (divide it by a power of ten, say)"),
    ("traversal-member", {"X": X40, "y": Y40, "../../evil": np.arange(40)},
     "the member name '../../evil.npy' points outside the archive"),
]


@pytest.mark.parametrize("arrays, message", [n[1:] for n in NPZ], ids=[n[0] for n in NPZ])
def test_npz_files_that_would_be_read_wrong_are_refused(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    refused(lambda: load_data(str(tmp_path / "d.npz")), f"{tmp_path / 'd.npz'}: {message}")


def test_numbers_written_two_ways_are_one_class_in_training_and_in_read_like(tmp_path):
    (tmp_path / "d.csv").write_text(csv_text(labels=("1", "1.0", "x", "01", "2.50", "2.5")))
    ref = read_csv(tmp_path / "d.csv", "label")
    assert ref.classes == ["1", "2.5", "x"] and np.bincount(ref.y).tolist() == [15, 10, 5]
    for labels in (("1.0",), ("1", "x"), ("1.00", "2.5")):  # pandas reads numbers, or text
        (tmp_path / "t.csv").write_text(csv_text(4, labels))
        t = read_like(tmp_path / "t.csv", ref, "target file")
        assert [ref.classes[i] for i in t.y] == [class_of(v) for v in (labels * 4)[:4]]
    np.savez(tmp_path / "d.npz", X=X40, y=Y40 + 1.0)  # whole floats: the classes "1" and "2"
    ref = read_npz(tmp_path / "d.npz")
    assert ref.classes == ["1", "2"]
    np.savez(tmp_path / "t.npz", X=X40[:3], y=np.array(["2", "1.0", "2.0"]))
    assert read_like(tmp_path / "t.npz", ref, "target file").y.tolist() == [1, 0, 1]


def class_of(label: str) -> str:
    return {"1.0": "1", "1.00": "1", "01": "1", "2.50": "2.5"}.get(label, label)


# --- names that would escape the output, or break cleaned.txt --------------------------------

@pytest.mark.parametrize("name", ["../a/x.png", "/abs/b/y.png", "train/../../c/z.png"])
def test_tar_members_that_point_outside_the_archive_are_refused(tmp_path, name):
    tar = tar_of(tmp_path / "t.tar", {"train/a/1.png": png(), "train/b/2.png": png(),
                                      name: png()})
    refused(lambda: read_image_folder(tar), f"{tar}: the member name {name!r} points outside "
            "the archive (an absolute path or '..'), so it could be written outside the folder "
            "it is extracted to; rename it")


def test_an_image_name_with_a_line_break_is_refused(tmp_path):
    root = image_folder(tmp_path / "imgs")
    (root / "train" / "a" / "evil\nb.png").write_bytes(png())
    refused(lambda: load_data(str(root)), f"{root}: the file name 'train/a/evil\\nb.png' holds "
            "a line break or another control character, which would break the list of files "
            "written back (cleaned.txt, one path a line); rename it")
    tar = tar_of(tmp_path / "t.tar", {"a/1.png": png(), "b/2.png": png(), "a/x\r.png": png()})
    refused(lambda: load_data(str(tar)), "the member name 'a/x\\r.png' holds a line break")


# --- an input changed during the run, size and modification time kept ------------------------

def test_an_edit_that_keeps_size_and_mtime_is_detected(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(csv_text())
    t = read_csv(path, "label")
    before = path.stat()
    path.write_text(csv_text().replace("0,a", "0,b"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns
    refused(lambda: write_cleaned(t.schema, [1], tmp_path), f"{path}: changed since it was read")
    assert not (tmp_path / "cleaned.csv").exists()


# --- layouts and values that gave tracebacks ---------------------------------------------------

def test_split_folders_other_than_train_and_test_are_refused(tmp_path):
    root = image_folder(tmp_path / "imgs", ("train", "valid"))
    refused(lambda: load_data(str(root)), f"{root}: split folders ['train', 'valid']; expected "
            "train/ and test/ (<split>/<class>/<file>), or class folders at the top "
            "(<class>/<file>); rename the split folders, or give the validation images as a "
            "validation file of their own")
    assert set(read_image_folder(image_folder(tmp_path / "two"))) == {"train", "test"}


def test_max_bytes_is_a_positive_int(tmp_path):
    (tmp_path / "d.csv").write_text(csv_text())
    with pytest.raises(ConfigError, match="max_bytes must be at least 1, got 0"):
        load_data(str(tmp_path / "d.csv"), "label", max_bytes=0)
    with pytest.raises(TypeError, match="max_bytes must be an int, got float 1.5"):
        read_csv(tmp_path / "d.csv", "label", max_bytes=1.5)


def test_the_command_line_names_the_flag_that_raises_max_bytes(tmp_path, capsys):
    from sgdinfluence.app.cli import main

    path = csv_bomb(tmp_path / "bomb.csv.gz", OPENERS[0][1])
    assert main(["cleanse", str(path), "--label-column", "label", "--max-bytes", str(LIMIT),
                 "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "more than the --max-bytes limit of 65,536 bytes" in err and \
        "raise --max-bytes if you trust" in err
    with pytest.raises(SystemExit):
        main(["cleanse", "--help"])
    assert "(default: 4294967296 bytes, 4 GiB)" in " ".join(capsys.readouterr().out.split())
