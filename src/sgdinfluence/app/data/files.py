"""Labelled data from the built-in datasets and from users' files: CSV, .npz, image folders.

Everything arrives as a :class:`Table`: features ``X`` (N, D) or images (N, C, H, W) float32,
class indices ``y`` (N,), the class names, and for every instance where it came from (the row
of the input file, or the position in the dataset, and the file name of an image), so that a
report can point a person back at the instance.
"""

from __future__ import annotations

import bz2
import codecs
import collections
import csv
import gzip
import io
import lzma
import math
import os
import re
import tarfile
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from torch.utils.data import Dataset

from ...errors import ConfigError, DataError

MAX_CATEGORIES = 100  # a text column with more distinct values is refused, not one-hot encoded
CSV_SUFFIXES = (".csv", ".tsv", ".txt")
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zip", ".xz")  # as pandas infers them
COMPRESSION_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"),
                     (b"PK\x03\x04", "zip"), (b"PK\x05\x06", "zip"))
NOT_CSV_MAGIC = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
                 (b"GIF87a", "a GIF image"), (b"GIF89a", "a GIF image"),
                 (b"%PDF-", "a PDF document"),
                 (b"\xd0\xcf\x11\xe0", "an Excel 97 workbook (or another old Office file)"))
DELIMITERS = (",", ";", "\t", "|")
SAMPLE_CHARS = 1 << 16  # the delimiter is guessed from the first 64 k characters
CONTROL_CHARS = tuple(chr(c) for c in (*range(9), *range(14, 32), 127))  # not \t \n \v \f \r
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm"}


