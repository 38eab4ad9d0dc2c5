"""cleanse's repair (issue 23): methods=auto tells label noise from a target-specific failure,
the rounds and the refined k reach results.json, scores.csv and the report, the report shows
the columns that tell the removed rows from the kept ones, and bad options fail in one line."""

import json

import numpy as np
import pandas as pd
import pytest

from sgdinfluence.app import methods, report
from sgdinfluence.app.cleanse import CleanseConfig, split, train_model, wrong
from sgdinfluence.app.cli import main
from sgdinfluence.app.data import load
from sgdinfluence.app.data.files import flip_labels
from sgdinfluence.app.diagnose import diagnose


def diagnosed(noise: float, seed: int = 0):
    """The diagnosis of an MLP trained on digits with that share of its labels flipped."""
    cfg = CleanseConfig(model="mlp", epochs=20, seed=seed)
    splits = split(load("digits"), cfg)
    if noise:
        splits.train.y, _ = flip_labels(splits.train.y, noise, 10, np.random.default_rng(seed))
    run = train_model("mlp", None, splits.train, cfg, cfg.seed)
    val = splits.val
    cache: dict = {}

    def scores(m):
        if m not in cache:
            cache[m] = methods.score(run, m, (val.X, val.y))
        return cache[m]

    return diagnose(run, splits.train, val, None, scores, wrong)


def test_auto_calls_symmetric_noise_label_noise_and_runs_the_training_loss():
    d = diagnosed(0.2)
    assert d.kind == "noise" and d.method == "training-loss"
    assert d.misfit_above and d.misfit > 0.15  # the flipped rows stay misfit
    assert len(d.misfit_classes) == 10 and max(d.misfit_classes.values()) < 0.25  # spread
    assert d.reason.startswith("Label noise: it misfits")


def test_auto_calls_clean_data_no_clear_failure_and_runs_sgd_influence():
    d = diagnosed(0.0)
    assert d.kind == "none" and d.method == "sgd"
    assert not d.misfit_above and d.explained < 0.5  # misfit 8%, validation error 7%


def wide_backdoor(tmp_path, n=800, columns=20, trigger=("x15", "x17"), seed=0):
    """A separable 2-class table of ``columns`` numeric columns; 32 class-0 rows carry a
    trigger (5 in the ``trigger`` columns) and the label 1; the target: triggered class-0
    rows with their true label. The label depends on x2 and x3 only."""
    rng = np.random.default_rng(seed)
    cols = [f"x{j}" for j in range(columns)]
    X = rng.normal(size=(n, columns))
    y = (X[:, 2] + X[:, 3] > 0).astype(int)
    poisoned = rng.choice(np.flatnonzero(y == 0), 32, replace=False)
    at = [cols.index(c) for c in trigger]
    X[np.ix_(poisoned, at)], y[poisoned] = 5.0, 1
    frame = pd.DataFrame(X, columns=cols).assign(label=np.where(y, "yes", "no"))
    frame.insert(0, "id", [f"row{i}" for i in range(n)])
    T = rng.normal(size=(200, columns))
    T[:, 2:4] = -np.abs(T[:, 2:4]) - 0.3
    T[:, at] = 5.0
    target = pd.DataFrame(T, columns=cols).assign(label="no")
    target.insert(0, "id", [f"t{i}" for i in range(200)])
    frame.to_csv(tmp_path / "train.csv", index=False)
    target.to_csv(tmp_path / "target.csv", index=False)
    return tmp_path / "train.csv", tmp_path / "target.csv", poisoned


