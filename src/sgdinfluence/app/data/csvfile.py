"""Users' CSV files as a :class:`~sgdinfluence.app.data.table.Table`: :func:`read_csv`, and
:func:`_csv_like`, the CSV case of :func:`~sgdinfluence.app.data.files.read_like`.

A file is read in steps: decompressed (gzip, bzip2, xz, zip), decoded (a byte-order mark, else
UTF-8, Windows-1252, Latin-1), its delimiter guessed, its rows read by pandas and checked; then
numeric columns are used as they are, text columns one-hot encoded, and empty cells refused,
dropped or imputed (``missing``).
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
import warnings
import zipfile
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import ConfigError, DataError
from .guards import MAX_BYTES, check_max_bytes, check_regular, fingerprint, read_bounded
from .table import (
    FLOAT32_MAX,
    NOT_WHOLE,
    Schema,
    Table,
    _class_values,
    _labels,
    _map_labels,
    _rows_text,
)

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

MISSING = ("refuse", "drop", "impute")  # what a CSV reader does with empty cells
MISSING_CATEGORY = "(missing)"  # the category an empty text cell gets under missing='impute'


def read_csv(path: str | os.PathLike, label_column: str, drop_columns=(),
             missing: str = "refuse", max_bytes: int = MAX_BYTES) -> Table:
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
    text; CRLF, LF or CR line ends; decimal commas where the delimiter is not a comma. A file
    that holds, or decompresses to, more than ``max_bytes`` bytes is refused (see
    :mod:`~sgdinfluence.app.data.guards`), having read no more than that.
    Everything else (a file that is not text, duplicate column names, rows with more fields
    than the header, no data rows, a label column that is not a set of classes) raises a
    :class:`DataError` whose message names the file.
    """
    path = Path(path)
    _check_missing(missing)
    check_max_bytes(max_bytes)
    _check_file(path)
    stamp = fingerprint(path, str(path), max_bytes)
    frame, sep, skip = _csv_frame(path, max_bytes)
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
                    tuple(features), categories, medians, missing, sep, skip > 0, stamp)
    kept = frame.iloc[keep]
    labels = kept[label_column]
    values = _class_values(labels.to_numpy(), where, f"the label column {label_column!r}",
                           f"{NOT_WHOLE} or choose another label_column", labels.index.to_numpy())
    y, classes = _csv_classes(values, label_column, where)
    X = _encode({c: v[keep] for c, v in numbers.items()},
                {c: v[keep] for c, v in texts.items()}, schema, missing, where)
    return Table(X.astype(np.float32), y, classes, np.flatnonzero(keep), rows=kept,
                 schema=schema)


def _csv_like(path: Path, reference: Table, schema: Schema, missing: str, where: str,
              max_bytes: int) -> Table:
    """:func:`read_like` for a CSV file: the reference's columns, encoded as they were."""
    stamp = fingerprint(path, where, max_bytes)
    frame, sep, skip = _csv_frame(path, max_bytes, dtype={c: str for c in schema.categories})
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
    y = _map_labels(kept[label].to_numpy(), reference.classes, where,
                    rows=kept.index.to_numpy(), what=f"the label column {label!r}")
    X = _encode({c: v[keep] for c, v in numbers.items()},
                {c: v[keep] for c, v in texts.items()}, schema, missing, where)
    return Table(X.astype(np.float32), y, reference.classes,
                 np.flatnonzero(keep), rows=kept,
                 schema=replace(schema, source=str(path), rows=len(frame), missing=missing,
                                delimiter=sep, sep_line=skip > 0, stamp=stamp))


def _check_missing(missing: str) -> None:
    if missing not in MISSING:
        raise ConfigError(f"missing must be one of {list(MISSING)}, got {missing!r}")


def _csv_frame(path: Path, max_bytes: int | None, **options) -> tuple[pd.DataFrame, str, int]:
    """(the table, its delimiter, the lines skipped before the header) of a CSV file of at
    most ``max_bytes`` bytes once decompressed (None: no limit); ``options`` go to pandas'
    reading of the data rows."""
    text, data, encoding = _read_text(path, max_bytes)
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


def _missing_rows(labels: pd.Series, numbers: dict[str, np.ndarray], texts: dict[str, pd.Series],
                  missing: str, where: str, label_column: str) -> np.ndarray:
    """The mask (n,) of the rows to keep under the policy ``missing``, after refusing
    infinite values, values too large for float32, and missing labels unless they are
    dropped."""
    for col, v in numbers.items():
        inf = np.flatnonzero(np.isinf(v))
        if len(inf):
            raise DataError(f"{where}: column {col!r} holds infinite values in "
                            f"{_rows_text(inf)}; replace them by finite numbers or leave the "
                            "cells empty")
        big = np.flatnonzero(np.abs(v) > FLOAT32_MAX)
        if len(big):
            raise DataError(f"{where}: column {col!r} holds numbers too large for float32 (at "
                            f"most {FLOAT32_MAX:.2g}): {v[big[0]]:g} in {_rows_text(big)}; "
                            "rescale the column (divide it by a power of ten, say) or drop it "
                            "with drop_columns")
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
    check_regular(path, str(path))


def _read_text(path: Path, max_bytes: int | None) -> tuple[str, bytes, str]:
    """The file decompressed and decoded: (text, the same text as UTF-8 bytes, the
    encoding it was read with)."""
    _check_file(path)
    try:
        with open(path, "rb") as f:
            raw = _decompress(f, path, max_bytes)
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from e
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


def _decompress(f, path: Path, max_bytes: int | None) -> bytes:
    """The bytes of the file ``f``, decompressed where its first bytes say gzip, bzip2, xz or
    zip, read as a stream that stops past ``max_bytes``."""
    head = f.read(16)
    f.seek(0)
    kind = next((k for magic, k in COMPRESSION_MAGIC if head.startswith(magic)), None)
    if kind is None or kind == "bzip2" and not re.match(rb"BZh[1-9](1AY&SY|\x17rE8P\x90)", head):
        return read_bounded(f, max_bytes, str(path), "holds more than")  # "BZh" may begin a header
    try:
        if kind != "zip":
            opener = {"gzip": gzip.open, "bzip2": bz2.open, "xz": lzma.open}[kind]
            with opener(f, "rb") as stream:
                return read_bounded(stream, max_bytes, str(path), "decompresses to more than")
        with zipfile.ZipFile(f) as archive:
            names = [i.filename for i in archive.infolist()
                     if not i.is_dir() and not i.filename.startswith("__MACOSX/")]
            if "[Content_Types].xml" in names and any(n.startswith("xl/") for n in names):
                raise DataError(f"{path}: is an Excel workbook, not a CSV file; save the sheet "
                                "as CSV first")
            if len(names) != 1:
                raise DataError(f"{path}: is a zip archive of {len(names)} files "
                                f"{names[:5]}; expected exactly one CSV file inside")
            with archive.open(names[0]) as stream:
                return read_bounded(stream, max_bytes, str(path), "decompresses to more than")
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
