"""Users' files read by what they are (:func:`read_path`): a CSV file
(:mod:`~sgdinfluence.app.data.csvfile`), an ``.npz`` file (:func:`read_npz`, here) or an image
folder (:mod:`~sgdinfluence.app.data.images`), each as a
:class:`~sgdinfluence.app.data.table.Table`; a second file read like the first
(:func:`read_like`: a target or validation file); symmetric label noise for the experiments
(:func:`flip_labels`); and the input written back without the removed instances
(:func:`write_cleaned`).

The names other modules import from here (``Table``, ``Schema``, ``read_csv``, ``ImageFiles``,
...) are re-exported from the modules that define them.
"""

from __future__ import annotations

import math
import os
import tarfile
import warnings
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from ...errors import ConfigError, DataError
from .csvfile import (
    COMPRESSION_SUFFIXES,
    CSV_SUFFIXES,
    MISSING,
    _check_file,
    _check_missing,
    _csv_frame,
    _csv_like,
    _csv_suffix,
    read_csv,
)
from .guards import (
    MAX_BYTES,
    check_max_bytes,
    check_name,
    check_regular,
    fingerprint,
    too_big,
)
from .images import TableDataset, _read_images, read_image_folder
from .table import FLOAT32_MAX, ImageFiles, Schema, Table, _class_values, _labels, _map_labels

__all__ = ["MISSING", "ImageFiles", "Schema", "Table", "TableDataset", "cleaned_name",
           "flip_labels", "read_csv", "read_image_folder", "read_like", "read_npz", "read_path",
           "write_cleaned"]


def read_path(path: Path, label_column: str | None = None, drop_columns=(),
              missing: str = "refuse", max_bytes: int = MAX_BYTES) -> dict[str, Table]:
    """A path to a CSV file (``.csv``, ``.tsv`` or ``.txt``, also
    compressed: ``.csv.gz``, ``.csv.bz2``, ``.csv.zip``, ``.csv.xz``; a file of another name
    is read as CSV when ``label_column`` is given), an ``.npz`` file or an image folder (a
    directory or a tar archive). Returns {split: Table} with split "train"/"test" where the
    source has them, else one split "all". ``missing``: see :func:`read_csv` (CSV only);
    ``max_bytes``: the most bytes the file may expand to once decompressed (see
    :mod:`~sgdinfluence.app.data.guards`)."""
    _check_missing(missing)
    check_max_bytes(max_bytes)
    check_regular(path, str(path), folder=True)
    if _csv_suffix(path):
        _check_file(path)
        if label_column is None:
            raise DataError(f"{path}: a CSV file needs a label column: set label_column to "
                            "the name of the column that holds the labels")
        return {"all": read_csv(path, label_column, drop_columns, missing, max_bytes)}
    if path.suffix.lower() == ".npz":
        return {"all": read_npz(path, max_bytes)}
    if path.is_dir() or tarfile.is_tarfile(path):
        return read_image_folder(path, max_bytes)
    if label_column is not None:
        return {"all": read_csv(path, label_column, drop_columns, missing, max_bytes)}
    raise DataError(f"{path}: is not a CSV file ({', '.join(CSV_SUFFIXES)}, also compressed "
                    f"as {', '.join(COMPRESSION_SUFFIXES)}), an .npz file, an image folder or "
                    "a tar archive of one; a CSV file of another name is read when "
                    "label_column is given")


def read_npz(path: str | os.PathLike, max_bytes: int = MAX_BYTES) -> Table:
    """An ``.npz`` file holding ``X`` (N, ...) numbers and ``y`` (N,) labels (N, H, W: grey
    images, read as (N, 1, H, W)). NaN or infinite features are refused, and so is a file
    whose arrays (all of them: :func:`write_cleaned` copies them) take more than
    ``max_bytes``, as their headers declare before any is read."""
    path = Path(path)
    check_max_bytes(max_bytes)
    check_regular(path, str(path))
    stamp = fingerprint(path, str(path), max_bytes)
    X, labels = _npz_arrays(path, str(path), max_bytes)
    y, classes = _labels(_class_values(labels, str(path), "y"), str(path))
    return Table(X, y, classes, np.arange(len(X)),
                 schema=Schema("npz", str(path), X.shape[1:], len(X), stamp=stamp))