MISSING = ("refuse", "drop", "impute")  # what a CSV reader does with empty cells
MISSING_CATEGORY = "(missing)"  # the category an empty text cell gets under missing='impute'


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
    ``sep_line`` (Excel's ``sep=`` first line). ``stamp`` (size, mtime) of a file when read;
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
    stamp: tuple[int, int] | None = None
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


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def read_csv(path: str | os.PathLike, label_column: str, drop_columns=(),
             missing: str = "refuse") -> Table:
    """A CSV file with a header; ``label_column`` holds the labels, ``drop_columns`` are not
    features (identifiers, say). Numeric columns are used as they are, text columns with at
    most ``MAX_CATEGORIES`` values are one-hot encoded.

    Empty cells (and pandas' other missing markers: ``NA``, ``NaN``, ``null``, ...), by
    ``missing``: "refuse" raises a :class:`DataError` naming the rows and columns; "drop"
    drops those rows, with a warning saying how many; "impute" fills a numeric column's with
    its median over the whole file (before any train/test split) and a text column's with the
    category ``"(missing)"``. A missing label is never imputed: refused, or dropped under
    "drop". Infinite values are always refused. ``Table.index`` stays the row in the file.

    What is read: a file compressed as gzip, bzip2, xz or zip (one file inside); the
    delimiter comma, semicolon, tab or pipe, guessed from the first 64 kB (a ``.tsv`` is
    tab-separated, and an Excel ``sep=;`` first line is obeyed); UTF-8 with or without a BOM,
    UTF-16 or UTF-32 with a BOM, and any other bytes as Windows-1252 (Latin-1 where
    Windows-1252 has no character), so a file that is not UTF-8 is read as Western European
    text; CRLF, LF or CR line ends; decimal commas where the delimiter is not a comma.
    Everything else (a file that is not text, duplicate column names, rows with more fields
    than the header, no data rows, a label column that is not a set of classes) raises a
    :class:`DataError` whose message names the file.
    """
    path = Path(path)
    _check_missing(missing)
    frame, sep, skip = _csv_frame(path)
    where = str(path)
    _check_label_column(frame, label_column, where)
    unknown = [c for c in drop_columns if c not in frame.columns]
    if unknown:
        raise DataError(f"{path}: no columns {unknown} to drop; the columns are "
                        f"{list(frame.columns)}")
    features = [c for c in frame.columns if c != label_column and c not in drop_columns]
    if not features:
        raise DataError(f"{path}: no feature columns besides the label {label_column!r}")
    numbers, texts = {}, {}
    for col in features:
        values = _numbers(frame[col], sep, where, col)
        if values is not None:
            numbers[col] = values
            continue
        if frame[col].nunique() > MAX_CATEGORIES:
            raise DataError(f"{path}: column {col!r} holds {frame[col].nunique()} distinct text "
                            f"values, too many to one-hot encode (at most {MAX_CATEGORIES}); "
                            "drop it or encode it as numbers")
        texts[col] = frame[col]
    keep = _missing_rows(frame[label_column], numbers, texts, missing, where, label_column)
    medians = {}
    for col, v in numbers.items():
        present = v[keep][~np.isnan(v[keep])]
        medians[col] = float(np.median(present)) if len(present) else math.nan
    categories = {col: tuple(sorted(set(v[keep].fillna(MISSING_CATEGORY).astype(str))))
                  for col, v in texts.items()}
    width = sum(len(categories[c]) if c in categories else 1 for c in features)
    schema = Schema("csv", str(path), (width,),
                    len(frame), label_column, tuple(drop_columns), tuple(map(str, frame.columns)),
                    tuple(features), categories, medians, missing, sep, skip > 0, _stamp(path))
    kept = frame.iloc[keep]
    y, classes = _csv_classes(_label_values(kept[label_column], label_column, where),
                              label_column, where)
    X = _encode({c: v[keep] for c, v in numbers.items()},
                {c: v[keep] for c, v in texts.items()}, schema, missing, where)
    return Table(X.astype(np.float32), y, classes, np.flatnonzero(keep), rows=kept,
                 schema=schema)


def _check_missing(missing: str) -> None:
    if missing not in MISSING:
        raise ConfigError(f"missing must be one of {list(MISSING)}, got {missing!r}")


def _csv_frame(path: Path, **options) -> tuple[pd.DataFrame, str, int]:
    """(the table, its delimiter, the lines skipped before the header) of a CSV file;
    ``options`` go to pandas' reading of the data rows."""
    text, data, encoding = _read_text(path)
    skip, sep = _excel_sep_line(text)
    sample = _sample(text)
    if sep is None:
        sep = "\t" if _csv_suffix(path) == ".tsv" else _sniff_delimiter(sample, skip)
    return _read_frame(path, text, sample, data, sep, skip, encoding, **options), sep, skip


def _numbers(values: pd.Series, sep: str, where: str, col) -> np.ndarray | None:
    """A column's values as float64 (NaN where empty) where it holds numbers (a decimal comma
    allowed where the delimiter is not a comma); None where it holds text. A column of
    mostly numbers with some text is refused."""
    if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
        values = _decimal_commas(values) if sep != "," else values
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return values.to_numpy(np.float64)
    numeric = pd.to_numeric(values, errors="coerce")
    text_values = values[numeric.isna() & values.notna()]
    if text_values.empty and values.notna().any():  # numbers pandas left as text (huge)
        return numeric.to_numpy(np.float64)
    if numeric.notna().mean() >= 0.5:  # mostly numbers: the rest are errors, not categories
        raise DataError(f"{where}: column {col!r} is numeric but holds values that are not "
                        f"numbers: {sorted(set(text_values.astype(str)))[:5]} (rows "
                        f"{text_values.index[:5].tolist()})")
    return None


def _rows_text(rows: np.ndarray) -> str:
    """Up to 10 row numbers, and the count."""
    more = f" and {len(rows) - 10} more" if len(rows) > 10 else ""
    return f"{len(rows)} row{'s' if len(rows) != 1 else ''} ({rows[:10].tolist()}{more})"


def _missing_rows(labels: pd.Series, numbers: dict[str, np.ndarray], texts: dict[str, pd.Series],
                  missing: str, where: str, label_column: str) -> np.ndarray:
    """The mask (n,) of the rows to keep under the policy ``missing``, after refusing
    infinite values, and missing labels unless they are dropped."""
    for col, v in numbers.items():
        inf = np.flatnonzero(np.isinf(v))
        if len(inf):
            raise DataError(f"{where}: column {col!r} holds infinite values in "
                            f"{_rows_text(inf)}; replace them by finite numbers or leave the "
                            "cells empty")
    no_label = labels.isna().to_numpy()
    if no_label.any() and missing != "drop":
        raise DataError(f"{where}: the label column {label_column!r} is empty in "
                        f"{_rows_text(np.flatnonzero(no_label))}; fill in those labels, or "
                        "pass missing='drop' to drop those rows (labels are never imputed)")
    empty = {col: np.isnan(v) for col, v in numbers.items()}
    empty |= {col: v.isna().to_numpy() for col, v in texts.items()}
    if no_label.any():
        empty[label_column] = no_label
    bad = np.zeros(len(labels), dtype=bool)
    for mask in empty.values():
        bad |= mask
    columns = [c for c, mask in empty.items() if mask.any()]
    if not bad.any() or missing == "impute":
        return np.ones(len(labels), dtype=bool)
    rows = _rows_text(np.flatnonzero(bad))
    if missing == "refuse":
        raise DataError(f"{where}: missing values in {rows} (columns {columns}); pass "
                        "missing='drop' to drop those rows, or missing='impute' to fill them in "
                        f"(numbers with the column's median, text with {MISSING_CATEGORY!r})")
    warnings.warn(f"{where}: dropped {rows} with missing values (in columns {columns})",
                  stacklevel=4)
    return ~bad


def _encode(numbers: dict[str, np.ndarray], texts: dict[str, pd.Series], schema: Schema,
            missing: str, where: str) -> np.ndarray:
    """The feature matrix (n, D) float64 in the schema's order: numeric columns as they are,
    text columns one-hot over the schema's categories (a category it does not know: all
    zeros, with a warning). Under missing='impute', empty cells get the schema's median or
    the category ``"(missing)"``."""
    parts = []
    for col in schema.features:
        if col in schema.categories:
            values = texts[col]
            if missing == "impute":
                values = values.fillna(MISSING_CATEGORY)
            text = values.astype(str).to_numpy()
            cats = np.array(schema.categories[col], dtype=object)
            unseen = sorted(set(text) - set(schema.categories[col]))
            if unseen:
                warnings.warn(f"{where}: column {col!r} holds values the training data does "
                              f"not have, {unseen[:5]}{' ...' if len(unseen) > 5 else ''}; "
                              "they are encoded as none of its categories (all zeros)",
                              stacklevel=4)
            parts.append((text[:, None] == cats[None, :]).astype(np.float64))
        else:
            v = numbers[col]
            if missing == "impute" and np.isnan(v).any():
                if math.isnan(schema.medians[col]):
                    raise DataError(f"{where}: column {col!r} is empty in every row, so it has "
                                    "no median to impute; drop it with drop_columns")
                v = np.where(np.isnan(v), schema.medians[col], v)
            parts.append(v[:, None])
    return np.hstack(parts) if parts else np.empty((0, 0))


def _check_label_column(frame: pd.DataFrame, label_column: str, where: str) -> None:
    if label_column not in frame.columns:
        wanted = str(label_column).strip().lower()
        near = [c for c in frame.columns if str(c).strip().lower() == wanted]
        hint = f"; did you mean {near[0]!r}?" if near else " (set label_column to one of them)"
        raise DataError(f"{where}: no label column {label_column!r}; the columns are "
                        f"{list(frame.columns)}{hint}")


def _decimal_commas(values: pd.Series) -> pd.Series:
    """A text column whose values are all numbers, some written with a decimal comma
    (``3,14``), as float64 numbers; any other column as it is."""
    text = values.dropna().astype(str).str.strip()
    if text.empty or not text.str.fullmatch(r"[+-]?([0-9]+|[0-9]*,[0-9]+)").all():
        return values
    numbers = pd.to_numeric(text.str.replace(",", ".", regex=False))
    return pd.Series(numbers, index=values.index, dtype=np.float64)


def _csv_suffix(path: Path) -> str | None:
    """".csv", ".tsv" or ".txt" where the name ends so, before an optional compression
    suffix (``data.csv.gz``); else None."""
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if suffixes and suffixes[-1] in COMPRESSION_SUFFIXES:
        suffixes.pop()
    return suffixes[-1] if suffixes and suffixes[-1] in CSV_SUFFIXES else None


def _check_file(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"no file at {path}")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a CSV file; give the path of a CSV file")


def _read_text(path: Path) -> tuple[str, bytes, str]:
    """The file decompressed and decoded: (text, the same text as UTF-8 bytes, the
    encoding it was read with)."""
    _check_file(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from e
    raw = _decompress(raw, path)
    for magic, kind in NOT_CSV_MAGIC:
        if raw.startswith(magic):
            raise DataError(f"{path}: is {kind}, not a CSV file")
    text, encoding = _decode(raw, path)
    nul = text.find("\x00")
    if nul >= 0:
        raise DataError(f"{path}: is not a text file: it holds NUL bytes (first on line "
                        f"{text.count(chr(10), 0, nul) + 1}); a CSV file must be text (UTF-16 "
                        "needs a byte-order mark)")
    head = text[:SAMPLE_CHARS]
    control = sum(map(head.count, CONTROL_CHARS))
    if control > 0.05 * len(head):
        raise DataError(f"{path}: is not a text file: {control} of its first {len(head)} "
                        "characters are control characters")
    if not text or text.isspace():
        raise DataError(f"{path}: is empty")
    if encoding == "utf-8":
        data = raw
    elif encoding == "utf-8-sig":
        data = raw[len(codecs.BOM_UTF8):]
    else:
        data = text.encode("utf-8")
    return text, data, encoding


def _decompress(raw: bytes, path: Path) -> bytes:
    """``raw`` decompressed where its first bytes say gzip, bzip2, xz or zip, else itself."""
    kind = next((k for magic, k in COMPRESSION_MAGIC if raw.startswith(magic)), None)
    if kind is None or kind == "bzip2" and not re.match(rb"BZh[1-9](1AY&SY|\x17rE8P\x90)", raw):
        return raw  # "BZh" alone may begin a header
    try:
        if kind == "gzip":
            return gzip.decompress(raw)
        if kind == "bzip2":
            return bz2.decompress(raw)
        if kind == "xz":
            return lzma.decompress(raw)
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            names = [i.filename for i in archive.infolist()
                     if not i.is_dir() and not i.filename.startswith("__MACOSX/")]
            if "[Content_Types].xml" in names and any(n.startswith("xl/") for n in names):
                raise DataError(f"{path}: is an Excel workbook, not a CSV file; save the sheet "
                                "as CSV first")
            if len(names) != 1:
                raise DataError(f"{path}: is a zip archive of {len(names)} files "
                                f"{names[:5]}; expected exactly one CSV file inside")
            return archive.read(names[0])
    except (OSError, EOFError, ValueError, RuntimeError, NotImplementedError, zlib.error,
            lzma.LZMAError, zipfile.BadZipFile) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{path}: looks {kind}-compressed but cannot be decompressed ({e}); "
                        "the file may be truncated") from e


def _decode(raw: bytes, path: Path) -> tuple[str, str]:
    """(text, encoding): the encoding a byte-order mark names; else UTF-8 where the bytes
    are valid UTF-8, else Windows-1252 where they are valid Windows-1252, else Latin-1 (any
    bytes are)."""
    for bom, encoding in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"),
                          (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"),
                          (codecs.BOM_UTF16_BE, "utf-16")):
        if raw.startswith(bom):
            try:
                return raw.decode(encoding), encoding
            except UnicodeDecodeError as e:
                raise DataError(f"{path}: starts with a {encoding} byte-order mark but is not "
                                f"valid {encoding} (byte {e.start}: {e.reason}); save it again "
                                "as UTF-8") from e
    for encoding in ("utf-8", "cp1252"):
        try:
            return raw.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1"), "latin-1"


def _excel_sep_line(text: str) -> tuple[int, str | None]:
    """(lines to skip, delimiter) from Excel's ``sep=;`` first line, where there is one."""
    first = text[:20].splitlines()[0] if text[:20].strip() else ""
    if len(first) == 5 and first.lower().startswith("sep="):
        return 1, first[4]
    return 0, None


def _sample(text: str) -> str:
    """The first ``SAMPLE_CHARS`` characters of ``text``, cut after the last whole line."""
    if len(text) <= SAMPLE_CHARS:
        return text
    cut = max(text.rfind("\n", 0, SAMPLE_CHARS), text.rfind("\r", 0, SAMPLE_CHARS))
    return text[:cut + 1] if cut > 0 else text[:SAMPLE_CHARS]


def _sniff_delimiter(sample: str, skip: int) -> str:
    """The delimiter among ``DELIMITERS`` that splits the header into the most fields while
    splitting as many data rows as possible into as many fields (a trailing empty field
    allowed); a comma where none splits the header."""
    best, best_score = ",", (0.0, 1)
    for sep in DELIMITERS:
        try:
            rows = [r for r in csv.reader(io.StringIO(sample, newline=""), delimiter=sep,
                                          skipinitialspace=True) if r][skip:]
        except csv.Error:
            continue
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        fits = [len(r) == width or (len(r) == width + 1 and r[-1] == "") for r in rows[1:]]
        score = (round(np.mean(fits), 2) if fits else 1.0, width)
        if score > best_score:
            best, best_score = sep, score
    return best


def _read_frame(path: Path, text: str, sample: str, data: bytes, sep: str, skip: int,
                encoding: str, **extra) -> pd.DataFrame:
    """The table in ``data`` (UTF-8), after its header is checked for duplicate names;
    ``extra``: pandas options for the data rows (``dtype``, say)."""
    options = dict(sep=sep, skiprows=skip, skipinitialspace=True, index_col=False,
                   encoding="utf-8")
    how = f"with delimiter {sep!r}" + ("" if encoding.startswith("utf-8") else
                                       f" and encoding {encoding}")
    try:
        header = pd.read_csv(io.StringIO(sample), header=None, nrows=1, dtype=str,
                             keep_default_na=False, **{**options, "encoding": None})
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(io.BytesIO(data), low_memory=False, **options, **extra)
    except pd.errors.ParserWarning:  # data rows longer than the header: pandas drops the rest
        found = _first_long_row(text, sep, skip)
        where = f"line {found[0]} has {found[1]}" if found else "rows have more"
        raise DataError(f"{path}: {where} fields but the header has {len(header.columns)} "
                        f"(read {how}); give every row as many fields as the header, quoting "
                        "values that hold the delimiter") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, csv.Error) as e:
        message = " ".join(str(e).split()).replace("Error tokenizing data. C error: ", "")
        raise DataError(f"{path}: cannot be read as a table {how}: {message}; give every row "
                        "as many fields as the header, quoting values that hold the delimiter "
                        "or a line break") from e
    names = [str(n) for n in header.iloc[0]] if len(header) else []
    repeated = sorted(n for n, k in collections.Counter(names).items() if n and k > 1)
    if repeated:
        raise DataError(f"{path}: duplicate column names {repeated} (read {how}); give every "
                        "column its own name")
    if frame.empty:
        raise DataError(f"{path}: has a header but no data rows (read {how}): columns "
                        f"{list(frame.columns)[:10]}")
    return frame


