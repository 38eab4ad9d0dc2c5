"""What every reader of labelled data returns: a :class:`Table`, with the :class:`Schema` it
was read by, and the helpers the readers share.

Everything arrives as a :class:`Table`: features ``X`` (N, D) or images (N, C, H, W) float32,
class indices ``y`` (N,), the class names, and for every instance where it came from (the row
of the input file, or the position in the dataset, and the file name of an image), so that a
report can point a person back at the instance. The images of a folder arrive as
:class:`ImageFiles`, which reads them when indexed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from PIL import Image

from ...errors import DataError
from .guards import check_regular


@dataclass(frozen=True)
class Schema:
    """How a Table was read: enough to read a second file the same way (:func:`read_like`)
    and to write the input back without some of its rows (:func:`write_cleaned`).

    ``kind`` is "csv", "npz", "images" or "builtin"; ``source`` the path read (or the built-in
    dataset's name); ``x_shape`` one instance's shape once encoded; ``rows`` the instances in
    the input (data rows of a CSV, X's first dimension, images of a folder). For a CSV:
    ``columns`` every column in the file's order, ``features`` the feature columns in the
    order they are encoded, ``categories`` the categories of each text feature column (its
    one-hot columns, in order; every other feature column is numeric), ``medians`` each
    numeric feature column's median (over the rows used, before any split; what
    missing='impute' fills in), ``missing`` the policy it was read with, ``delimiter`` and
    ``sep_line`` (Excel's ``sep=`` first line). ``stamp`` (size, SHA-256) of a file when read
    (:func:`~sgdinfluence.app.data.guards.fingerprint`);
    ``files`` the image files of a folder (relative paths, in index order)."""

    kind: str
    source: str
    x_shape: tuple[int, ...]
    rows: int = 0
    label_column: str | None = None
    drop_columns: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)
    medians: dict[str, float] = field(default_factory=dict)
    missing: str = "refuse"
    delimiter: str = ","
    sep_line: bool = False
    stamp: tuple[int, str] | None = None
    files: tuple[str, ...] = field(default=(), repr=False)


@dataclass
class Table:
    """Labelled instances. ``index[i]`` is instance i's row in the input file (0 = the first
    data row) or its position in the dataset; ``names[i]`` its file, for images; ``schema``
    how the input was read."""

    X: np.ndarray | ImageFiles  # images of a folder are read when indexed
    y: np.ndarray
    classes: list[str]
    index: np.ndarray
    names: np.ndarray | None = None
    rows: pd.DataFrame | None = field(default=None, repr=False)  # the original columns
    notes: np.ndarray | None = None  # e.g. "flipped from 3", shown in reports
    schema: Schema | None = field(default=None, repr=False)

    @property
    def image(self) -> bool:
        return self.X.ndim == 4

    def take(self, idx: np.ndarray) -> Table:
        X = self.X.subset(idx) if isinstance(self.X, ImageFiles) else self.X[idx]
        return Table(X, self.y[idx], self.classes, self.index[idx],
                     None if self.names is None else self.names[idx],
                     None if self.rows is None else self.rows.iloc[idx],
                     None if self.notes is None else self.notes[idx], self.schema)


class ImageFiles:
    """The images of a folder as an array (N, C, H, W) of float32 in [0, 1] that reads the
    files it is indexed by (an int, a slice or an index array first); ``subset`` selects
    without reading; ``np.asarray`` reads them all."""

    ndim, dtype = 4, np.dtype(np.float32)

    def __init__(self, paths, shape: tuple[int, int, int]):
        self.paths, self.image_shape = np.asarray(paths, dtype=object), tuple(shape)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.paths), *self.image_shape)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key):
        if isinstance(key, tuple):
            first = self[key[0]]
            return first[key[1:]] if first.ndim == 3 else first[(slice(None), *key[1:])]
        if isinstance(key, (int, np.integer)):
            return self._read(self.paths[key])
        paths = self.paths[key]
        if len(paths) == 0:
            return np.empty((0, *self.image_shape), np.float32)
        return np.stack([self._read(p) for p in paths])

    def subset(self, idx) -> ImageFiles:
        return ImageFiles(self.paths[idx], self.image_shape)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        a = self[np.arange(len(self))]
        return a if dtype is None else a.astype(dtype)

    def _read(self, path) -> np.ndarray:
        check_regular(path, str(path), fix="remove it from the folder")  # swapped for a pipe?
        try:
            with Image.open(path) as im:
                a = _pixels(im)
        except DataError as e:  # a value out of range
            raise DataError(f"{path}: {e}") from None
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise DataError(f"{path}: cannot be read as an image ({e})") from e
        if a.shape != self.image_shape:
            raise DataError(f"{path}: has shape {a.shape}, the other images {self.image_shape}")
        return a


def _grey(mode: str) -> bool:
    """Whether images of PIL's ``mode`` are read as one channel."""
    return mode in ("1", "L", "I", "F") or mode.startswith("I;16")


def _pixels(im: Image.Image) -> np.ndarray:
    """An image as (C, H, W) float32 in [0, 1], scaled by the range of its mode: 8 bits by
    255; 16-bit grey (``I;16``) by 65535, and so 32-bit integers (``I``, what older Pillow
    opens 16-bit PNGs as) where they lie in 0..65535; floating point (``F``) as it is where
    it lies in [0, 1]. Grey stays one channel, any other mode becomes RGB. A 32-bit image
    outside those ranges has no range to scale by: a :class:`DataError` (without the path,
    which the caller adds)."""
    if im.mode == "I" or im.mode.startswith("I;16"):
        a = np.asarray(im)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise DataError(f"an integer image (mode {im.mode}) with values in [{a.min()}, "
                            f"{a.max()}], outside 0 to 65535; save it with 8 or 16 bits")
        return a[None].astype(np.float32) / 65535
    if im.mode == "F":
        a = np.asarray(im, np.float32)
        if a.size and not (a.min() >= 0 and a.max() <= 1):  # NaN is neither
            raise DataError(f"a floating-point image (mode F) with values in [{a.min():g}, "
                            f"{a.max():g}], outside [0, 1]; scale it to [0, 1] or save it with "
                            "8 or 16 bits")
        return a[None]
    a = np.asarray(im.convert("L" if _grey(im.mode) else "RGB"), np.float32)
    return (a[None] if a.ndim == 2 else a.transpose(2, 0, 1)) / 255.0


FLOAT32_MAX = float(np.finfo(np.float32).max)  # features are float32: beyond this, infinite
WHOLE = re.compile(r"[+-]?[0-9]{1,18}")
NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
NOT_WHOLE = "bin the values into classes"  # the fix for a regression target


def _class_values(values: np.ndarray, where: str, what: str = "the labels",
                  fix: str = NOT_WHOLE, rows: np.ndarray | None = None,
                  training: bool = True) -> np.ndarray:
    """Labels (N,) as the values that name their classes, by one rule for every reader and for
    :func:`read_like`: integers and booleans as they are, floats with whole values as
    integers, and text as it is, except text that spells a number, which is named by its value
    (``1``, ``1.0``, ``"1"``, ``"1.0"`` and ``"01"`` are the class "1"; ``"2.50"`` and
    ``2.5`` the class "2.5"). Refused: NaN or infinite numbers, complex numbers, and in
    training data floats that are not whole: a regression target (``what`` names the labels,
    ``fix`` the way out; ``rows`` number them in messages)."""
    values = np.asarray(values)
    rows = np.arange(len(values)) if rows is None else np.asarray(rows)
    if values.dtype.kind == "c":
        raise DataError(f"{where}: {what} holds complex numbers; give every instance its class")
    if values.dtype.kind in "biu":
        return values
    if values.dtype.kind == "f":
        bad = ~np.isfinite(values)
        if bad.any():
            raise DataError(f"{where}: {what} holds NaN or infinite values in "
                            f"{_rows_text(rows[bad])}; give every instance its class")
        fractional = np.flatnonzero(values != np.round(values))
        if training and len(fractional):
            i = fractional[0]
            raise DataError(f"{where}: {what} holds numbers that are not whole (e.g. "
                            f"{float(values[i])!r} in row {rows[i]}): it looks like a regression "
                            f"target, and sgdinfluence does classification; {fix}")
        if not len(fractional) and (not len(values) or np.abs(values).max() < 2**53):
            return values.astype(np.int64)
        names, inverse = np.unique(values, return_inverse=True)
        return np.array([_number_name(float(v)) for v in names])[inverse.reshape(-1)]
    names, inverse = np.unique(values.astype(str), return_inverse=True)
    return np.array([_class_name(v) for v in names], dtype=str)[inverse.reshape(-1)]


def _number_name(v: float) -> str:
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)


