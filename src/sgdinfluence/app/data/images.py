"""Image folders as Tables: :func:`read_image_folder` reads ``<split>/<class>/<file>`` from
a directory or a tar archive. A directory's images are read only when indexed
(:class:`~sgdinfluence.app.data.table.ImageFiles`), and :class:`TableDataset` lets training
stream them.
"""

from __future__ import annotations

import io
import os
import tarfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ...errors import DataError
from .guards import MAX_BYTES, check_max_bytes, check_name, check_regular, too_big
from .table import ImageFiles, Schema, Table, _class_values, _grey, _labels, _pixels

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm"}


def read_image_folder(path: str | os.PathLike, max_bytes: int = MAX_BYTES) -> dict[str, Table]:
    """Images in ``<split>/<class>/<file>`` (or ``<class>/<file>``: one split "all") from a
    directory or a tar archive; the splits, where there are two, must be "train" and "test"
    (a validation folder is given on its own, as a validation file). Returns {split: Table},
    pixels scaled to [0, 1]. The images of a directory are checked now (readable, one size
    and colour) but read only when indexed (:class:`ImageFiles`), so training streams them; a
    tar archive, which cannot be read out of order cheaply, is read whole: refused if its
    members hold more than ``max_bytes``, as its headers declare."""
    path = Path(path)
    check_max_bytes(max_bytes)
    check_regular(path, str(path), folder=True)
    X, names, split, label = _read_images(path, str(path), max_bytes)
    splits = sorted(map(str, set(split)))
    if len(splits) > 1 and splits != ["test", "train"]:
        raise DataError(f"{path}: split folders {splits}; expected train/ and test/ "
                        "(<split>/<class>/<file>), or class folders at the top "
                        "(<class>/<file>); rename the split folders, or give the validation "
                        "images as a validation file of their own")
    y, classes = _labels(_class_values(label, str(path), "the class folders"), str(path))
    schema = Schema("images", str(path), tuple(X.shape[1:]), len(names),
                    files=tuple(str(n) for n in names))
    return {str(s): Table(_rows(X, split == s), y[split == s], classes,
                          np.flatnonzero(split == s), names[split == s], schema=schema)
            for s in dict.fromkeys(split)}


def _read_images(path: Path, where: str, max_bytes: int
                 ) -> tuple[np.ndarray | ImageFiles, np.ndarray, np.ndarray, np.ndarray]:
    """Every image of a folder or tar archive, sorted by path: pixels (N, C, H, W) (read
    later for a directory), names (relative paths), splits and class folder names (N,)."""
    files = _image_files(path, where, max_bytes)
    if not files:
        raise DataError(f"{where}: no images found (expected <split>/<class>/<file> with one of "
                        f"{sorted(IMAGE_SUFFIXES)})")
    depth = {len(parts) for parts, _ in files}
    if len(depth) != 1 or depth.pop() not in (2, 3):
        raise DataError(f"{where}: mixed layout; expected every image at <split>/<class>/<file> "
                        "or every image at <class>/<file>")
    lazy = path.is_dir()
    images, unreadable = [], []
    for parts, read in files:
        try:
            with Image.open(path.joinpath(*parts) if lazy else io.BytesIO(read())) as im:
                if lazy and (im.mode in ("I", "F") or im.mode.startswith("I;16")):
                    _pixels(im)  # values that may be out of range: checked now, not in training
                images.append(_shape(im) if lazy else _pixels(im))
        except DataError as e:
            raise DataError(f"{where}: {'/'.join(parts)}: {e}") from None
        except (OSError, ValueError, Image.DecompressionBombError, tarfile.TarError):
            unreadable.append("/".join(parts))
    if unreadable:
        raise DataError(f"{where}: {len(unreadable)} files cannot be read as images: "
                        f"{unreadable[:10]}")
    shapes = [im if lazy else im.shape for im in images]
    if len(set(shapes)) > 1:
        first = {s: "/".join(files[i][0]) for i, s in reversed(list(enumerate(shapes)))}
        raise DataError(f"{where}: images differ in size or colour: {first}; resize them first")
    if lazy:
        X: np.ndarray | ImageFiles = ImageFiles([path.joinpath(*p) for p, _ in files],
                                                shapes[0])
    else:
        X = np.stack(images)
    names = np.array(["/".join(parts) for parts, _ in files])
    split = np.array([parts[0] if len(parts) == 3 else "all" for parts, _ in files])
    label = np.array([parts[-2] for parts, _ in files])
    return X, names, split, label


def _image_files(path: Path, where: str, max_bytes: int
                 ) -> list[tuple[tuple[str, ...], object]]:
    """(path parts below the root, a function returning the bytes) of each image, sorted.
    Refused: a named pipe or a device named like an image, a name with a line break (see
    :func:`~sgdinfluence.app.data.guards.check_name`), a tar member named outside the archive,
    and a tar archive whose members' headers declare more than ``max_bytes`` in all (checked
    as they are listed, so a compressed archive is unpacked no further)."""
    if path.is_dir():
        found = []
        for p in path.rglob("*"):
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                if check_regular(p, f"{where}: {p.relative_to(path).as_posix()}", folder=True,
                                 fix="remove it from the folder"):
                    continue  # a folder named like an image
            except FileNotFoundError:
                continue  # a dangling link
            found.append(p)
        return sorted(((check_name(p.relative_to(path).as_posix(), where, "the file name").parts,
                        p.read_bytes) for p in found), key=lambda f: f[0])
    if path.is_file() and tarfile.is_tarfile(path):
        members, total = [], 0
        try:
            tar = tarfile.open(path)
            for m in tar:
                check_name(m.name, where)
                total += m.size
                if total > max_bytes:
                    raise too_big(where, f"its members hold {total:,} bytes (up to {m.name!r}), "
                                  "more than", max_bytes)
                if m.isfile() and Path(m.name).suffix.lower() in IMAGE_SUFFIXES:
                    members.append(m)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise DataError(f"{where}: cannot be read as a tar archive ({e}); the file may be "
                            "truncated") from e
        return sorted(((check_name(m.name, where).parts, lambda m=m: tar.extractfile(m).read())
                       for m in members), key=lambda f: f[0])
    raise DataError(f"{where}: is neither a folder nor a tar archive; give an image folder "
                    "(<split>/<class>/<file>) or a tar archive of one")


def _rows(X: np.ndarray | ImageFiles, mask: np.ndarray) -> np.ndarray | ImageFiles:
    return X.subset(np.flatnonzero(mask)) if isinstance(X, ImageFiles) else X[mask]


def _shape(im: Image.Image) -> tuple[int, int, int]:
    """(C, H, W) of an image once read, from its header alone."""
    return (1 if _grey(im.mode) else 3, im.height, im.width)


class TableDataset(Dataset):
    """A Table's instances as a map-style Dataset of (x, y), for ``fit`` to stream."""

    def __init__(self, table: Table):
        self.table = table

    def __len__(self) -> int:
        return len(self.table.y)

    def __getitem__(self, i: int):
        return self.table.X[i], int(self.table.y[i])
