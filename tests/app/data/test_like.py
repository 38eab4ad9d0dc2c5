"""A second file read like the first (``read_like``), and the policies for missing values."""

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from sgdinfluence.app.data import load, load_data, read_like
from sgdinfluence.app.data.files import read_csv, read_image_folder, read_npz
from sgdinfluence.errors import ConfigError, DataError


def people(n=30, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id": [f"p{i:03d}" for i in range(n)],
                         "age": rng.integers(18, 80, n),
                         "income": np.round(rng.normal(50, 10, n), 2),
                         "city": np.array(["Paris", "Lyon", "Nice"])[np.arange(n) % 3],
                         "label": np.array(["no", "yes"])[np.arange(n) % 2]})


@pytest.fixture()
def reference(tmp_path):
    frame = people()
    frame.to_csv(tmp_path / "train.csv", index=False)
    return read_csv(tmp_path / "train.csv", "label", ["id"]), frame


def one_line_error(call, *parts) -> str:
    """The DataError ``call`` raises: one line holding every one of ``parts``."""
    with pytest.raises(DataError) as e:
        call()
    message = str(e.value)
    assert "\n" not in message and all(p in message for p in parts), message
    return message


def test_a_csv_is_encoded_as_the_reference_was(reference, tmp_path):
    ref, frame = reference
    rows = [7, 2, 4]  # Lyon, Nice, Lyon: no Paris at all, yet the same one-hot columns
    target = frame.iloc[rows][["label", "city", "income", "id", "age"]]  # another order
    target.to_csv(tmp_path / "target.csv", index=False, sep=";")  # another delimiter
    t = read_like(tmp_path / "target.csv", ref, "target file")
    assert t.X.shape == (3, 5) and t.classes == ref.classes == ["no", "yes"]
    np.testing.assert_array_equal(t.X, ref.X[rows])
    np.testing.assert_array_equal(t.y, ref.y[rows])
    np.testing.assert_array_equal(t.X[:, 2:], [[1, 0, 0], [0, 1, 0], [1, 0, 0]])  # Lyon Nice Paris
    np.testing.assert_array_equal(t.index, [0, 1, 2])
    assert t.schema.source == str(tmp_path / "target.csv") and t.schema.delimiter == ";"
    assert ref.take(np.array([1, 2])).schema is ref.schema  # take keeps it


def test_an_unseen_category_is_all_zeros_with_a_warning(reference, tmp_path):
    ref, frame = reference
    frame.iloc[:2].assign(city=["Rome", "Paris"]).to_csv(tmp_path / "t.csv", index=False)
    with pytest.warns(UserWarning, match=r"target file .*t\.csv: column 'city' holds values the "
                                         r"training data does not have, \['Rome'\]"):
        t = read_like(tmp_path / "t.csv", ref, "target file")
    np.testing.assert_array_equal(t.X[:, 2:], [[0, 0, 0], [0, 0, 1]])


def test_a_single_class_is_fine_and_its_labels_map_onto_the_references(reference, tmp_path):
    ref, frame = reference
    frame[frame["label"] == "yes"].to_csv(tmp_path / "t.csv", index=False)
    t = read_like(tmp_path / "t.csv", ref, "target file")
    assert (t.y == 1).all() and len(t.y) == 15


@pytest.mark.parametrize("change, parts", [
    (lambda f: f.drop(columns=["city"]), ["its columns differ", "no columns ['city']",
                                          "give it the training data's columns"]),
    (lambda f: f.assign(extra=1), ["extra columns ['extra']"]),
    (lambda f: f.drop(columns=["id"]), ["no columns ['id']"]),  # a dropped column too
    (lambda f: f.assign(income=["high"] * len(f)),
     ["column 'income' holds text (['high']) where the training data has numbers"]),
    (lambda f: f.assign(income=f["income"].astype(object).where(f.index != 3, "unknown")),
     ["column 'income' is numeric but holds values that are not numbers: ['unknown']"]),
    (lambda f: f.assign(label=["no", "maybe", "yes"] * 10),
     ["labels the training data does not have: ['maybe'] in 10 rows ([1, 4, 7",
      "its classes are ['no', 'yes']"]),
])
def test_a_csv_of_another_schema_is_refused(reference, tmp_path, change, parts):
    ref, frame = reference
    change(frame).to_csv(tmp_path / "t.csv", index=False)
    one_line_error(lambda: read_like(tmp_path / "t.csv", ref, "target file"),
                   f"target file {tmp_path / 't.csv'}: ", *parts)