def _npz_arrays(path: Path, where: str, max_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """X (N, ...) float32, finite, and the labels (N,) of an .npz file; X must be (N, D),
    (N, H, W) or (N, C, H, W) with N > 0."""
    try:
        with zipfile.ZipFile(path) as z:
            _check_members(z, where, max_bytes)
        with np.load(path, allow_pickle=False) as f:
            missing = {"X", "y"} - set(f.files)
            if missing:
                raise DataError(f"{where}: expected arrays 'X' and 'y', found {sorted(f.files)}")
            X, labels = f["X"], f["y"]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{where}: cannot be read as an .npz of numeric arrays X and y ({e}); "
                        "save it with numpy.savez(path, X=..., y=...)") from e
    if not np.issubdtype(X.dtype, np.number) and X.dtype != bool:
        raise DataError(f"{where}: X must hold numbers, got dtype {X.dtype}")
    if X.dtype.kind == "c":
        raise DataError(f"{where}: X holds complex numbers; give real features (the real and "
                        "imaginary parts as two)")
    if X.ndim not in (2, 3, 4):
        raise DataError(f"{where}: X has shape {X.shape}; give X of shape (N, features), "
                        "(N, height, width) or (N, channels, height, width)")
    if len(X) == 0:
        raise DataError(f"{where}: X has no instances (shape {X.shape}); give at least two, "
                        "of two classes")
    if labels.ndim != 1 or len(labels) != len(X):
        raise DataError(f"{where}: y must have shape ({len(X)},) to match X {X.shape}, got "
                        f"{labels.shape}")
    flat = X.reshape(len(X), -1)
    if X.dtype.kind == "f" and X.dtype.itemsize > 4 and (np.abs(flat) > FLOAT32_MAX).any():
        row, col = np.argwhere(np.abs(flat) > FLOAT32_MAX)[0]
        raise DataError(f"{where}: X holds numbers too large for float32 (at most "
                        f"{FLOAT32_MAX:.2g}): {flat[row, col]:g} in row {row}, feature {col}; "
                        "rescale X (divide it by a power of ten, say)")
    X = X.astype(np.float32)
    if X.ndim == 3:  # (N, H, W) grey images
        X = X[:, None]
    _check_finite(X, where)
    return X, labels


def _check_members(z: zipfile.ZipFile, where: str, max_bytes: int) -> None:
    """Refuse an .npz with a member named outside the archive (:func:`write_cleaned` would
    write it back), arrays that would take more than ``max_bytes`` together, or a header
    that declares more data than its member holds, from the headers alone: numpy allocates
    the declared array before it reads a byte of it."""
    total = 0
    for info in z.infolist():
        check_name(info.filename, where)
        size = info.file_size  # what zipfile unpacks at most
        if info.filename.endswith(".npy"):
            with z.open(info) as f:
                version = np.lib.format.read_magic(f)
                header = (np.lib.format.read_array_header_1_0 if version == (1, 0) else
                          np.lib.format.read_array_header_2_0)  # 3.0 differs in encoding only
                shape, _, dtype = header(f)
                size, held = math.prod(shape) * dtype.itemsize, info.file_size - f.tell()
            name = info.filename.removesuffix(".npy")
            if size > max_bytes:
                raise too_big(where, f"the array {name!r} of shape {shape} and dtype {dtype} "
                              f"takes {size:,} bytes, more than", max_bytes)
            if size > held:
                raise DataError(f"{where}: the array {name!r} is truncated: its header declares "
                                f"{size:,} bytes, the file holds {held:,}; save it again")
        total += size
        if total > max_bytes:
            raise too_big(where, f"its arrays take {total:,} bytes together, more than",
                          max_bytes)


def _check_finite(X: np.ndarray, source: str, columns: list[str] | None = None) -> None:
    bad = ~np.isfinite(X.reshape(len(X), -1))
    if bad.any():
        rows, cols = np.nonzero(bad)
        where = (f"column {columns[cols[0]]!r}" if columns else f"feature {cols[0]}")
        raise DataError(f"{source}: {bad.any(1).sum()} instances have NaN or infinite features "
                        f"(first: row {rows[0]}, {where}); fill or drop them first")


