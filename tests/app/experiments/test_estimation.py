"""The Sec 7.1 experiment as a command: outputs complete or absent, bad input refused."""

import json
import os
import re
from pathlib import Path

import pytest

from sgdinfluence.app import cli
from sgdinfluence.app.experiments import estimation
from sgdinfluence.app.experiments.estimation import EstimationConfig, run
from sgdinfluence.app.output import MARKER
from sgdinfluence.errors import OutputError

DATA = Path(os.environ.get("SGDINFLUENCE_DATA", "../shared/data"))
needs_adult = pytest.mark.skipif(not (DATA / "adult" / "adult.data.gz").exists(),
                                 reason=f"UCI Adult not in {DATA}")
TINY = {"n_train": 40, "n_val": 40, "epochs": 3, "seeds": 2}


@needs_adult
def test_estimation_writes_table_csv_json_and_plot(tmp_path):
    cfg = EstimationConfig(dataset="adult", model="logreg", **TINY)
    summary = run(cfg, tmp_path / "out", data_dir=DATA, progress=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        MARKER, "results.csv", "results.json", "scatter.png"]
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["config"]["batch_size"] == 5 and saved["config"]["decay"] is True
    assert saved == json.loads(json.dumps(summary))  # what run returns is what it saved
    assert len(saved["rows"]) == 2 * 6 and set(summary["summary"]) == set(estimation.METHODS)
    assert set(estimation.METHODS) == {"sgd", "sgd-last", "sgd-nohessian", "tracin",
                                       "influence-function", "influence-function-converged"}
    assert summary["summary"]["sgd"]["kendall_tau"][0] > 0.8  # all epochs, tiny logistic regr.
    assert "logreg on adult, 2 seeds" in estimation.format_summary(summary)
    with pytest.raises(OutputError, match="overwrite=True"):
        run(cfg, tmp_path / "out", data_dir=DATA, progress=False)


@needs_adult
def test_a_failed_run_leaves_no_output(tmp_path, monkeypatch):
    def broken(*args):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(estimation, "scatter", broken)
    with pytest.raises(RuntimeError):
        run(EstimationConfig(dataset="adult", model="mlp", **TINY), tmp_path / "out",
            data_dir=DATA, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_bad_command_lines_are_refused(tmp_path, capsys):
    base = ["experiment", "estimation", "--model", "logreg", "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit):
        cli.main([*base, "--dataset", "cifar"])
    err = capsys.readouterr().err
    assert "invalid choice: 'cifar'" in err and all(n in err for n in ("20news", "adult", "mnist"))
    with pytest.raises(SystemExit):
        cli.main([*base, "--dataset", "adult", "--seeds", "0"])
    assert "--seeds: must be >= 1, got 0" in capsys.readouterr().err
    assert cli.main([*base, "--dataset", "adult", "--data-dir", str(tmp_path / "nowhere")]) == 1
    assert re.search(r"dataset files missing in .*nowhere.*adult\.data\.gz.*--data-dir",
                     capsys.readouterr().err)
    assert not (tmp_path / "o").exists()


def test_the_converged_model_is_an_optimum():
    import numpy as np
    import torch

    import sgdinfluence as sgi

    g = torch.Generator().manual_seed(0)
    X = torch.randn(60, 4, generator=g, dtype=torch.float64)
    y = (X[:, 0] + torch.randn(60, generator=g, dtype=torch.float64) > 0).double()
    run = sgi.fit(torch.nn.Linear(4, 1).double(), (X, y), loss="bce", epochs=2, batch_size=6,
                  lr=0.1, weight_decay=0.01)
    model = estimation._converge(run)
    objective = run.objective(model)
    theta = objective.flatten().requires_grad_()
    (grad,) = torch.autograd.grad(objective.batch(theta, torch.ones(60, dtype=torch.float64),
                                                  X, y), theta)
    assert grad.norm() < 1e-8
    assert not np.allclose(theta.detach().numpy(), run.objective().flatten().numpy())