def test_another_format_than_the_references_is_refused(reference, tmp_path):
    ref, _ = reference
    np.savez(tmp_path / "t.npz", X=ref.X, y=ref.y)
    one_line_error(lambda: read_like(tmp_path / "t.npz", ref, "validation file"),
                   f"validation file {tmp_path / 't.npz'}: is an .npz file but the training "
                   "data is a CSV file; give a CSV file")
    with pytest.raises(FileNotFoundError, match="target file: no file or folder at"):
        read_like(tmp_path / "nope.csv", ref, "target file")


def test_npz_like_an_npz(tmp_path):
    X, y = load_digits(return_X_y=True)
    np.savez(tmp_path / "train.npz", X=X[:40].reshape(-1, 8, 8), y=y[:40])
    ref = read_npz(tmp_path / "train.npz")
    np.savez(tmp_path / "t.npz", X=X[40:45].reshape(-1, 8, 8), y=y[40:45].astype(float))
    t = read_like(tmp_path / "t.npz", ref, "target file")  # labels 1.0 are the class "1"
    np.testing.assert_array_equal(t.X[:, 0], X[40:45].reshape(-1, 8, 8))
    assert [t.classes[i] for i in t.y] == [str(v) for v in y[40:45]]
    np.savez(tmp_path / "flat.npz", X=X[40:45], y=y[40:45])
    one_line_error(lambda: read_like(tmp_path / "flat.npz", ref, "target file"),
                   "target file", "its instances have shape (64,), the training data's "
                   "(1, 8, 8); give X of shape (N, 1, 8, 8)")


def image_folder(root, which, size=8):
    X, y = load_digits(return_X_y=True)
    for i in which:
        (root / str(y[i])).mkdir(parents=True, exist_ok=True)
        im = Image.fromarray((X[i].reshape(8, 8) * 16).clip(0, 255).astype(np.uint8))
        im.resize((size, size)).save(root / str(y[i]) / f"{i:03d}.png")
    return y


def test_an_image_folder_like_an_image_folder(tmp_path):
    y = image_folder(tmp_path / "train", range(40))
    ref = read_image_folder(tmp_path / "train")["all"]
    image_folder(tmp_path / "target", range(40, 46))
    t = read_like(tmp_path / "target", ref, "target file")
    direct = read_image_folder(tmp_path / "target")["all"]
    np.testing.assert_array_equal(np.asarray(t.X), np.asarray(direct.X))
    assert [t.classes[i] for i in t.y] == [direct.classes[i] for i in direct.y]
    assert sorted(t.classes[i] for i in t.y) == sorted(str(v) for v in y[40:46])
    image_folder(tmp_path / "big", range(40, 42), size=10)
    one_line_error(lambda: read_like(tmp_path / "big", ref, "target file"),
                   f"target file {tmp_path / 'big'}: its instances have shape (1, 10, 10), the "
                   "training data's (1, 8, 8); give images of (channels, height, width) "
                   "(1, 8, 8)")


def test_a_built_in_dataset_takes_an_npz_with_class_indices_or_images(tmp_path):
    ref = load("digits")["all"]
    assert ref.schema.kind == "builtin" and ref.schema.x_shape == (1, 8, 8)
    np.savez(tmp_path / "t.npz", X=np.asarray(ref.X[:4])[:, 0], y=np.array([3, 0, 9, 1]))
    t = read_like(tmp_path / "t.npz", ref, "target file")
    np.testing.assert_array_equal(t.y, [3, 0, 9, 1])
    np.savez(tmp_path / "bad.npz", X=np.asarray(ref.X[:2]), y=np.array([3, 10]))
    one_line_error(lambda: read_like(tmp_path / "bad.npz", ref, "target file"),
                   "labels the training data does not have: ['10']", "class indices")
    people().to_csv(tmp_path / "t.csv", index=False)
    one_line_error(lambda: read_like(tmp_path / "t.csv", ref, "target file"),
                   "is a CSV file but the training data is the built-in dataset 'digits'; give "
                   "an .npz file or an image folder (or tar archive) with instances of shape "
                   "(1, 8, 8)")


# --- missing values --------------------------------------------------------------------------

