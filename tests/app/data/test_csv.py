"""Users' CSV files as they come: delimiters, encodings, compression, line ends, and the
malformed ones, each read correctly or refused with a DataError that names the file."""

import bz2
import gzip
import io
import lzma
import zipfile

import numpy as np
import pytest
from PIL import Image

from sgdinfluence.app.data import load_data
from sgdinfluence.app.data.files import Table, read_csv
from sgdinfluence.errors import DataError

HEADER = ["num", "price", "city", "label"]
ROWS = [["1", "0.5", "Orléans", "yes"], ["2", "1.5", "Zürich", "no"],
        ["3", "2.5", "Nice", "yes"], ["4", "3.5", "Orléans", "no"],
        ["5", "4.5", "Zürich", "yes"], ["6", "5.5", "Nice", "no"]]


def text(sep=",", newline="\n", header=HEADER, rows=ROWS):
    return "".join(sep.join(r) + newline for r in [header, *rows])


def utf8(*args, **kwargs):
    return text(*args, **kwargs).encode()


def zipped(data, names=("d.csv",)):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.writestr(name, data)
    return buffer.getvalue()


def png():
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG")
    return buffer.getvalue()


def regression(n=50):
    return utf8(rows=[[str(i), "0.5", "Nice", f"{100 + i * 1.37:.2f}"] for i in range(n)])


def one_class_per_row(n=300):
    return utf8(rows=[[str(i), "0.5", "Nice", f"id{i}"] for i in range(n)])


# file name, its bytes, what it must read as: (first column name, label of row 0) or an error
READ = [
    ("comma.csv", utf8(), None),
    ("semicolon.csv", utf8(";"), None),
    ("tab.csv", utf8("\t"), None),
    ("pipe.csv", utf8("|"), None),
    ("tab.tsv", utf8("\t"), None),
    ("spaces.csv", utf8(", "), None),
    ("latin1.csv", text().encode("latin-1"), None),
    ("cp1252.csv", text().replace("Nice", "Nice’s").encode("cp1252"), None),
    ("bom.csv", b"\xef\xbb\xbf" + utf8(), None),
    ("utf16.csv", text().encode("utf-16"), None),
    ("utf16be.csv", b"\xfe\xff" + text().encode("utf-16-be"), None),
    ("crlf.csv", utf8(newline="\r\n"), None),
    ("cr.csv", utf8(newline="\r"), None),
    ("crlf-bom-semicolon.csv", b"\xef\xbb\xbf" + utf8(";", "\r\n"), None),
    ("gzip.csv.gz", gzip.compress(utf8()), None),
    ("gzip.tsv.gz", gzip.compress(utf8("\t")), None),
    ("bzip2.csv.bz2", bz2.compress(utf8()), None),
    ("xz.csv.xz", lzma.compress(utf8()), None),
    ("zip.csv.zip", zipped(utf8()), None),
    ("gzip-named.csv", gzip.compress(utf8()), None),
    ("excel-sep.csv", b"sep=;\r\n" + utf8(";", "\r\n"), None),
    ("trailing-delimiter.csv", utf8().replace(b"\n", b",\n").replace(b"label,\n", b"label\n"),
     None),
    ("quoted.csv", utf8().replace(b"Nice", b'"Nice, France"'), None),
    ("blank-lines.csv", utf8().replace(b"\n", b"\n\n"), None),
]
REFUSED = [
    ("empty.csv", b"", "is empty"),
    ("blank.csv", b" \n\n", "is empty"),
    ("header-only.csv", b"num,price,city,label\n", "has a header but no data rows"),
    ("duplicate.csv", utf8(header=["num", "price", "num", "label"]),
     "duplicate column names ['num']"),
    ("ragged.csv", utf8().replace(b"2.5,Nice", b"2.5,Nice,9"),
     "Expected 4 fields in line 4, saw 5"),
    ("ragged-first.csv", utf8().replace(b"Orl\xc3\xa9ans,yes", b"Orl\xc3\xa9ans,yes,9", 1),
     "line 2 has 5 fields but the header has 4"),
    ("unclosed-quote.csv", utf8().replace(b"Nice", b'"Nice', 1), "EOF inside string"),
    ("junk.csv", np.random.default_rng(0).bytes(2000), "is not a text file"),
    ("image.csv", png(), "is a PNG image, not a CSV file"),
    ("utf16-no-bom.csv", text().encode("utf-16-le"), "UTF-16 needs a byte-order mark"),
    ("truncated.csv.gz", gzip.compress(utf8())[:-10], "looks gzip-compressed but cannot be"),
    ("two-files.csv.zip", zipped(utf8(), ["a.csv", "b.csv"]), "zip archive of 2 files"),
    ("regression.csv", regression(), "holds numbers that are not whole (e.g. 101.37 in row 1):"
                                     " it looks like a regression target"),
    ("one-class-per-row.csv", one_class_per_row(), "holds 300 distinct values in 300 rows"),
    ("float32-overflow.csv", utf8().replace(b"2.5", b"1e300"),
     "column 'price' holds numbers too large for float32 (at most 3.4e+38): 1e+300 in 1 row "
     "([2]); rescale the column (divide it by a power of ten, say) or drop it with "
     "drop_columns"),
    ("no-label.csv", utf8(header=["num", "price", "city", "Label "]),
     "no label column 'label'; the columns are ['num', 'price', 'city', 'Label ']; did you "
     "mean 'Label '?"),
]


