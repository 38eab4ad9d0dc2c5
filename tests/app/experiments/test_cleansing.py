"""The Sec 7.2 command on a small MNIST subset: per-seed reports and the mean curves."""

import json

import pytest

from sgdinfluence.app.cli import main
from sgdinfluence.app.data import data_dir


@pytest.mark.skipif(not (data_dir() / "mnist").is_dir(), reason="needs MNIST in the data dir")
def test_cleansing_experiment_writes_reports_and_mean_curves(tmp_path, capsys):
    out = tmp_path / "c"
    main(["experiment", "cleansing", "--dataset", "mnist", "--subset", "300", "--epochs", "2",
          "--lr", "0.02", "--k", "5", "--methods", "sgd,random", "--seeds", "2",
          "--out", str(out), "--quiet"])
    printed = capsys.readouterr().out
    assert "mnist: 300 training images, 2 seed(s), retrain last" in printed
    assert "0.0086 with nothing removed" in printed
    summary = json.loads((out / "results.json").read_text())
    assert summary["config"]["lr"] == 0.02 and summary["config"]["epochs"] == 2
    assert set(summary["test_error"]) == {"sgd", "random"}
    assert set(summary["test_error"]["sgd"]) == {"0", "5"}
    for seed in (0, 1):
        assert (out / f"seed-{seed}" / "report.html").is_file()
    per_seed = [json.loads((out / f"seed-{s}" / "results.json").read_text()) for s in (0, 1)]
    mean = sum(r["curves"]["sgd"]["5"]["test_error"] for r in per_seed) / 2
    assert summary["test_error"]["sgd"]["5"]["mean"] == pytest.approx(mean)