# --- a second file read like the first ---------------------------------------------------------

KINDS = {"csv": "a CSV file", "npz": "an .npz file", "images": "an image folder (or tar archive)"}


def _kind(path: Path) -> str:
    """"csv", "npz" or "images": what :func:`read_path` would read ``path`` as (a file of
    another name as CSV)."""
    if _csv_suffix(path):
        return "csv"
    if path.suffix.lower() == ".npz":
        return "npz"
    if path.is_dir() or tarfile.is_tarfile(path):
        return "images"
    return "csv"


def read_like(path: str | os.PathLike, reference: Table, role: str = "second file",
              missing: str | None = None, max_bytes: int = MAX_BYTES) -> Table:
    """The labelled instances of ``path`` (a target or validation file, say) read in the format
    of the data ``reference`` came from and encoded the same way, so that a model trained on
    ``reference`` can be evaluated on them. ``role`` names the file in messages
    ("target file"); ``missing`` defaults to the policy the reference was read with;
    ``max_bytes`` bounds what the file may expand to, as for :func:`read_path`.

    - A CSV file must have the reference's columns (in any order; another delimiter,
      encoding or compression is fine): the same label column, dropped columns and feature
      columns; numeric columns must hold numbers, text columns are one-hot encoded over the
      reference's categories (a value the reference does not have: all zeros, with a
      warning naming the column and the values). Under missing='impute' empty numeric cells
      get the reference's median, so the second file is filled as the first was.
    - An ``.npz`` file must hold X with the reference's shape per instance.
    - An image folder or tar archive (every image, whatever its split folder) must hold images
      of the reference's shape (channels, height, width).
    - For a built-in dataset, an ``.npz`` file or an image folder with instances of the
      dataset's shape; integer labels of an .npz are class indices (0..C-1, as in the
      dataset's arrays), text labels and class folders are class names.

    Labels are mapped onto the reference's classes (``Table.classes`` is the reference's); a
    label the reference does not have is refused. Any mismatch raises a :class:`DataError`
    naming the file, its role, what differs and the fix; a missing path FileNotFoundError.
    """
    schema = reference.schema
    if schema is None:
        raise ConfigError("the reference table does not say how it was read (no schema); "
                          "read it with load_data")
    if missing is not None:
        _check_missing(missing)
    check_max_bytes(max_bytes)
    missing = missing or schema.missing
    path = Path(path).expanduser()
    where = f"{role} {path}"
    if not path.exists():
        raise FileNotFoundError(f"{role}: no file or folder at {path} (looked at "
                                f"{path.resolve()})")
    check_regular(path, where, folder=True)
    kind = _kind(path)
    allowed = ("npz", "images") if schema.kind == "builtin" else (schema.kind,)
    if kind not in allowed:
        training = (f"the built-in dataset {schema.source!r}" if schema.kind == "builtin" else
                    KINDS[schema.kind])
        raise DataError(f"{where}: is {KINDS[kind]} but the training data is {training}; give "
                        f"{' or '.join(KINDS[k] for k in allowed)} with instances of shape "
                        f"{schema.x_shape}" + (f" and the columns {list(schema.columns)}"
                                                if schema.kind == "csv" else ""))
    if kind == "csv":
        return _csv_like(path, reference, schema, missing, where, max_bytes)
    if kind == "npz":
        stamp = fingerprint(path, where, max_bytes)
        X, labels = _npz_arrays(path, where, max_bytes)
        _same_shape(X.shape[1:], schema.x_shape, where, "X of shape (N, {dims})")
        builtin = schema.kind == "builtin" and np.issubdtype(labels.dtype, np.integer)
        y = _map_labels(labels, reference.classes, where, indices=builtin, what="y")
        return Table(X, y, reference.classes, np.arange(len(X)),
                     schema=replace(schema, kind="npz", source=str(path), rows=len(X),
                                    stamp=stamp))
    X, names, _, label = _read_images(path, where, max_bytes)
    _same_shape(tuple(X.shape[1:]), schema.x_shape, where,
                "images of (channels, height, width) ({dims}); resize or convert them")
    y = _map_labels(label, reference.classes, where)
    return Table(X, y, reference.classes, np.arange(len(names)), names,
                 schema=replace(schema, kind="images", source=str(path), rows=len(names),
                                files=tuple(str(n) for n in names)))


