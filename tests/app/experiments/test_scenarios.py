"""The scenario benchmark: each corruption does what it says, the target is kept apart from
the validation data that chooses k, and a tiny run writes its table."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from sgdinfluence.app.data.files import Table
from sgdinfluence.app.experiments.scenarios import (
    SCENARIOS,
    ScenariosConfig,
    corrupt,
    format_summary,
    run,
    sample,
)
from sgdinfluence.app.output import MARKER
from sgdinfluence.errors import ConfigError

DATA = Path(os.environ.get("SGDINFLUENCE_DATA", "../shared/data"))


def images(n, seed):
    rng = np.random.default_rng(seed)
    X = rng.random((n, 1, 28, 28)).astype(np.float32) * 0.5
    return Table(X, rng.integers(0, 10, n), [str(c) for c in range(10)], np.arange(n))


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "ood"])
def test_each_corruption_marks_what_it_changed(scenario):
    train, source = images(500, 0), images(400, 1)
    new, harmful, target = corrupt(scenario, "mnist", train, source, 100,
                                   np.random.default_rng(2))
    changed = (new.y != train.y) | (new.X != train.X).reshape(500, -1).any(1)
    np.testing.assert_array_equal(changed, harmful)  # every change is marked, and only those
    m = harmful.sum()
    expected = {"symmetric": 100, "systematic": round(0.4 * (train.y == 7).sum()),
                "backdoor": 15, "shortcut": round(0.6 * (train.y == 0).sum())}[scenario]
    assert m == expected
    if scenario == "backdoor":
        assert (new.y[harmful] == 0).all() and (new.X[harmful, 0, -6:-2, -6:-2] == 1).all()
        assert (target.y != 0).all() and (target.X[:, 0, -6:-2, -6:-2] == 1).all()
    if scenario == "systematic":
        assert (new.y[harmful] == 1).all() and (target.y == 7).all()
    if scenario == "shortcut":
        assert (new.y == train.y).all() and (target.X[:, 0, 1:4, 1:4] == 1).all()
    assert set(target.index) <= set(source.index)


def test_the_target_comes_from_data_apart_from_validation():
    tables = {"train": images(3000, 0), "test": images(300, 1)}
    cfg = ScenariosConfig(n_train=1000, n_val=500, n_test=200, n_target=100)
    train, val, source, test = sample(tables, cfg, np.random.default_rng(0))
    assert (len(train.y), len(val.y), len(source.y), len(test.y)) == (1000, 500, 400, 200)
    parts = [set(t.index) for t in (train, val, source)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])


def test_bad_configuration_is_refused():
    with pytest.raises(ConfigError, match="scenarios"):
        ScenariosConfig(scenarios=("label-noise",))
    with pytest.raises(ConfigError, match="methods"):
        ScenariosConfig(methods=("oracle",))


@pytest.mark.skipif(not (DATA / "adult" / "adult.data.gz").exists(), reason="no UCI Adult")
def test_a_tiny_run_writes_its_table(tmp_path):
    cfg = ScenariosConfig(datasets=("adult",), scenarios=("symmetric", "backdoor"),
                          methods=("sgd-epochs", "random"), n_train=300, n_val=100,
                          n_test=100, n_target=40, epochs=3)
    summary = run(cfg, tmp_path / "out", data_dir=DATA, progress=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        MARKER, "results.csv", "results.json", "scenarios.png"]
    rows = json.loads((tmp_path / "out" / "results.json").read_text())["rows"]
    assert [(r["scenario"], r["method"]) for r in rows] == [
        (s, m) for s in ("symmetric", "backdoor") for m in ("sgd-epochs", "random")]
    backdoor = rows[2]
    assert backdoor["m"] == 9 and 0 <= backdoor["auroc"] <= 1 and backdoor["k"] in (0, 4, 9, 18)
    assert all(0 <= backdoor[f"attack_success{t}"] <= 1 for t in ("_before", "", "_2m"))
    assert "attack_success" not in rows[0]  # only the backdoor has an attack
    assert "sgd-epochs" in format_summary(summary)