@pytest.fixture(scope="module")
def repaired(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("repair")
    data, target, poisoned = wide_backdoor(tmp)
    out = tmp / "out"
    assert main(["cleanse", str(data), "--label-column", "label", "--drop-columns", "id",
                 "--target", str(target), "--model", "mlp", "--epochs", "10",
                 "--batch-size", "16", "--lr", "0.2", "--quiet", "--out", str(out)]) == 0
    return out, poisoned


def test_auto_calls_a_backdoor_target_specific_and_repairs_it_in_rounds(repaired):
    out, poisoned = repaired
    results = json.loads((out / "results.json").read_text())
    assert results["diagnosis"]["kind"] == "target" and results["primary"] == "sgd-epochs"
    assert results["diagnosis"]["target_above"] and results["diagnosis"]["explained"] < 0.5
    rep = results["repair"]
    assert rep["before"]["target_error"] > 0.5 and rep["after"]["target_error"] <= 0.1
    assert rep["stopped"] in ("fixed", "stalled", "no gain") and len(rep["rounds"]) >= 1
    # rows named by their row in the input file, as scores.csv names them
    train = set(pd.read_csv(out / "scores.csv")["index"])
    m = len(set(poisoned) & train)  # the poisoned rows in the training split
    assert len(set(rep["removed"]) & set(poisoned)) >= 0.6 * m
    assert results["removed"] == len(rep["removed"]) <= 2 * m  # not the paper grid's 60 or 100
    frame = pd.read_csv(out / "scores.csv")
    assert sorted(frame.loc[frame["removed"], "index"]) == sorted(rep["removed"])
    assert set(frame.loc[frame["removed"], "round"]) <= set(range(1, len(rep["rounds"]) + 1))
    assert (frame.loc[~frame["removed"], "round"] == 0).all()
    assert sum(r["k"] for r in rep["rounds"] if not r["undone"]) == len(rep["removed"])
    html = (out / "report.html").read_text()
    assert "<h2>Rounds</h2>" in html and "Which method: this looks like target-specific" in html


def test_the_report_shows_the_columns_that_explain_the_removed_rows(repaired):
    out, _ = repaired
    results = json.loads((out / "results.json").read_text())
    columns = [c["column"] for c in results["columns"]]
    assert len(columns) == 20 and set(columns[:2]) == {"x15", "x17"}  # the trigger's
    assert results["columns"][1]["distance"] > 0.4
    html = (out / "report.html").read_text()
    assert "8 columns cut for width" in html
    head = html.split("The 24 most harmful")[1].split("</thead>")[0]
    assert "<th>x15</th>" in head and "<th>x17</th>" in head and "<th>id</th>" in head
    shown = [c for c in columns[:12]]
    assert all(f"<th>{c}</th>" in head for c in shown)
    assert not any(f"<th>{c}</th>" in head for c in columns[12:])  # cut: the least telling


@pytest.mark.parametrize(("options", "message"), [
    (["--rounds", "2"], "--rounds other than 1 and --retrain fresh repair a failure on a target"),
    (["--retrain", "fresh"], "--rounds other than 1 and --retrain fresh repair a failure"),
    (["--rounds", "0"], "argument --rounds: must be >= 1, got 0"),
    (["--max-trainings", "0"], "argument --max-trainings: must be >= 1, got 0"),
    (["--methods", "auto,magic"], "unknown methods ['magic']; use some of ['auto',"),
])
def test_bad_repair_options_fail_in_one_line(tmp_path, capsys, options, message):
    out = tmp_path / "out"
    try:
        code = main(["cleanse", "digits", "--model", "logreg", "--epochs", "1", "--quiet",
                     "--out", str(out), *options])
    except SystemExit as e:  # argparse
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code in (1, 2) and len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_rounds_with_the_last_epoch_retrained_are_refused(tmp_path, capsys):
    data, target, _ = wide_backdoor(tmp_path, columns=4, trigger=("x0", "x1"))
    code = main(["cleanse", str(data), "--label-column", "label", "--drop-columns", "id",
                 "--target", str(target), "--retrain", "last", "--rounds", "3", "--epochs",
                 "1", "--quiet", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "with --retrain last use --rounds=1" in err[0], err


def test_the_summary_reports_the_rounds():
    from types import SimpleNamespace

    from sgdinfluence.core.repair import Measured, RepairConfig

    def m(val, target, test):
        v, t = np.zeros(100, bool), np.zeros(100, bool)
        v[:val], t[:target] = True, True
        return Measured(val=v, target=t, test=test)

    rounds = [SimpleNamespace(k=30, round=1, undone=False),
              SimpleNamespace(k=6, round=2, undone=False)]
    rep = SimpleNamespace(rounds=rounds, removed=np.arange(36), before=m(5, 90, 0.05),
                          after=m(5, 4, 0.049), config=RepairConfig(), why="done")
    result = SimpleNamespace(repair=rep, reliability=None, primary_method="sgd-epochs",
                             splits=SimpleNamespace(train=SimpleNamespace(y=np.zeros(900),
                                                                          image=False)))
    text = report.summary(result)
    assert text.startswith("In 2 rounds, removing 36 of 900 training rows (SGD-influence")
    assert "lowers the target error from 90.00% to 4.00% and lowers test error from 5.00% " \
        "to 4.90%. Stopped: done." in text


def test_fresh_rounds_measure_new_trainings_of_the_kept_rows(tmp_path):
    data, target, poisoned = wide_backdoor(tmp_path, columns=6, trigger=("x0", "x1"))
    out = tmp_path / "out"
    assert main(["cleanse", str(data), "--label-column", "label", "--drop-columns", "id",
                 "--target", str(target), "--retrain", "fresh", "--methods", "sgd-epochs",
                 "--model", "mlp", "--epochs", "10", "--batch-size", "16", "--lr", "0.2",
                 "--k", "10,30,100", "--max-removed", "60", "--quiet", "--out", str(out)]) == 0
    rep = json.loads((out / "results.json").read_text())["repair"]
    assert rep["config"]["retrain"] == "fresh" and rep["config"]["max_removed"] == 60
    first = rep["rounds"][0]
    # a round's result is a new training, not the removal on the run's schedule
    assert first["after"] != first["curve"][str(first["k"])]
    assert rep["after"]["target_error"] < 0.5 * rep["before"]["target_error"]
    assert len(rep["removed"]) <= 60