def _class_name(text: str) -> str:
    """A text label's class: the number it spells (1.0, 01: "1"), else itself."""
    t = text.strip()
    if WHOLE.fullmatch(t):
        return str(int(t))
    if NUMBER.fullmatch(t) and math.isfinite(float(t)):
        return _number_name(float(t))
    return text


def _labels(values: np.ndarray, source: str) -> tuple[np.ndarray, list[str]]:
    """Class indices (N,) and class names of labels as :func:`_class_values` gives them."""
    classes, y = np.unique(values, return_inverse=True)
    if len(classes) < 2:
        raise DataError(f"{source}: the labels hold a single class ({str(classes[0])!r}); "
                        "cleansing needs at least two")
    return y.astype(np.int64).reshape(-1), [str(c) for c in classes]


def _map_labels(values: np.ndarray, classes: list[str], where: str, indices: bool = False,
                rows: np.ndarray | None = None, what: str = "the labels") -> np.ndarray:
    """Class indices (n,) of labels given by name, named by the rule of
    :func:`_class_values` (so 1, "1.0" and "01" all find the class "1"); with ``indices``,
    integer labels are the class indices themselves. A label that is no class is refused,
    naming it."""
    values = np.asarray(values)
    rows = np.arange(len(values)) if rows is None else rows
    if indices:
        bad = (values < 0) | (values >= len(classes))
        y = np.where(bad, -1, values).astype(np.int64)
    else:
        values = _class_values(values, where, what, rows=rows, training=False)
        lookup = {c: i for i, c in enumerate(classes)}
        names, inverse = np.unique(values, return_inverse=True)
        y = np.array([lookup.get(str(v), -1) for v in names], np.int64)[inverse.reshape(-1)]
        bad = y < 0
    if bad.any():
        unknown = sorted({str(v) for v in values[bad]})
        raise DataError(f"{where}: labels the training data does not have: {unknown[:10]} in "
                        f"{_rows_text(rows[bad])}; its classes are {classes[:20]}"
                        f"{' (integer labels are class indices)' if indices else ''}; relabel "
                        "or drop those rows")
    return y


def _rows_text(rows: np.ndarray) -> str:
    """Up to 10 row numbers, and the count."""
    more = f" and {len(rows) - 10} more" if len(rows) > 10 else ""
    return f"{len(rows)} row{'s' if len(rows) != 1 else ''} ({rows[:10].tolist()}{more})"
