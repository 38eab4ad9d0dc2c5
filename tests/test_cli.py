"""The command line end to end on small users' files, and its errors."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from sgdinfluence.cli import main


@pytest.fixture()
def cancer_csv(tmp_path):
    data = load_breast_cancer(as_frame=True)
    frame = data.frame.iloc[:300].copy()
    frame["size"] = np.where(frame["mean radius"] > 14, "large", "small")  # a text column
    frame["diagnosis"] = np.where(frame.pop("target") == 1, "benign", "malignant")
    path = tmp_path / "cancer.csv"
    frame.to_csv(path, index=False)
    return path, frame


def test_cleanse_a_csv_file(cancer_csv, tmp_path, capsys):
    path, frame = cancer_csv
    out = tmp_path / "out"
    main(["cleanse", str(path), "--label-column", "diagnosis", "--model", "logreg",
          "--epochs", "3", "--batch-size", "16", "--k", "5,20", "--out", str(out), "--quiet",
          "--methods", "sgd,training-loss,random"])
    assert capsys.readouterr().out.startswith("Removing ")
    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == 216 and scores["index"].is_unique  # 300 - 20% test - 10% val
    assert json.loads((out / "results.json").read_text())["sizes"] == {
        "train": 216, "val": 24, "test": 60}
    # every row points back at its row in the file, with its label
    rows = frame.iloc[scores["index"]]
    assert (rows["diagnosis"].to_numpy() == scores["label"].to_numpy()).all()
    html = (out / "report.html").read_text()
    assert "mean radius" in html and "most harmful training rows" in html


def test_an_existing_output_is_refused_before_any_work(cancer_csv, tmp_path):
    path, _ = cancer_csv
    (tmp_path / "out").mkdir()
    with pytest.raises(SystemExit, match="exists; pass --overwrite"):
        main(["cleanse", str(path), "--label-column", "diagnosis", "--out",
              str(tmp_path / "out")])


@pytest.mark.parametrize("args, message", [
    (["--label-column", "label"], "no label column 'label'; the columns are ['mean radius'"),
    (["--label-column", "diagnosis", "--k", "5,400"],
     "k = 400 would remove the whole training set of 216 instances"),
    ([], "a CSV file needs --label-column"),
])
def test_bad_input_fails_cleanly(cancer_csv, tmp_path, args, message):
    path, _ = cancer_csv
    with pytest.raises(SystemExit, match=__import__("re").escape(message)):
        main(["cleanse", str(path), "--out", str(tmp_path / "o"), "--quiet", *args])
    assert not (tmp_path / "o").exists()


def test_missing_data_names_the_path(tmp_path):
    with pytest.raises(SystemExit, match="neither a built-in dataset"):
        main(["cleanse", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o")])
