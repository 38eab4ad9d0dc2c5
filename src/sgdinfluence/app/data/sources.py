"""Readers of the published datasets in a data directory (``data_dir`` or ``$SGDINFLUENCE_DATA``).

Files are read in their published formats. A missing file is downloaded from its usual
source when the machine is online; offline, the error names the directory and the files.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tarfile
import urllib.request
from pathlib import Path

import numpy as np

from ...errors import ConfigError, DataError

ENV = "SGDINFLUENCE_DATA"

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
MNIST_URLS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}
ADULT_URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/"
ADULT_COLUMNS = (
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
    "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week",
    "native-country", "income",
)
ADULT_NUMERIC = ("age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week")
ADULT_CATEGORICAL = (
    "workclass", "education", "marital-status", "occupation", "relationship", "race", "sex",
    "native-country",
)
NEWS_URL = "https://qwone.com/~jason/20Newsgroups/"
NEWS_FILE = "20news-bydate.tar.gz"
NEWS_GROUPS = ("comp.sys.ibm.pc.hardware", "comp.sys.mac.hardware")


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """The data directory: ``path``, else ``$SGDINFLUENCE_DATA``, else a per-user cache."""
    if path is not None:
        return Path(path).expanduser()
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sgdinfluence"


def fetch(folder: Path, files: list[str], base_url: str, gzip_locally: bool = False) -> list[Path]:
    """Paths of ``files`` in ``folder``, downloading the missing ones from ``base_url``.

    With ``gzip_locally`` the ``.gz`` names in ``files`` are served uncompressed by the source:
    each is downloaded without its ``.gz`` suffix and compressed here.
    """
    missing = [f for f in files if not (folder / f).is_file()]
    for f in missing:
        tmp = folder / f".{f}.part"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if gzip_locally:
                url = base_url + f.removesuffix(".gz")
                with urllib.request.urlopen(url) as src, gzip.open(tmp, "wb") as dst:  # noqa: S310
                    shutil.copyfileobj(src, dst)
            else:
                urllib.request.urlretrieve(base_url + f, tmp)  # noqa: S310 (fixed https source)
            tmp.replace(folder / f)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise FileNotFoundError(
                f"dataset files missing in {folder}: expected {', '.join(missing)}; the download "
                f"from {base_url} failed ({e}). Put the files there, or point data_dir / "
                f"${ENV} at a directory that has them.") from e
    return [folder / f for f in files]


def read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) IDX file: the format of MNIST and Fashion-MNIST."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != np.prod(shape):
        raise DataError(f"{path} is truncated: {data.size} values for shape {shape}")
    return data.reshape(shape)


def mnist(split: str = "train", root=None, name: str = "mnist") -> tuple[np.ndarray, np.ndarray]:
    """MNIST (or ``name="fashion-mnist"``) from the IDX files in ``<data dir>/<name>/``.

    Returns images (n, 1, 28, 28) float32 in [0, 1] and labels (n,) int64.
    """
    if split not in MNIST_FILES:
        raise ConfigError(f"unknown split {split!r}; use one of {sorted(MNIST_FILES)}")
    images, labels = fetch(data_dir(root) / name, list(MNIST_FILES[split]), MNIST_URLS[name])
    X = read_idx(images).astype(np.float32)[:, None] / 255.0
    return X, read_idx(labels).astype(np.int64)


def read_adult(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a raw (gzipped) UCI Adult file without missing values ('?').

    Returns a str array (n, 14) of the attribute columns and labels (n,) int64, 1 for ">50K".
    Skips the ``|1x3 Cross validator`` comment of ``adult.test`` and the '.' after its labels.
    """
    with gzip.open(path, "rt", encoding="ascii") as f:
        rows = [[v.strip() for v in line.split(",")] for line in f
                if line.strip() and not line.startswith("|")]
    rows = [r for r in rows if "?" not in r]
    if any(len(r) != len(ADULT_COLUMNS) for r in rows):
        raise DataError(f"{path}: expected {len(ADULT_COLUMNS)} comma-separated columns")
    table = np.array(rows, dtype=str)
    y = np.char.rstrip(table[:, -1], ".") == ">50K"
    return table[:, :-1], y.astype(np.int64)


