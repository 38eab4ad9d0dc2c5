"""Labelled data: the registry of built-in datasets, and users' files.

Every dataset, built in or read from a user's file, arrives as ``{split: Table}`` (splits
"train" and "test" where the source has them, else one split "all"; see
:class:`~sgdinfluence.app.data.table.Table`). Each name in :data:`DATASETS` means one thing:
``mnist`` is the 10-class images, ``mnist-1v7`` the binary task of the paper's Sec 7.1.
Files are read in their published formats from a data directory (``data_dir``, else
``$SGDINFLUENCE_DATA``); a missing file is downloaded when the machine is online.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import ConfigError
from . import sources
from .csvfile import MISSING
from .files import cleaned_name, read_like, read_path, write_cleaned
from .guards import MAX_BYTES
from .images import read_image_folder
from .sources import data_dir
from .table import Schema, Table

CIFAR_JPEG = ("cifar10-jpeg", "CIFAR-10-images-jpg.tar.gz")
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/"
FASHION_CLASSES = ("T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                   "sneaker", "bag", "ankle boot")
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck")


@dataclass(frozen=True)
class Dataset:
    """A built-in dataset: its loader ``root -> {split: Table}`` and a line about it."""

    name: str
    about: str
    load: Callable[..., dict[str, Table]]
    download: bool = True  # False: ships with a package, no data directory needed


def _tables(X_train, y_train, X_test, y_test, classes) -> dict[str, Table]:
    return {split: Table(X, y, list(classes), np.arange(len(X)))
            for split, X, y in (("train", X_train, y_train), ("test", X_test, y_test))}


def _digits(root=None) -> dict[str, Table]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    return {"all": Table(X, y.astype(np.int64), [str(c) for c in range(10)], np.arange(len(X)))}


def _idx(name: str, classes) -> Callable[..., dict[str, Table]]:
    def load(root=None) -> dict[str, Table]:
        return _tables(*sources.mnist("train", root, name), *sources.mnist("test", root, name),
                       classes)
    return load


def _cifar10(root=None) -> dict[str, Table]:
    jpeg = data_dir(root).joinpath(*CIFAR_JPEG)
    if jpeg.is_file():
        return read_image_folder(jpeg)
    (archive,) = sources.fetch(data_dir(root) / "cifar10", ["cifar-10-python.tar.gz"], CIFAR_URL)
    import pickle

    parts = []
    with tarfile.open(archive) as tar:
        for names in ([f"data_batch_{i}" for i in range(1, 6)], ["test_batch"]):
            batches = [pickle.load(tar.extractfile(f"cifar-10-batches-py/{n}"),  # noqa: S301
                                   encoding="bytes") for n in names]
            X = np.concatenate([b[b"data"] for b in batches]).reshape(-1, 3, 32, 32)
            y = np.concatenate([b[b"labels"] for b in batches]).astype(np.int64)
            parts += [X.astype(np.float32) / 255.0, y]
    return _tables(*parts, CIFAR_CLASSES)


DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset("digits", "scikit-learn's 1,797 8x8 digit images, (N, 1, 8, 8) in [0, 1]", _digits,
            download=False),
    Dataset("mnist", "MNIST, 60,000 + 10,000 images (N, 1, 28, 28) in [0, 1], 10 classes",
            _idx("mnist", tuple(map(str, range(10))))),
    Dataset("fashion-mnist", "Fashion-MNIST, 60,000 + 10,000 images (N, 1, 28, 28), 10 classes",
            _idx("fashion-mnist", FASHION_CLASSES)),
    Dataset("cifar10", "CIFAR-10, 50,000 + 10,000 colour images (N, 3, 32, 32), from the "
            "JPEG image folders if present, else the official archive", _cifar10),
    Dataset("adult", "UCI Adult: income > 50K from 14 attributes, standardised numeric and "
            "one-hot columns (30,162 + 15,060 rows)",
            lambda root=None: _tables(*sources.adult(root), ("<=50K", ">50K"))),
    Dataset("20news", "20 Newsgroups, PC vs Mac hardware, TF-IDF rows (1,168 + 777)",
            lambda root=None: _tables(*sources.newsgroups(root), sources.NEWS_GROUPS)),
    Dataset("mnist-1v7", "MNIST ones against sevens, flattened (the paper's Sec 7.1 task)",
            lambda root=None: _tables(*sources.mnist_binary(root), ("1", "7"))),
)}


def load(name: str, root=None) -> dict[str, Table]:
    """The built-in dataset ``name`` as {split: Table}."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; use one of {list(DATASETS)}")
    tables = DATASETS[name].load(root)
    for t in tables.values():  # even CIFAR-10 read from its image folder: a built-in dataset
        t.schema = Schema("builtin", name, tuple(t.X.shape[1:]),
                          sum(len(u.y) for u in tables.values()))
    return tables


def load_data(spec: str, label_column: str | None = None, root=None,
              drop_columns=(), missing: str = "refuse",
              max_bytes: int = MAX_BYTES) -> dict[str, Table]:
    """A built-in dataset's name, or a path to a user's file or folder (CSV, ``.npz``, image
    folder; see :func:`~sgdinfluence.app.data.files.read_path`); ``drop_columns``: CSV
    columns not to use as features; ``missing``: what to do with a CSV file's empty cells,
    "refuse", "drop" or "impute" (see :func:`~sgdinfluence.app.data.files.read_csv`);
    ``max_bytes``: the most bytes the file may expand to once decompressed, 4 GiB by default
    (see :mod:`~sgdinfluence.app.data.guards`). Every
    Table carries the :class:`Schema` it was read with, for :func:`read_like` and
    :func:`write_cleaned`."""
    if missing not in MISSING:
        raise ConfigError(f"missing must be one of {list(MISSING)}, got {missing!r}")
    if spec in DATASETS:
        return load(spec, root)
    path = Path(spec).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{spec!r} is neither a built-in dataset ({list(DATASETS)}) "
                                f"nor an existing file or directory (looked at {path.resolve()})")
    return read_path(path, label_column, drop_columns, missing, max_bytes)


__all__ = ["DATASETS", "MAX_BYTES", "MISSING", "Dataset", "Schema", "Table", "cleaned_name",
           "data_dir", "load", "load_data", "read_like", "write_cleaned"]
