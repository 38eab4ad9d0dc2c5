"""The dataset registry and its loaders on the real files (``$SGDINFLUENCE_DATA``, else shared
data)."""

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from sgdinfluence.app import data
from sgdinfluence.app.data import sources

ROOT = Path(os.environ.get("SGDINFLUENCE_DATA", "/work/shared/data"))
FILES = {
    "adult": ("adult", ["adult.data.gz", "adult.test.gz"]),
    "20news": ("20newsgroups", ["20news-bydate.tar.gz"]),
    "mnist-1v7": ("mnist", [f for split in ("train", "test") for f in sources.MNIST_FILES[split]]),
}


@pytest.fixture(scope="module")
def loaded():
    """Each dataset loaded at most once for the module."""
    cache = {}

    def get(name):
        folder, files = FILES[name]
        if not all((ROOT / folder / f).is_file() for f in files):
            pytest.skip(f"{name} files not in {ROOT / folder}")
        if name not in cache:
            tables = data.load(name, ROOT)
            cache[name] = (tables["train"].X, tables["train"].y, tables["test"].X,
                           tables["test"].y)
        return cache[name]

    return get


def test_adult(loaded):
    X_train, y_train, X_test, y_test = loaded("adult")
    assert X_train.shape[0] == y_train.shape[0] == 30162
    assert X_test.shape[0] == y_test.shape[0] == 15060
    assert X_train.shape[1] == X_test.shape[1] == 104
    assert X_train.dtype == X_test.dtype == np.float32
    assert y_train.dtype == y_test.dtype == np.int64
    numeric = X_train[:, : len(sources.ADULT_NUMERIC)]
    np.testing.assert_allclose(numeric.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(numeric.std(0), 1, atol=1e-3)
    onehot = X_train[:, len(sources.ADULT_NUMERIC):]
    assert set(np.unique(onehot)) == {0.0, 1.0}
    np.testing.assert_array_equal(onehot.sum(1), len(sources.ADULT_CATEGORICAL))
    assert set(np.unique(y_train)) == set(np.unique(y_test)) == {0, 1}
    assert abs(y_train.mean() - 0.249) < 0.001
    assert abs(y_test.mean() - 0.246) < 0.001


def test_newsgroups(loaded):
    X_train, y_train, X_test, y_test = loaded("20news")
    assert X_train.shape[0] == y_train.shape[0] == 1168
    assert X_test.shape[0] == y_test.shape[0] == 777
    assert X_train.shape[1] == X_test.shape[1]
    assert X_train.dtype == X_test.dtype == np.float32
    np.testing.assert_array_equal(np.bincount(y_train), [590, 578])
    np.testing.assert_array_equal(np.bincount(y_test), [392, 385])
    for X in (X_train, X_test):
        assert np.isfinite(X).all() and (X >= 0).all()
        norms = np.linalg.norm(X, axis=1)
        assert (norms > 0).mean() > 0.95  # the rest were emptied by stripping
        np.testing.assert_allclose(norms[norms > 0], 1, atol=1e-5)


def test_mnist_binary(loaded):
    X_train, y_train, X_test, y_test = loaded("mnist-1v7")
    assert X_train.shape == (13007, 784) and X_test.shape == (2163, 784)
    assert X_train.dtype == np.float32 and y_train.dtype == np.int64
    assert X_train.min() == 0 and X_train.max() == 1
    np.testing.assert_array_equal(np.bincount(y_train), [6742, 6265])
    np.testing.assert_array_equal(np.bincount(y_test), [1135, 1028])


def test_each_name_means_one_thing():
    if not (ROOT / "mnist").is_dir():
        pytest.skip(f"MNIST not in {ROOT}")
    ten, binary = data.load("mnist", ROOT), data.load("mnist-1v7", ROOT)
    assert ten["train"].X.shape == (60000, 1, 28, 28) and len(ten["train"].classes) == 10
    assert binary["train"].X.shape == (13007, 784) and binary["train"].classes == ["1", "7"]
    assert data.load_data("mnist", root=ROOT)["test"].X.shape == (10000, 1, 28, 28)


def test_unknown_name():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'.*digits.*mnist-1v7"):
        data.load("cifar")


@pytest.mark.parametrize("name", sorted(FILES))
def test_missing_files_offline(name, tmp_path):
    folder, files = FILES[name]
    with pytest.raises(FileNotFoundError) as err:
        data.load(name, tmp_path / "nowhere")
    message = str(err.value)
    assert str(tmp_path / "nowhere" / folder) in message
    for f in files:
        assert f in message
    assert not list((tmp_path / "nowhere" / folder).glob(".*.part"))


def test_fetch_gzips_uncompressed_download(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    (source / "table.data").write_bytes(b"1, a, >50K\n")
    (path,) = sources.fetch(tmp_path / "cache", ["table.data.gz"], source.as_uri() + "/",
                         gzip_locally=True)
    assert path == tmp_path / "cache" / "table.data.gz"
    with gzip.open(path, "rb") as f:
        assert f.read() == b"1, a, >50K\n"
    assert not list(path.parent.glob(".*.part"))