def adult(root=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """UCI Adult from ``<data dir>/adult/adult.{data,test}.gz``, rows with '?' dropped.

    Returns X_train (30162, d), y_train (30162,), X_test (15060, d), y_test (15060,):
    float32 features with the numeric columns first, standardised with the training mean and
    std, then the one-hot categorical columns (categories of the training split, unseen test
    categories all-zero); int64 labels, 1 for ">50K".
    """
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    train, test = fetch(data_dir(root) / "adult", ["adult.data.gz", "adult.test.gz"], ADULT_URL,
                        gzip_locally=True)
    A_train, y_train = read_adult(train)
    A_test, y_test = read_adult(test)
    num = [ADULT_COLUMNS.index(c) for c in ADULT_NUMERIC]
    cat = [ADULT_COLUMNS.index(c) for c in ADULT_CATEGORICAL]
    scaler = StandardScaler().fit(A_train[:, num].astype(np.float64))
    onehot = OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(A_train[:, cat])

    def features(A):
        return np.hstack([scaler.transform(A[:, num].astype(np.float64)),
                          onehot.transform(A[:, cat])]).astype(np.float32)

    return features(A_train), y_train, features(A_test), y_test


def read_newsgroups(path: Path, groups=NEWS_GROUPS) -> dict[str, tuple[list[str], np.ndarray]]:
    """Documents of ``groups`` in the bydate tarball, read without extracting it.

    Returns {"train": (texts, labels), "test": (texts, labels)}: latin-1 texts with headers,
    footers and quotes removed, sorted by group then message id; labels (n,) int64, the
    index of the document's group in ``groups``.
    """
    from sklearn.datasets._twenty_newsgroups import (
        strip_newsgroup_footer,
        strip_newsgroup_header,
        strip_newsgroup_quoting,
    )

    docs = {"train": [], "test": []}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            parts = member.name.strip("/").split("/")
            if not member.isfile() or len(parts) != 3 or parts[1] not in groups:
                continue
            split = parts[0].removeprefix("20news-bydate-")
            text = io.TextIOWrapper(tar.extractfile(member), encoding="latin-1").read()
            text = strip_newsgroup_quoting(strip_newsgroup_footer(strip_newsgroup_header(text)))
            key = (groups.index(parts[1]), int(parts[2]) if parts[2].isdigit() else parts[2])
            docs[split].append((key, text))
    out = {}
    for split, items in docs.items():
        items.sort(key=lambda item: item[0])
        out[split] = [t for _, t in items], np.array([k[0] for k, _ in items], dtype=np.int64)
    return out


def newsgroups(root=None, groups=NEWS_GROUPS) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                        np.ndarray]:
    """Two groups of 20 Newsgroups (bydate) from ``<data dir>/20newsgroups/``, as TF-IDF.

    Returns X_train (n_train, d), y_train (n_train,), X_test (n_test, d), y_test (n_test,):
    dense float32 L2-normalised TF-IDF rows (English stop words removed, terms in 0.1%-20% of
    the training documents, vocabulary and idf from the training split; an emptied document
    is a zero row) and int64 labels, the index of the group in ``groups``. The default pair
    (PC vs Mac hardware) gives 1168 train and 777 test documents.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    groups = tuple(groups)
    if len(groups) != 2 or len(set(groups)) != 2:
        raise ConfigError(f"need two distinct groups, got {groups!r}")
    (path,) = fetch(data_dir(root) / "20newsgroups", [NEWS_FILE], NEWS_URL)
    docs = read_newsgroups(path, groups)
    for split, (texts, _) in docs.items():
        if not texts:
            raise DataError(f"{path}: no {split} documents of the groups {groups}")
    tfidf = TfidfVectorizer(stop_words="english", min_df=0.001, max_df=0.20, dtype=np.float32)
    X_train = tfidf.fit_transform(docs["train"][0]).toarray()
    X_test = tfidf.transform(docs["test"][0]).toarray()
    return X_train, docs["train"][1], X_test, docs["test"][1]


def mnist_binary(root=None, digits=(1, 7)) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                     np.ndarray]:
    """MNIST restricted to two digits, flattened: the binary task of the paper (1 vs 7).

    Returns X_train (n_train, 784), y_train (n_train,), X_test (n_test, 784), y_test (n_test,):
    float32 pixels in [0, 1] and int64 labels, 0 for ``digits[0]`` and 1 for ``digits[1]``.
    For 1 vs 7: 13007 train (6742 ones, 6265 sevens) and 2163 test images.
    """
    a, b = digits
    if a == b:
        raise ConfigError(f"need two distinct digits, got {digits!r}")
    files = [f for split in ("train", "test") for f in MNIST_FILES[split]]
    fetch(data_dir(root) / "mnist", files, MNIST_URLS["mnist"])  # one error naming all four
    out = []
    for split in ("train", "test"):
        X, y = mnist(split, root)
        keep = (y == a) | (y == b)
        out += [X[keep].reshape(int(keep.sum()), -1), (y[keep] == b).astype(np.int64)]
    return tuple(out)
