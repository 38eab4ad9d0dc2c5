"""``cleanse --target`` / ``--val FILE``: a target set as the query, k chosen on data the
query never saw, and files whose schema differs refused in one line."""

import json

import numpy as np
import pandas as pd
import pytest

from sgdinfluence.app.cleanse import CleanseConfig, best_k, cleanse, split
from sgdinfluence.app.cli import main
from sgdinfluence.app.data import load_data, read_like


def backdoored(tmp_path, n=400, seed=0):
    """A separable 2-class table whose class-0 rows with x0 = x1 = 5 (a trigger) in training
    are labelled 1; the target: triggered class-0 rows with their true label."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = (X[:, 2] + X[:, 3] > 0).astype(int)
    poisoned = rng.choice(np.flatnonzero(y == 0), 16, replace=False)
    X[poisoned, :2], y[poisoned] = 5.0, 1
    cols = ["x0", "x1", "x2", "x3"]
    train = pd.DataFrame(X, columns=cols).assign(label=np.where(y, "yes", "no"))
    T = rng.normal(size=(60, 4))
    T[:, 2:] = -np.abs(T[:, 2:]) - 0.3  # class 0
    T[:, :2] = 5.0
    target = pd.DataFrame(T, columns=cols).assign(label="no")
    train.to_csv(tmp_path / "train.csv", index=False)
    target.to_csv(tmp_path / "target.csv", index=False)
    return tmp_path / "train.csv", tmp_path / "target.csv", poisoned


def test_target_is_the_query_and_k_is_chosen_on_data_it_never_saw(tmp_path):
    data, target_file, poisoned = backdoored(tmp_path)
    tables = load_data(str(data), "label")
    target = read_like(target_file, tables["all"], role="target file")
    cfg = CleanseConfig(model="mlp", epochs=10, batch_size=16, lr=0.2, ks=(8, 16, 32),
                        methods=("sgd-epochs", "random"), retrain="all")
    splits = split(tables, cfg, target=target)
    # the query half, the held-out half, validation and training share no row
    rows = {name: set(map(int, getattr(splits, name).index))
            for name in ("train", "val", "target", "target_check")}
    assert not rows["train"] & rows["val"]
    assert not rows["target"] & rows["target_check"]
    assert len(rows["target"]) + len(rows["target_check"]) == 60
    result = cleanse(splits, cfg, progress=False)
    held = result.target_curves["sgd-epochs"]
    assert held[0] > 0.5  # the trigger works on the model as trained
    k = best_k(result, "sgd-epochs")  # chosen on validation and the held-out half
    # removing the ranked rows (and retraining all) fixes the target: 3 of 30 held-out rows
    # left wrong at most, against 2 of 32 on validation, without the grid's 32 (bisection)
    assert 0 < k <= 16 and held[k] <= 0.1
    assert min(result.target_curves["random"].values()) > 0.9
    removed = result.splits.train.index[result.order("sgd-epochs")[:16]]
    assert len(set(removed) & set(poisoned)) >= 9


def test_cli_target_and_validation_files(tmp_path, capsys):
    data, target_file, _ = backdoored(tmp_path)
    frame = pd.read_csv(data)
    frame.iloc[:80].to_csv(tmp_path / "val.csv", index=False)
    frame.iloc[80:].to_csv(tmp_path / "rest.csv", index=False)
    out = tmp_path / "out"
    assert main(["cleanse", str(tmp_path / "rest.csv"), "--label-column", "label",
                 "--target", str(target_file), "--val", str(tmp_path / "val.csv"),
                 "--model", "mlp", "--epochs", "3", "--k", "4,8", "--quiet",
                 "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["sizes"]["val"] == 80 and results["sizes"]["target"] == 30
    # the default methods: auto (the kind of problem the data shows) and the random baseline
    assert set(results["curves"]) == {results["primary"], "random"}
    assert results["primary"] == results["diagnosis"]["method"]
    assert results["which_method"].startswith("Which method: this looks like")
    assert "target_error" in results["curves"][results["primary"]]["4"]
    assert "target error" in capsys.readouterr().out


@pytest.mark.parametrize("option", ["--target", "--val"])
def test_a_file_of_another_schema_is_refused_in_one_line(tmp_path, capsys, option):
    data, target_file, _ = backdoored(tmp_path)
    pd.read_csv(target_file).drop(columns="x3").to_csv(tmp_path / "bad.csv", index=False)
    out = tmp_path / "out"
    assert main(["cleanse", str(data), "--label-column", "label", option,
                 str(tmp_path / "bad.csv"), "--epochs", "1", "--quiet",
                 "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.csv" in err[0] and "x3" in err[0], err
    assert not out.exists()