@pytest.mark.parametrize("name, data", [(n, d) for n, d, _ in READ], ids=[n for n, *_ in READ])
def test_unusual_csv_files_are_read_correctly(tmp_path, name, data):
    (tmp_path / name).write_bytes(data)
    t = load_data(str(tmp_path / name), "label")["all"]
    assert t.X.shape == (6, 2 + 3) and t.X.dtype == np.float32
    assert list(t.rows.columns) == HEADER  # no BOM, no "sep=" line, no trailing empty column
    assert t.classes == ["no", "yes"] and [t.classes[c] for c in t.y] == ["yes", "no"] * 3
    np.testing.assert_array_equal(t.X[:, :2], [[i, i - 0.5] for i in range(1, 7)])
    city = t.rows["city"].tolist()
    assert city[1] == "Zürich" and city[0] == "Orléans"  # accents decoded, whatever the bytes
    assert city[2] == {"cp1252.csv": "Nice’s", "quoted.csv": "Nice, France"}.get(name, "Nice")
    np.testing.assert_array_equal(t.index, np.arange(6))


@pytest.mark.parametrize("name, data, message", REFUSED, ids=[n for n, *_ in REFUSED])
def test_malformed_csv_files_are_refused_naming_the_file(tmp_path, name, data, message):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(DataError) as error:
        load_data(str(tmp_path / name), "label")
    assert str(tmp_path / name) in str(error.value) and message in str(error.value)
    assert "\n" not in str(error.value).strip()


def test_a_directory_named_like_a_csv_file_is_refused(tmp_path):
    (tmp_path / "x.csv").mkdir()
    for call in (lambda: load_data(str(tmp_path / "x.csv"), "label"),
                 lambda: load_data(str(tmp_path / "x.csv")),
                 lambda: read_csv(tmp_path / "x.csv", "label")):
        with pytest.raises(DataError, match=f"{tmp_path / 'x.csv'}: is a directory"):
            call()


