"""The cleaned dataset: ``cleanse`` writes the input without the removed rows, in its format."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from sgdinfluence.app import report
from sgdinfluence.app.cli import main
from sgdinfluence.app.data import load_data
from sgdinfluence.app.output import MARKER

FAST = ["--model", "logreg", "--epochs", "1", "--k", "1,2", "--methods", "sgd,random",
        "--quiet"]


@pytest.fixture(autouse=True)
def remove_two(monkeypatch):
    """k = 2 at the validation minimum, whatever one epoch learned: rows are removed."""
    monkeypatch.setattr(report, "best_k", lambda result, method: 2)


def removed(out) -> list[int]:
    scores = pd.read_csv(out / "scores.csv")
    return sorted(scores.loc[scores["removed"], "index"])


@pytest.fixture()
def semicolon_csv(tmp_path):
    X, y = load_digits(return_X_y=True)
    n = 80
    frame = pd.DataFrame(X[:n, 20:26], columns=[f"px{i}" for i in range(6)])
    frame.insert(0, "patient", [f"00{i}" for i in range(n)])  # text that looks like numbers
    frame["weight"] = [f"{v:.2f}".replace(".", ",") for v in np.linspace(1, 2, n)]  # "1,50"
    frame["shade"] = np.array(["dark", "light", "mid, grey"])[np.arange(n) % 3]  # quoted
    frame["label"] = np.where(y[:n] < 5, "low", "high")
    path = tmp_path / "digits.csv"
    frame.to_csv(path, index=False, sep=";")
    return path


def test_cleaned_csv_is_the_input_without_the_removed_rows(semicolon_csv, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["cleanse", str(semicolon_csv), "--label-column", "label", "--drop-columns",
                 "patient", *FAST, "--out", str(out)]) == 0
    assert f"wrote {out}/report.html, scores.csv, results.json, cleaned.csv (the input " \
        "without the removed rows)" in capsys.readouterr().out
    gone = removed(out)
    assert len(gone) == 2
    original = pd.read_csv(semicolon_csv, sep=";", dtype=str, keep_default_na=False)
    cleaned = pd.read_csv(out / "cleaned.csv", sep=";", dtype=str, keep_default_na=False)
    kept = [i for i in range(80) if i not in gone]  # validation and test rows included
    pd.testing.assert_frame_equal(cleaned, original.iloc[kept].reset_index(drop=True))
    assert cleaned["patient"][0] == "000" and cleaned["weight"][0] == "1,00"  # text as it was
    # read back with the tool: the same table without those rows
    before = load_data(str(semicolon_csv), "label", drop_columns=["patient"])["all"]
    after = load_data(str(out / "cleaned.csv"), "label", drop_columns=["patient"])["all"]
    assert after.schema.delimiter == ";" and after.classes == before.classes
    np.testing.assert_array_equal(after.X, before.X[kept])
    np.testing.assert_array_equal(after.y, before.y[kept])
    assert json.loads((out / "results.json").read_text())["cleaned"] == "cleaned.csv"
    assert "cleaned.csv" in json.loads((out / MARKER).read_text())["written"]


def test_a_previous_result_with_a_cleaned_file_is_replaced_but_a_users_file_is_not(
        semicolon_csv, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["cleanse", str(semicolon_csv), "--label-column", "label", *FAST, "--out", str(out)]
    assert main(argv) == 0
    first = (out / "cleaned.csv").read_bytes()
    assert main([*argv, "--overwrite"]) == 0
    assert (out / "cleaned.csv").read_bytes() == first
    (out / "cleaned-by-me.csv").write_text("mine")
    assert main([*argv, "--overwrite"]) == 1
    assert "did not write (cleaned-by-me.csv)" in capsys.readouterr().err
    assert (out / "cleaned-by-me.csv").read_text() == "mine"


def test_missing_rows_dropped_for_training_stay_in_the_cleaned_csv(tmp_path):
    X, y = load_digits(return_X_y=True)
    frame = pd.DataFrame(X[:60, 20:24], columns=list("abcd")).assign(label=y[:60] % 2)
    frame.loc[[4, 9], "a"] = np.nan
    frame.to_csv(tmp_path / "d.csv", index=False)
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="dropped 2 rows"):
        assert main(["cleanse", str(tmp_path / "d.csv"), "--label-column", "label",
                     "--missing", "drop", *FAST, "--out", str(out)]) == 0
    gone = removed(out)
    assert not set(gone) & {4, 9}  # never trained on, never removed
    cleaned = pd.read_csv(out / "cleaned.csv")
    assert len(cleaned) == 58 and cleaned["a"].isna().sum() == 2


def test_cleaned_npz_filters_every_array_of_the_instances(tmp_path):
    X, y = load_digits(return_X_y=True)
    n = 70
    np.savez_compressed(tmp_path / "d.npz", X=X[:n], y=y[:n] % 3, ids=np.arange(n) * 10,
                        weights=np.ones((n, 2)), meta=np.array([1, 2, 3]), scale=np.float64(16))
    out = tmp_path / "out"
    assert main(["cleanse", str(tmp_path / "d.npz"), *FAST, "--out", str(out)]) == 0
    gone = removed(out)
    kept = np.setdiff1d(np.arange(n), gone)
    with np.load(out / "cleaned.npz") as c:
        assert sorted(c.files) == ["X", "ids", "meta", "scale", "weights", "y"]
        np.testing.assert_array_equal(c["X"], X[kept])
        np.testing.assert_array_equal(c["y"], y[kept] % 3)
        np.testing.assert_array_equal(c["ids"], kept * 10)
        assert c["weights"].shape == (n - 2, 2)
        np.testing.assert_array_equal(c["meta"], [1, 2, 3])  # not of the instances
        assert c["scale"] == 16.0


def test_an_image_folder_gets_a_list_of_the_kept_files(tmp_path, capsys):
    X, y = load_digits(return_X_y=True)
    names = []
    for i in range(60):
        folder = tmp_path / "imgs" / str(y[i] % 2)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((X[i].reshape(8, 8) * 16).clip(0, 255).astype(np.uint8)).save(
            folder / f"{i:03d}.png")
        names.append(f"{y[i] % 2}/{i:03d}.png")
    out = tmp_path / "out"
    assert main(["cleanse", str(tmp_path / "imgs"), *FAST[:-1], "--model", "mlp", "--quiet",
                 "--out", str(out)]) == 0
    assert "cleaned.txt" in capsys.readouterr().out
    scores = pd.read_csv(out / "scores.csv")
    gone = set(scores.loc[scores["removed"], "file"])
    assert len(gone) == 2
    assert (out / "cleaned.txt").read_text().splitlines() == \
        [f for f in sorted(names) if f not in gone]
    assert sorted(p.name for p in out.iterdir()) == [  # the images are not copied
        MARKER, "cleaned.txt", "curve.png", "report.html", "results.json", "scores.csv"]


def test_a_built_in_dataset_gets_no_cleaned_file(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["cleanse", "digits", "--subset", "60", *FAST, "--out", str(out)]) == 0
    assert "no cleaned copy of a built-in dataset (scores.csv marks the removed instances)" in \
        capsys.readouterr().out
    assert not list(out.glob("cleaned*"))
    assert json.loads((out / "results.json").read_text())["cleaned"] is None


def test_an_input_changed_since_it_was_read_is_not_written_over_silently(semicolon_csv,
                                                                         tmp_path, capsys,
                                                                         monkeypatch):
    from sgdinfluence.app import cleanse

    real = cleanse.cleanse

    def edit_meanwhile(*args, **kwargs):
        result = real(*args, **kwargs)
        semicolon_csv.write_text(semicolon_csv.read_text() + "001;1;1;1;1;1;1;1,00;dark;low\n")
        return result
    monkeypatch.setattr(cleanse, "cleanse", edit_meanwhile)
    assert main(["cleanse", str(semicolon_csv), "--label-column", "label", *FAST,
                 "--out", str(tmp_path / "out")]) == 1
    assert "changed since it was read" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
