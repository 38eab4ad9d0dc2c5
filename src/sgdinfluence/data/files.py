"""Labelled data from the built-in datasets and from users' files: CSV, .npz, image folders.

Everything arrives as a :class:`Table`: features ``X`` (N, D) or images (N, C, H, W) float32,
class indices ``y`` (N,), the class names, and for every instance where it came from (the row
of the input file, or the position in the dataset, and the file name of an image), so that a
report can point a person back at the instance.
"""

from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..errors import DataError
from . import data_dir, fetch, mnist

MAX_CATEGORIES = 100  # a text column with more distinct values is refused, not one-hot encoded
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm"}
CIFAR_JPEG = ("cifar10-jpeg", "CIFAR-10-images-jpg.tar.gz")
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/"
FASHION_CLASSES = ("T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                   "sneaker", "bag", "ankle boot")
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck")


@dataclass
class Table:
    """Labelled instances. ``index[i]`` is instance i's row in the input file (0 = the first
    data row) or its position in the dataset; ``names[i]`` its file, for images."""

    X: np.ndarray
    y: np.ndarray
    classes: list[str]
    index: np.ndarray
    names: np.ndarray | None = None
    rows: pd.DataFrame | None = field(default=None, repr=False)  # the original columns
    notes: np.ndarray | None = None  # e.g. "flipped from 3", shown in reports

    @property
    def image(self) -> bool:
        return self.X.ndim == 4

    def take(self, idx: np.ndarray) -> Table:
        return Table(self.X[idx], self.y[idx], self.classes, self.index[idx],
                     None if self.names is None else self.names[idx],
                     None if self.rows is None else self.rows.iloc[idx],
                     None if self.notes is None else self.notes[idx])


def _labels(values: np.ndarray, source: str) -> tuple[np.ndarray, list[str]]:
    classes, y = np.unique(np.asarray(values), return_inverse=True)
    if len(classes) < 2:
        raise DataError(f"{source}: the labels hold a single class ({str(classes[0])!r}); "
                        "cleansing needs at least two")
    return y.astype(np.int64), [str(c) for c in classes]


def _check_finite(X: np.ndarray, source: str, columns: list[str] | None = None) -> None:
    bad = ~np.isfinite(X.reshape(len(X), -1))
    if bad.any():
        rows, cols = np.nonzero(bad)
        where = (f"column {columns[cols[0]]!r}" if columns else f"feature {cols[0]}")
        raise DataError(f"{source}: {bad.any(1).sum()} instances have NaN or infinite features "
                        f"(first: row {rows[0]}, {where}); fill or drop them first")


def read_csv(path: str | os.PathLike, label_column: str) -> Table:
    """A CSV file with a header; ``label_column`` holds the labels. Numeric columns are used
    as they are, text columns with at most ``MAX_CATEGORIES`` values are one-hot encoded."""
    path = Path(path)
    frame = pd.read_csv(path, skipinitialspace=True)
    if label_column not in frame.columns:
        raise DataError(f"{path}: no label column {label_column!r}; the columns are "
                        f"{list(frame.columns)} (set label_column to one of them)")
    if frame[label_column].isna().any():
        rows = np.flatnonzero(frame[label_column].isna().to_numpy())
        raise DataError(f"{path}: the label column {label_column!r} is empty in rows "
                        f"{rows[:10].tolist()}")
    y, classes = _labels(frame[label_column].astype(str).to_numpy(), str(path))
    features = frame.drop(columns=[label_column])
    if features.shape[1] == 0:
        raise DataError(f"{path}: no feature columns besides the label {label_column!r}")
    parts, names = [], []
    for col in features.columns:
        values = features[col]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            parts.append(values.to_numpy(np.float64)[:, None])
            names.append(str(col))
            continue
        numeric = pd.to_numeric(values, errors="coerce")
        text = values[numeric.isna() & values.notna()]
        if numeric.notna().mean() >= 0.5:  # mostly numbers: the rest are errors, not categories
            raise DataError(f"{path}: column {col!r} is numeric but holds values that are not "
                            f"numbers: {sorted(set(text.astype(str)))[:5]} (rows "
                            f"{text.index[:5].tolist()})")
        if values.nunique() > MAX_CATEGORIES:
            raise DataError(f"{path}: column {col!r} holds {values.nunique()} distinct text "
                            f"values, too many to one-hot encode (at most {MAX_CATEGORIES}); "
                            "drop it or encode it as numbers")
        if values.isna().any():
            raise DataError(f"{path}: column {col!r} is empty in rows "
                            f"{np.flatnonzero(values.isna().to_numpy())[:10].tolist()}")
        onehot = pd.get_dummies(values.astype(str), prefix=str(col), prefix_sep="=")
        parts.append(onehot.to_numpy(np.float64))
        names += list(onehot.columns)
    X = np.hstack(parts)
    _check_finite(X, str(path), names)
    return Table(X.astype(np.float32), y, classes, np.arange(len(frame)), rows=frame)


def read_npz(path: str | os.PathLike) -> Table:
    """An ``.npz`` file holding ``X`` (N, ...) numbers and ``y`` (N,) labels."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as f:
        missing = {"X", "y"} - set(f.files)
        if missing:
            raise DataError(f"{path}: expected arrays 'X' and 'y', found {sorted(f.files)}")
        X, labels = f["X"], f["y"]
    if not np.issubdtype(X.dtype, np.number) and X.dtype != bool:
        raise DataError(f"{path}: X must hold numbers, got dtype {X.dtype}")
    if labels.ndim != 1 or len(labels) != len(X):
        raise DataError(f"{path}: y must have shape ({len(X)},) to match X {X.shape}, got "
                        f"{labels.shape}")
    X = X.astype(np.float32)
    if X.ndim == 3:  # (N, H, W) grey images
        X = X[:, None]
    _check_finite(X, str(path))
    y, classes = _labels(labels, str(path))
    return Table(X, y, classes, np.arange(len(X)))


def read_image_folder(path: str | os.PathLike) -> dict[str, Table]:
    """Images in ``<split>/<class>/<file>`` (or ``<class>/<file>``: one split "all") from a
    directory or a tar archive. Returns {split: Table}, pixels scaled to [0, 1]."""
    path = Path(path)
    files = _image_files(path)
    if not files:
        raise DataError(f"{path}: no images found (expected <split>/<class>/<file> with one of "
                        f"{sorted(IMAGE_SUFFIXES)})")
    depth = {len(parts) for parts, _ in files}
    if len(depth) != 1 or depth.pop() not in (2, 3):
        raise DataError(f"{path}: mixed layout; expected every image at <split>/<class>/<file> "
                        "or every image at <class>/<file>")
    images, unreadable = [], []
    for parts, read in files:
        try:
            with Image.open(io.BytesIO(read())) as im:
                images.append(np.asarray(im.convert("RGB" if im.mode not in ("L", "1", "I;16")
                                                    else "L")))
        except OSError:
            unreadable.append("/".join(parts))
    if unreadable:
        raise DataError(f"{path}: {len(unreadable)} files cannot be read as images: "
                        f"{unreadable[:10]}")
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        first = {s: "/".join(files[i][0]) for i, s in reversed(list(enumerate(
            im.shape for im in images)))}
        raise DataError(f"{path}: images differ in size or colour: {first}; resize them first")
    X = np.stack(images).astype(np.float32) / 255.0
    X = X[:, None] if X.ndim == 3 else X.transpose(0, 3, 1, 2)
    names = np.array(["/".join(parts) for parts, _ in files])
    split = np.array([parts[0] if len(parts) == 3 else "all" for parts, _ in files])
    label = np.array([parts[-2] for parts, _ in files])
    y, classes = _labels(label, str(path))
    return {str(s): Table(X[split == s], y[split == s], classes, np.flatnonzero(split == s),
                          names[split == s]) for s in dict.fromkeys(split)}


def _image_files(path: Path) -> list[tuple[tuple[str, ...], object]]:
    """(path parts below the root, a function returning the bytes) of each image, sorted."""
    if path.is_dir():
        found = [p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        return sorted(((p.relative_to(path).parts, p.read_bytes) for p in found),
                      key=lambda f: f[0])
    if path.is_file() and tarfile.is_tarfile(path):
        tar = tarfile.open(path)
        members = [m for m in tar.getmembers()
                   if m.isfile() and Path(m.name).suffix.lower() in IMAGE_SUFFIXES]
        return sorted(((Path(m.name).parts, lambda m=m: tar.extractfile(m).read())
                       for m in members), key=lambda f: f[0])
    raise FileNotFoundError(f"no image folder or tar archive at {path}")


def flip_labels(y: np.ndarray, rate: float, num_classes: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric label noise: round(rate·n) distinct instances get a uniformly random other
    class. Returns the noisy labels (n,) and the sorted flipped indices (m,)."""
    if not 0 < rate < 1:
        raise ValueError(f"noise rate must lie in (0, 1), got {rate}")
    if num_classes < 2:
        raise ValueError(f"need at least 2 classes, got {num_classes}")
    flipped = np.sort(rng.choice(len(y), size=round(rate * len(y)), replace=False))
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + rng.integers(1, num_classes, len(flipped))) % num_classes
    return noisy, flipped