def test_a_compressed_csv_without_a_label_column_asks_for_one(tmp_path):
    for name in ("d.csv.gz", "d.tsv.gz", "d.csv.bz2", "d.csv.zip", "d.csv.xz", "d.txt"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(DataError, match=f"{tmp_path / name}: a CSV file needs a label "
                                            "column: set label_column"):
            load_data(str(tmp_path / name))
    (tmp_path / "d.dat").write_bytes(utf8())
    with pytest.raises(DataError, match="d.dat: is not a CSV file"):
        load_data(str(tmp_path / "d.dat"))
    assert load_data(str(tmp_path / "d.dat"), "label")["all"].X.shape == (6, 5)


def test_decimal_commas_and_numeric_labels(tmp_path):
    rows = [[str(i), f"{i},25", "Nice", f"{i % 3 * 5}.0"] for i in range(12)]
    (tmp_path / "d.csv").write_text(text(";", rows=rows))
    t = read_csv(tmp_path / "d.csv", "label")
    np.testing.assert_allclose(t.X[:, 1], np.arange(12) + 0.25)
    assert t.classes == ["0", "5", "10"]  # whole floats read as integers, in numeric order
    assert t.y.tolist() == [i % 3 for i in range(12)]


def test_numbers_pandas_leaves_as_text(tmp_path):
    # beyond uint64: pandas keeps the column as text; digits other than 0-9 stay text
    (tmp_path / "d.csv").write_text("big;digits;label\n99999999999999999999999;١,٥;x\n"
                                    "2;٣;y\n3;٣;x\n", encoding="utf-8")
    t = read_csv(tmp_path / "d.csv", "label")
    np.testing.assert_allclose(t.X[:, 0], [1e23, 2, 3], rtol=1e-6)
    assert t.X[:, 1:].tolist() == [[1, 0], [0, 1], [0, 1]]  # one-hot '١,٥', '٣'


# --- fuzz: a few hundred mangled files, each read into a valid Table or refused --------------

SEEDS = [
    utf8(),
    utf8(";", "\r\n", rows=[[str(i), f"{i},5", '"a; b"' if i % 2 else "c", str(i % 3)]
                            for i in range(8)]),
    "\n".join(["x1\tx2\tlabel"] + [f"{i}\t{i * 0.1:.1f}\t{'ab'[i % 2]}"
                                   for i in range(10)]).encode(),
]


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One random byte-level, line-level or encoding change of ``data``."""
    n = max(len(data), 1)
    i, j = sorted(rng.integers(0, n + 1, 2))
    kind = rng.integers(12)
    pick = lambda options: options[rng.integers(len(options))]  # noqa: E731
    if kind == 0:  # delete bytes
        return data[:i] + data[j:]
    if kind == 1:  # insert random bytes
        return data[:i] + rng.bytes(int(rng.integers(1, 8))) + data[i:]
    if kind == 2:  # duplicate a chunk
        return data[:j] + data[i:j] + data[j:]
    if kind == 3:  # truncate
        return data[:i]
    if kind == 4:  # inject a quote, a NUL, a delimiter or a line end
        return data[:i] + pick([b'"', b"\x00", b",", b";", b"\t", b"|", b"\r", b"\n",
                                      b"'", b"\xef\xbb\xbf"]) + data[i:]
    lines = data.split(b"\n")
    a, b = rng.integers(0, len(lines), 2)
    if kind == 5:  # swap two lines
        lines[a], lines[b] = lines[b], lines[a]
    elif kind == 6:  # delete a line
        del lines[a]
    elif kind == 7:  # duplicate a line
        lines.insert(b, lines[a])
    elif kind == 8:  # another delimiter, in one line or everywhere
        old, new = pick([b",", b";", b"\t", b"|"]), pick([b",", b";", b"\t", b"|"])
        if rng.random() < 0.5:
            lines[a] = lines[a].replace(old, new)
        else:
            return data.replace(old, new)
    elif kind == 9:  # a field more or less
        lines[a] = lines[a] + b",1" if rng.random() < 0.5 else lines[a].rpartition(b",")[0]
    elif kind == 10:  # another encoding
        decoded = data.decode("utf-8", errors="replace")
        encoding = pick(["utf-16", "utf-16-le", "utf-8-sig", "latin-1", "cp1252",
                               "utf-32"])
        return decoded.encode(encoding, errors="replace")
    else:  # compressed, perhaps truncated
        packed = pick([gzip.compress, bz2.compress, lzma.compress, zipped])(data)
        return packed[:int(rng.integers(len(packed) // 2, len(packed) + 1))]
    return b"\n".join(lines)


def check_table(t: Table) -> None:
    assert t.X.dtype == np.float32 and t.X.ndim == 2 and np.isfinite(t.X).all()
    assert t.y.dtype == np.int64 and len(t.X) == len(t.y) == len(t.index) == len(t.rows) > 0
    assert len(t.classes) >= 2 and t.y.min() >= 0 and t.y.max() < len(t.classes)


def test_fuzzed_csv_files_are_read_or_refused_never_crash(tmp_path):
    rng = np.random.default_rng(0)
    crashes, read = [], 0
    for k in range(400):
        data = SEEDS[k % len(SEEDS)]
        for _ in range(rng.integers(1, 4)):
            data = mutate(data, rng)
        path = tmp_path / f"f{k}.csv"
        path.write_bytes(data)
        try:
            check_table(read_csv(path, "label"))
            read += 1
        except DataError as e:
            if str(path) not in str(e):
                crashes.append((k, data[:60], f"message without the path: {e}"))
        except Exception as e:  # noqa: BLE001 - every other exception is a bug of the reader
            crashes.append((k, data[:60], f"{type(e).__name__}: {e}"))
    assert not crashes, "\n".join(map(repr, crashes))
    assert 40 < read < 360  # the mutations neither all break nor all spare the files