def _first_long_row(text: str, sep: str, skip: int) -> tuple[int, int] | None:
    """(1-based line, field count) of the first row with more fields than the header,
    counting records as pandas does (a quoted line break does not start a line); None
    where the csv module cannot tell (it stops at a stray quote or CR, say)."""
    rows = csv.reader(io.StringIO(text, newline=""), delimiter=sep, skipinitialspace=True)
    width = None
    try:
        for line, row in enumerate(rows, start=1):
            if line <= skip or not row:
                continue
            if width is None:
                width = len(row)
            elif len(row) > width and not (len(row) == width + 1 and row[-1] == ""):
                return line, len(row)
    except csv.Error:
        pass
    return None


def _label_values(labels: pd.Series, label_column: str, where: str) -> np.ndarray:
    """The label column's values as classes: text, integers, or floats with integer values
    (as integers); fractional numbers (a regression target) are refused."""
    if pd.api.types.is_float_dtype(labels):
        values = labels.to_numpy(np.float64)
        bad = np.flatnonzero(~np.isfinite(values) | (values != np.round(values)))
        if len(bad):
            first = float(values[bad[0]])
            raise DataError(f"{where}: the label column {label_column!r} holds numbers that "
                            f"are not whole (e.g. {first!r} in row {labels.index[bad[0]]}): it "
                            "looks like a regression target, and sgdinfluence does "
                            "classification; bin the values into classes or choose another "
                            "label_column")
        labels = labels.astype(np.int64) if np.abs(values).max() < 2**62 else labels.astype(str)
    elif not (pd.api.types.is_integer_dtype(labels) or pd.api.types.is_bool_dtype(labels)):
        labels = labels.astype(str)
    return labels.to_numpy()


