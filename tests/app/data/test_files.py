"""Users' files: CSV, .npz and image folders, and the errors bad ones get."""

import re
import tarfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from sgdinfluence.app.data import load_data
from sgdinfluence.app.data.files import read_csv, read_image_folder, read_npz


def write_csv(path, n=40):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"age": rng.integers(18, 80, n), "income": rng.normal(50, 10, n),
                          "city": rng.choice(["Paris", "Lyon", "Nice"], n),
                          "label": rng.choice(["yes", "no"], n)})
    frame.to_csv(path, index=False)
    return frame


def test_csv_one_hot_encodes_text_columns_and_keeps_rows(tmp_path):
    frame = write_csv(tmp_path / "d.csv")
    t = read_csv(tmp_path / "d.csv", "label")
    assert t.X.shape == (40, 2 + 3) and t.X.dtype == np.float32
    assert t.classes == ["no", "yes"] and (np.array(t.classes)[t.y] == frame["label"]).all()
    np.testing.assert_array_equal(t.index, np.arange(40))
    np.testing.assert_allclose(t.X[:, 1], frame["income"], rtol=1e-6)
    assert t.X[:, 2:].sum(1).tolist() == [1.0] * 40  # one city each
    assert t.take(np.array([3, 5])).rows["age"].tolist() == frame["age"][[3, 5]].tolist()


@pytest.mark.parametrize("change, message", [
    (lambda f: f, "no label column 'target'; the columns are ['age', 'income', 'city', 'label']"),
    (lambda f: f.assign(income=f["income"].astype(object).where(f.index != 4, "ten")),
     "column 'income' is numeric but holds values that are not numbers: ['ten'] (rows [4])"),
    (lambda f: pd.concat([f] * 3, ignore_index=True).assign(city=[f"c{i}" for i in range(120)]),
     "column 'city' holds 120 distinct text values, too many to one-hot encode"),
    (lambda f: f.assign(income=f["income"].where(f.index != 7)),
     "missing values in 1 row ([7]) (columns ['income']); pass missing='drop' to drop those "
     "rows, or missing='impute' to fill them in"),
    (lambda f: f.assign(label="yes"), "the labels hold a single class ('yes')"),
])
def test_bad_csv_is_refused_with_a_clear_message(tmp_path, change, message):
    frame = write_csv(tmp_path / "d.csv")
    change(frame).to_csv(tmp_path / "bad.csv", index=False)
    label = "target" if "target" in message else "label"
    with pytest.raises(ValueError, match=re.escape(message)):
        read_csv(tmp_path / "bad.csv", label)


def test_npz(tmp_path):
    X, y = load_digits(return_X_y=True)
    np.savez(tmp_path / "d.npz", X=X[:50].reshape(-1, 8, 8), y=y[:50])
    t = read_npz(tmp_path / "d.npz")
    assert t.X.shape == (50, 1, 8, 8) and t.image
    np.savez(tmp_path / "bad.npz", X=X[:50], labels=y[:50])
    with pytest.raises(ValueError, match=r"expected arrays 'X' and 'y', found \['X', 'labels'\]"):
        read_npz(tmp_path / "bad.npz")


def digit_folder(root, n=30, split=True):
    X, y = load_digits(return_X_y=True)
    for i in range(n):
        folder = root / ("train" if i < 20 else "test") if split else root
        (folder / str(y[i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray((X[i].reshape(8, 8) * 16).astype(np.uint8)).save(
            folder / str(y[i]) / f"{i:03d}.png")
    return X[:n], y[:n]


def test_image_folder_from_a_directory_and_from_a_tar_archive(tmp_path):
    X, y = digit_folder(tmp_path / "imgs")
    with tarfile.open(tmp_path / "imgs.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "imgs", arcname=".")
    for source in (tmp_path / "imgs", tmp_path / "imgs.tar.gz"):
        splits = read_image_folder(source)
        assert set(splits) == {"train", "test"}
        train = splits["train"]
        assert train.X.shape == (20, 1, 8, 8) and train.image
        j = list(train.names).index(f"train/{y[0]}/000.png")
        np.testing.assert_allclose(train.X[j, 0] * 255, np.minimum(X[0].reshape(8, 8) * 16, 255),
                                   atol=1e-4)
        assert train.classes[train.y[j]] == str(y[0])
    digit_folder(tmp_path / "flat", split=False)
    assert set(read_image_folder(tmp_path / "flat")) == {"all"}


def test_unreadable_images_are_named(tmp_path):
    digit_folder(tmp_path / "imgs")
    (tmp_path / "imgs/train/0/broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"1 files cannot be read as images: "
                                         r"\['train/0/broken.png'\]"):
        read_image_folder(tmp_path / "imgs")


def test_missing_data_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a built-in dataset"):
        load_data(str(tmp_path / "nothing.csv"))



def test_a_missing_dataset_names_the_directory_it_looked_in(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("offline")
    monkeypatch.setattr("urllib.request.urlretrieve", offline)
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"dataset files missing in {tmp_path / 'empty' / 'mnist'}: expected train-images")):
        load_data("mnist", root=tmp_path / "empty")