# --- built-in datasets: {"train": Table, "test": Table} (digits: one split "all") ---------

def digits(root=None) -> dict[str, Table]:
    """scikit-learn's 1,797 8x8 digit images (no download), as (N, 1, 8, 8) in [0, 1]."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    return {"all": Table(X, y.astype(np.int64), [str(c) for c in range(10)], np.arange(len(X)))}


def _idx(name: str, classes):
    def load(root=None) -> dict[str, Table]:
        out = {}
        for split in ("train", "test"):
            X, y = mnist(split, root, name=name)
            out[split] = Table(X, y, list(classes), np.arange(len(X)))
        return out
    load.__doc__ = f"{name} from its IDX files in <data dir>/{name}/, (N, 1, 28, 28) in [0, 1]."
    return load


def cifar10(root=None) -> dict[str, Table]:
    """CIFAR-10 from ``<data dir>/cifar10-jpeg/CIFAR-10-images-jpg.tar.gz`` (image folders),
    else from the official python archive in ``<data dir>/cifar10/`` (downloaded if online)."""
    jpeg = data_dir(root).joinpath(*CIFAR_JPEG)
    if jpeg.is_file():
        return read_image_folder(jpeg)
    (archive,) = fetch(data_dir(root) / "cifar10", ["cifar-10-python.tar.gz"], CIFAR_URL)
    import pickle

    out = {}
    with tarfile.open(archive) as tar:
        for split, names in (("train", [f"data_batch_{i}" for i in range(1, 6)]),
                             ("test", ["test_batch"])):
            batches = [pickle.load(tar.extractfile(f"cifar-10-batches-py/{n}"),  # noqa: S301
                                   encoding="bytes") for n in names]
            X = np.concatenate([b[b"data"] for b in batches]).reshape(-1, 3, 32, 32)
            y = np.concatenate([b[b"labels"] for b in batches]).astype(np.int64)
            out[split] = Table(X.astype(np.float32) / 255.0, y, list(CIFAR_CLASSES),
                               np.arange(len(y)))
    return out


BUILTIN = {"digits": digits, "mnist": _idx("mnist", tuple(map(str, range(10)))),
           "fashion-mnist": _idx("fashion-mnist", FASHION_CLASSES), "cifar10": cifar10}


def load_data(spec: str, label_column: str | None = None, root=None) -> dict[str, Table]:
    """A built-in dataset name, or a path to a CSV file, an ``.npz`` file or an image folder
    (a directory or a tar archive). Returns {split: Table} with split "train"/"test" where
    the source has them, else one split "all"."""
    if spec in BUILTIN:
        return BUILTIN[spec](root)
    path = Path(spec).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{spec!r} is neither a built-in dataset ({sorted(BUILTIN)}) "
                                f"nor an existing file or directory (looked at {path.resolve()})")
    if path.suffix.lower() in (".csv", ".tsv", ".txt") or (path.is_file() and
                                                          label_column is not None):
        if label_column is None:
            raise DataError(f"{path}: a CSV file needs a label column: set label_column to "
                            "the name of the column that holds the labels")
        return {"all": read_csv(path, label_column)}
    if path.suffix.lower() == ".npz":
        return {"all": read_npz(path)}
    return read_image_folder(path)