def _csv_classes(values: np.ndarray, label_column: str, where: str
                 ) -> tuple[np.ndarray, list[str]]:
    """Class indices (N,) and class names of the label column, which must hold at most
    max(``MAX_CATEGORIES``, N/2) distinct values."""
    count, limit = len(np.unique(values)), max(MAX_CATEGORIES, len(values) // 2)
    if count > limit:
        raise DataError(f"{where}: the label column {label_column!r} holds {count} distinct "
                        f"values in {len(values)} rows (at most {limit} classes): almost every "
                        "row is its own class; choose the label_column that holds the classes")
    return _labels(values, where)


def read_npz(path: str | os.PathLike) -> Table:
    """An ``.npz`` file holding ``X`` (N, ...) numbers and ``y`` (N,) labels (N, H, W: grey
    images, read as (N, 1, H, W)). NaN or infinite features are refused."""
    path = Path(path)
    X, labels = _npz_arrays(path, str(path))
    y, classes = _labels(labels, str(path))
    return Table(X, y, classes, np.arange(len(X)),
                 schema=Schema("npz", str(path), X.shape[1:], len(X), stamp=_stamp(path)))


def _npz_arrays(path: Path, where: str) -> tuple[np.ndarray, np.ndarray]:
    """X (N, ...) float32, finite, and the labels (N,) of an .npz file."""
    try:
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
    if labels.ndim != 1 or len(labels) != len(X):
        raise DataError(f"{where}: y must have shape ({len(X)},) to match X {X.shape}, got "
                        f"{labels.shape}")
    X = X.astype(np.float32)
    if X.ndim == 3:  # (N, H, W) grey images
        X = X[:, None]
    _check_finite(X, where)
    return X, labels


def read_image_folder(path: str | os.PathLike) -> dict[str, Table]:
    """Images in ``<split>/<class>/<file>`` (or ``<class>/<file>``: one split "all") from a
    directory or a tar archive. Returns {split: Table}, pixels scaled to [0, 1]. The images of
    a directory are checked now (readable, one size and colour) but read only when indexed
    (:class:`ImageFiles`), so training streams them; a tar archive, which cannot be read out of
    order cheaply, is read whole."""
    path = Path(path)
    X, names, split, label = _read_images(path, str(path))
    y, classes = _labels(label, str(path))
    schema = Schema("images", str(path), tuple(X.shape[1:]), len(names),
                    files=tuple(str(n) for n in names))
    return {str(s): Table(_rows(X, split == s), y[split == s], classes,
                          np.flatnonzero(split == s), names[split == s], schema=schema)
            for s in dict.fromkeys(split)}


def _read_images(path: Path, where: str
                 ) -> tuple[np.ndarray | ImageFiles, np.ndarray, np.ndarray, np.ndarray]:
    """Every image of a folder or tar archive, sorted by path: pixels (N, C, H, W) (read
    later for a directory), names (relative paths), splits and class folder names (N,)."""
    files = _image_files(path)
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
                images.append(_shape(im) if lazy else _pixels(im))
        except (OSError, ValueError, Image.DecompressionBombError):
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


def _rows(X: np.ndarray | ImageFiles, mask: np.ndarray) -> np.ndarray | ImageFiles:
    return X.subset(np.flatnonzero(mask)) if isinstance(X, ImageFiles) else X[mask]


def _shape(im: Image.Image) -> tuple[int, int, int]:
    """(C, H, W) of an image once read, from its header alone."""
    return (1 if im.mode in ("L", "1", "I;16") else 3, im.height, im.width)


def _pixels(im: Image.Image) -> np.ndarray:
    """An image as (C, H, W) float32 in [0, 1]: grey stays one channel, else RGB."""
    a = np.asarray(im.convert("L" if im.mode in ("L", "1", "I;16") else "RGB"), np.float32)
    return (a[None] if a.ndim == 2 else a.transpose(2, 0, 1)) / 255.0


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
        try:
            with Image.open(path) as im:
                a = _pixels(im)
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise DataError(f"{path}: cannot be read as an image ({e})") from e
        if a.shape != self.image_shape:
            raise DataError(f"{path}: has shape {a.shape}, the other images {self.image_shape}")
        return a


class TableDataset(Dataset):
    """A Table's instances as a map-style Dataset of (x, y), for ``fit`` to stream."""

    def __init__(self, table: Table):
        self.table = table

    def __len__(self) -> int:
        return len(self.table.y)

    def __getitem__(self, i: int):
        return self.table.X[i], int(self.table.y[i])


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


def read_path(path: Path, label_column: str | None = None, drop_columns=(),
              missing: str = "refuse") -> dict[str, Table]:
    """A path to a CSV file (``.csv``, ``.tsv`` or ``.txt``, also
    compressed: ``.csv.gz``, ``.csv.bz2``, ``.csv.zip``, ``.csv.xz``; a file of another name
    is read as CSV when ``label_column`` is given), an ``.npz`` file or an image folder (a
    directory or a tar archive). Returns {split: Table} with split "train"/"test" where the
    source has them, else one split "all". ``missing``: see :func:`read_csv` (CSV only)."""
    _check_missing(missing)
    if _csv_suffix(path):
        _check_file(path)
        if label_column is None:
            raise DataError(f"{path}: a CSV file needs a label column: set label_column to "
                            "the name of the column that holds the labels")
        return {"all": read_csv(path, label_column, drop_columns, missing)}
    if path.suffix.lower() == ".npz":
        return {"all": read_npz(path)}
    if path.is_dir() or tarfile.is_tarfile(path):
        return read_image_folder(path)
    if label_column is not None:
        return {"all": read_csv(path, label_column, drop_columns, missing)}
    raise DataError(f"{path}: is not a CSV file ({', '.join(CSV_SUFFIXES)}, also compressed "
                    f"as {', '.join(COMPRESSION_SUFFIXES)}), an .npz file, an image folder or "
                    "a tar archive of one; a CSV file of another name is read when "
                    "label_column is given")


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
              missing: str | None = None) -> Table:
    """The labelled instances of ``path`` (a target or validation file, say) read in the format
    of the data ``reference`` came from and encoded the same way, so that a model trained on
    ``reference`` can be evaluated on them. ``role`` names the file in messages
    ("target file"); ``missing`` defaults to the policy the reference was read with.

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
    missing = missing or schema.missing
    path = Path(path).expanduser()
    where = f"{role} {path}"
    if not path.exists():
        raise FileNotFoundError(f"{role}: no file or folder at {path} (looked at "
                                f"{path.resolve()})")
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
        return _csv_like(path, reference, schema, missing, where)
    if kind == "npz":
        X, labels = _npz_arrays(path, where)
        _same_shape(X.shape[1:], schema.x_shape, where, "X of shape (N, {dims})")
        builtin = schema.kind == "builtin" and np.issubdtype(labels.dtype, np.integer)
        y = _map_labels(labels, reference.classes, where, indices=builtin)
        return Table(X, y, reference.classes, np.arange(len(X)),
                     schema=replace(schema, kind="npz", source=str(path), rows=len(X),
                                    stamp=_stamp(path)))
    X, names, _, label = _read_images(path, where)
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


def _csv_like(path: Path, reference: Table, schema: Schema, missing: str, where: str) -> Table:
    """:func:`read_like` for a CSV file: the reference's columns, encoded as they were."""
    frame, sep, skip = _csv_frame(path, dtype={c: str for c in schema.categories})
    absent = [c for c in schema.columns if c not in frame.columns]
    extra = [c for c in frame.columns if c not in schema.columns]
    if absent or extra:
        what = "; ".join(f"{w} {cols[:10]}" for w, cols in (("no columns", absent),
                                                             ("extra columns", extra)) if cols)
        raise DataError(f"{where}: its columns differ from the training data's ({what}); give "
                        f"it the training data's columns {list(schema.columns)[:30]} (in any "
                        "order)")
    numbers, texts = {}, {}
    for col in schema.features:
        if col in schema.categories:
            texts[col] = frame[col]
            continue
        values = _numbers(frame[col], sep, where, col)
        if values is None:
            text = sorted(set(frame[col].dropna().astype(str)))[:5]
            raise DataError(f"{where}: column {col!r} holds text ({text}) where the training "
                            "data has numbers; give it numbers")
        numbers[col] = values
    label = str(schema.label_column)
    keep = _missing_rows(frame[label], numbers, texts, missing, where, label)
    kept = frame.iloc[keep]
    y = _map_labels(_label_values(kept[label], label, where), reference.classes, where,
                    rows=kept.index.to_numpy())
    X = _encode({c: v[keep] for c, v in numbers.items()},
                {c: v[keep] for c, v in texts.items()}, schema, missing, where)
    return Table(X.astype(np.float32), y, reference.classes,
                 np.flatnonzero(keep), rows=kept,
                 schema=replace(schema, source=str(path), rows=len(frame), missing=missing,
                                delimiter=sep, sep_line=skip > 0, stamp=_stamp(path)))