def holes(tmp_path, n=30):
    frame = people(n)
    frame.loc[[3, 5], "age"] = np.nan
    frame.loc[5, "city"] = np.nan
    frame.loc[8, "city"] = np.nan
    frame.to_csv(tmp_path / "holes.csv", index=False)
    return frame


def test_missing_values_are_refused_naming_rows_and_columns(tmp_path):
    holes(tmp_path)
    one_line_error(lambda: load_data(str(tmp_path / "holes.csv"), "label", drop_columns=["id"]),
                   f"{tmp_path / 'holes.csv'}: missing values in 3 rows ([3, 5, 8]) (columns "
                   "['age', 'city']); pass missing='drop' to drop those rows, or "
                   "missing='impute' to fill them in")
    frame = people(40)
    frame.loc[::3, "income"] = np.nan  # 14 rows: ten named, and the count
    frame.to_csv(tmp_path / "many.csv", index=False)
    one_line_error(lambda: read_csv(tmp_path / "many.csv", "label"),
                   "missing values in 14 rows ([0, 3, 6, 9, 12, 15, 18, 21, 24, 27] and 4 more)")
    with pytest.raises(ConfigError, match=r"missing must be one of \['refuse', 'drop', 'impute'\]"):
        load_data(str(tmp_path / "many.csv"), "label", missing="fill")


def test_drop_drops_the_rows_with_a_warning_and_keeps_their_numbers(tmp_path):
    frame = holes(tmp_path)
    with pytest.warns(UserWarning, match=r"dropped 3 rows \(\[3, 5, 8\]\) with missing values"):
        t = read_csv(tmp_path / "holes.csv", "label", ["id"], missing="drop")
    kept = [i for i in range(30) if i not in (3, 5, 8)]
    np.testing.assert_array_equal(t.index, kept)
    np.testing.assert_array_equal(t.X[:, 0], frame["age"][kept])
    assert t.rows["id"].tolist() == frame["id"][kept].tolist()


def test_impute_fills_the_median_and_a_missing_category(tmp_path):
    frame = holes(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = read_csv(tmp_path / "holes.csv", "label", ["id"], missing="impute")
    median = float(np.median(frame["age"].dropna()))
    assert t.schema.medians["age"] == median
    assert t.X[3, 0] == t.X[5, 0] == np.float32(median) and t.X[4, 0] == frame["age"][4]
    assert t.schema.categories["city"] == ("(missing)", "Lyon", "Nice", "Paris")
    np.testing.assert_array_equal(t.X[[5, 8, 0], 2:], [[1, 0, 0, 0], [1, 0, 0, 0],
                                                       [0, 0, 0, 1]])
    assert len(t.y) == 30 and np.isfinite(t.X).all()
    # a second file gets the reference's median, not its own
    other = people(4, seed=1)
    other.loc[0, "age"] = np.nan
    other.to_csv(tmp_path / "other.csv", index=False)
    o = read_like(tmp_path / "other.csv", t, "target file")
    assert o.X[0, 0] == np.float32(median) and o.X[1, 0] == other["age"][1]


def test_a_missing_label_is_never_imputed_and_infinity_never_accepted(tmp_path):
    frame = people()
    frame.loc[[2, 6], "label"] = np.nan
    frame.to_csv(tmp_path / "nolabel.csv", index=False)
    for missing in ("refuse", "impute"):
        one_line_error(lambda m=missing: read_csv(tmp_path / "nolabel.csv", "label", missing=m),
                       "the label column 'label' is empty in 2 rows ([2, 6]); fill in those "
                       "labels, or pass missing='drop' to drop those rows")
    with pytest.warns(UserWarning, match="dropped 2 rows"):
        assert len(read_csv(tmp_path / "nolabel.csv", "label", missing="drop").y) == 28
    people().assign(income=[np.inf] + [1.0] * 29).to_csv(tmp_path / "inf.csv", index=False)
    for missing in ("refuse", "drop", "impute"):
        one_line_error(lambda m=missing: read_csv(tmp_path / "inf.csv", "label", missing=m),
                       "column 'income' holds infinite values in 1 row ([0])")


def test_the_cli_names_the_flags(tmp_path, capsys):
    from sgdinfluence.app.cli import main

    holes(tmp_path)
    assert main(["cleanse", str(tmp_path / "holes.csv"), "--label-column", "label",
                 "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert re.search(r"pass --missing drop to drop those rows, or --missing impute to fill", err)