def _same_shape(shape: tuple[int, ...], wanted: tuple[int, ...], where: str, fix: str) -> None:
    if tuple(shape) != tuple(wanted):
        raise DataError(f"{where}: its instances have shape {tuple(shape)}, the training "
                        f"data's {tuple(wanted)}; give "
                        f"{fix.format(dims=', '.join(map(str, wanted)))}")


# --- label noise, for the experiments ------------------------------------------------------------

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


# --- the input without the removed instances -----------------------------------------------------

CLEANED = {"csv": "cleaned.csv", "npz": "cleaned.npz", "images": "cleaned.txt"}


def cleaned_name(schema: Schema | None) -> str | None:
    """The file :func:`write_cleaned` writes for input read with ``schema`` (None for a
    built-in dataset, which gets none)."""
    return None if schema is None else CLEANED.get(schema.kind)


def write_cleaned(schema: Schema | None, removed, folder: str | os.PathLike) -> str | None:
    """Write the input read with ``schema`` without the instances ``removed`` (their
    ``Table.index``: rows of the input file, positions in the dataset) into ``folder``, in
    the input's own format; returns the file's name, None for a built-in dataset.

    - CSV: ``cleaned.csv``, every column of the kept rows with the text of the input (the
      identifier and label columns too, rows of validation and test, rows dropped for missing
      values), the input's delimiter (and ``sep=`` line), UTF-8, uncompressed;
    - .npz: ``cleaned.npz``, every array whose first dimension is the number of instances
      filtered, the others as they are (compressed if the input was);
    - image folder: ``cleaned.txt``, the kept images' paths relative to the folder, one a
      line (the images are not copied; a name with a line break is refused when the folder
      is read, so every line is one path).

    A CSV or .npz file that changed since it was read (its content hash differs) is refused:
    the row numbers would no longer point at its rows."""
    name = cleaned_name(schema)
    if name is None or schema is None:
        return None
    keep = np.ones(schema.rows, dtype=bool)
    keep[np.asarray(removed, dtype=np.int64)] = False
    dest = Path(folder) / name
    if schema.kind == "images":
        dest.write_text("".join(f"{f}\n" for f, k in zip(schema.files, keep, strict=True)
                                if k), encoding="utf-8")
        return name
    path = Path(schema.source)
    if not path.is_file() or fingerprint(path, str(path), None) != schema.stamp:
        raise DataError(f"{path}: changed since it was read, so the row numbers of the results "
                        "may not point at its rows; run again on the file as it is now")
    if schema.kind == "csv":
        # the text as it is; no max_bytes: the file is the one read within it (same hash)
        frame, _, _ = _csv_frame(path, None, dtype=str, keep_default_na=False)
        with open(dest, "w", encoding="utf-8", newline="") as f:
            if schema.sep_line:
                f.write(f"sep={schema.delimiter}\n")
            frame[keep].to_csv(f, sep=schema.delimiter, index=False, lineterminator="\n")
        return name
    _write_npz(path, keep, dest)
    return name


def _write_npz(path: Path, keep: np.ndarray, dest: Path) -> None:
    """The arrays of ``path`` with those of first dimension ``len(keep)`` filtered; an array
    of Python objects (which would need unpickling) is left out, with a warning."""
    with zipfile.ZipFile(path) as z:
        deflated = any(i.compress_type != zipfile.ZIP_STORED for i in z.infolist())
    compression = zipfile.ZIP_DEFLATED if deflated else zipfile.ZIP_STORED
    skipped = []
    with np.load(path, allow_pickle=False) as arrays, \
            zipfile.ZipFile(dest, "w", compression=compression, allowZip64=True) as out:
        for key in arrays.files:
            try:
                a = arrays[key]
            except ValueError:  # an object array
                skipped.append(key)
                continue
            if a.ndim and a.shape[0] == len(keep):
                a = a[keep]
            with out.open(f"{key}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, a, allow_pickle=False)
    if skipped:
        warnings.warn(f"{path}: the arrays {skipped} hold Python objects and are left out of "
                      f"{dest.name}", stacklevel=3)