def _map_labels(values: np.ndarray, classes: list[str], where: str, indices: bool = False,
                rows: np.ndarray | None = None) -> np.ndarray:
    """Class indices (n,) of labels given by name (a number also matches a class written as
    the same number: 1 and "1.0"); with ``indices``, integer labels are the class indices
    themselves. A label that is no class is refused, naming it."""
    values = np.asarray(values)
    rows = np.arange(len(values)) if rows is None else rows
    if indices:
        bad = (values < 0) | (values >= len(classes))
        y = np.where(bad, -1, values).astype(np.int64)
    else:
        lookup = {c: i for i, c in enumerate(classes)}
        for i, c in enumerate(classes):  # numbers by value: "1", "1.0" and 1 are one class
            try:
                lookup.setdefault(repr(float(c)), i)
            except ValueError:
                pass
        found = {}
        for v in np.unique(values):
            i = lookup.get(str(v))
            if i is None and isinstance(v, (int, float, np.number)) and np.isfinite(v):
                i = lookup.get(repr(float(v)))
            found[v] = -1 if i is None else i
        y = np.array([found.get(v, -1) for v in values], dtype=np.int64)
        bad = y < 0
    if bad.any():
        unknown = sorted({str(v) for v in values[bad]})
        raise DataError(f"{where}: labels the training data does not have: {unknown[:10]} in "
                        f"{_rows_text(rows[bad])}; its classes are {classes[:20]}"
                        f"{' (integer labels are class indices)' if indices else ''}; relabel "
                        "or drop those rows")
    return y


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
      line (the images are not copied).

    A CSV or .npz file that changed since it was read is refused (the row numbers would no
    longer point at its rows)."""
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
    if not path.is_file() or _stamp(path) != schema.stamp:
        raise DataError(f"{path}: changed since it was read, so the row numbers of the results "
                        "may not point at its rows; run again on the file as it is now")
    if schema.kind == "csv":
        frame, _, _ = _csv_frame(path, dtype=str, keep_default_na=False)  # the text as it is
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

