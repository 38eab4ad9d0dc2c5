"""The noisy-label benchmark: the noise, the metrics, cleanlab's out-of-fold input, outputs."""

import csv
import json
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from sgdinfluence.app import cli, methods
from sgdinfluence.app.experiments import noisy_labels as nl
from sgdinfluence.app.experiments.noisy_labels import NoisyLabelsConfig
from sgdinfluence.app.output import MARKER
from sgdinfluence.errors import OutputError

TINY = replace(nl.QUICK, n_train=200, n_val=100, n_test=200, epochs=4, folds=3)


@pytest.fixture(scope="module")
def digits():
    return nl.load_splits("digits", TINY)


def test_flips_exactly_the_requested_share_of_training_labels_to_other_classes(digits):
    noisy, flipped = nl.corrupt(digits, 0.2, seed=[0, 0])
    (X, y), (X_n, y_n) = digits["train"], noisy["train"]
    assert len(flipped) == 40 == round(0.2 * len(y)) and len(np.unique(flipped)) == 40
    np.testing.assert_array_equal(np.flatnonzero(y_n != y), flipped)  # changed = flipped
    assert X_n is X
    for split in ("val", "test"):  # clean, and the same arrays
        assert noisy[split] is digits[split]
    assert digits["train"][1] is y and not np.array_equal(y, y_n)  # input not mutated
    again, flipped_again = nl.corrupt(digits, 0.2, seed=[0, 0])  # seeded
    np.testing.assert_array_equal(again["train"][1], y_n)
    assert not np.array_equal(nl.corrupt(digits, 0.2, seed=[1, 0])[1], flipped)
    # disjoint splits (the 1797 digits are distinct images): none of train is in val or test
    rows = {r.tobytes() for r in X}
    assert not any(r.tobytes() in rows for s in ("val", "test") for r in digits[s][0])
    assert (len(X), len(digits["val"][0]), len(digits["test"][0])) == (200, 100, 200)


def test_new_labels_are_uniform_over_the_other_classes():
    y = np.zeros(20_000, dtype=np.int64)
    y_n, flipped = nl.flip_labels(y, 0.5, 4, np.random.default_rng(0))
    counts = np.bincount(y_n[flipped], minlength=4)
    assert counts[0] == 0 and np.allclose(counts[1:] / len(flipped), 1 / 3, atol=0.02)
    y2, f2 = nl.flip_labels(np.array([0, 1] * 50), 0.1, 2, np.random.default_rng(0))
    assert len(f2) == 10 and np.all(y2[f2] == 1 - np.array([0, 1] * 50)[f2])  # binary: swap


def test_detection_metrics_by_hand_and_against_sklearn():
    flipped = np.array([0, 4])
    perfect = np.array([-5.0, 1.0, 2.0, 3.0, -4.0])
    assert nl.detection_metrics(perfect, flipped) == {"auroc": 1.0, "ap": 1.0,
                                                      "precision_at_m": 1.0}
    assert nl.detection_metrics(-perfect, flipped)["auroc"] == 0.0
    # suspicion -score = [3, -1, 2, -0.5, 1]: ranks flipped, clean, flipped, clean, clean
    scores = np.array([-3.0, 1.0, -2.0, 0.5, -1.0])
    d = nl.detection_metrics(scores, flipped)
    assert d["auroc"] == pytest.approx(5 / 6)  # 5 of the 6 (flipped, clean) pairs ordered
    assert d["ap"] == pytest.approx((1 / 1 + 2 / 3) / 2)  # precision at each flipped one
    assert d["precision_at_m"] == 0.5
    rng = np.random.default_rng(0)
    s, truth = rng.normal(size=50), rng.choice(50, 12, replace=False)
    is_f = np.isin(np.arange(50), truth)
    d = nl.detection_metrics(s, truth)
    assert d["auroc"] == pytest.approx(roc_auc_score(is_f, -s))
    assert d["ap"] == pytest.approx(average_precision_score(is_f, -s))


def test_cleanlab_probabilities_are_out_of_fold(monkeypatch):
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(90, 5, generator=gen)  # distinct rows: each identifies its instance
    y = torch.arange(90) % 3
    seen = []
    real_fit = methods.fit

    def spy(model, train, **kw):
        seen.append(train[0].clone())
        run = real_fit(model, train, **kw)
        seen_models.append(run.model)
        return run

    seen_models = []
    monkeypatch.setattr(methods, "fit", spy)
    make = lambda: nl.build("mlp", (5,), 3)  # noqa: E731
    probs, splits = methods.cross_val_probs(make, X, y, folds=3, split_seed=0, epochs=3,
                                            batch_size=8, lr=0.1)
    assert len(seen) == 3 and probs.shape == (90, 3)
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-6)
    covered = np.concatenate([held for _, held in splits])
    assert sorted(covered) == list(range(90))  # every instance predicted exactly once
    for (fit_idx, held), trained_on, model in zip(splits, seen, seen_models, strict=True):
        assert not set(fit_idx) & set(held) and len(fit_idx) + len(held) == 90
        for j in held:  # the fold's model never saw instance j ...
            assert not (trained_on == X[j]).all(1).any()
        with torch.no_grad():  # ... and it is the model that predicted j
            np.testing.assert_allclose(probs[held], torch.softmax(model(X[held]), 1).numpy(),
                                       rtol=1e-5)
        assert np.bincount(y[held].numpy()).tolist() == [10, 10, 10]  # stratified


def test_cleanlab_rows_use_the_cross_validated_model_class(digits, monkeypatch):
    pytest.importorskip("cleanlab")
    calls = []
    real = nl.cross_val_probs

    def spy(make_model, X, y, **kw):
        out = real(make_model, X, y, **kw)
        calls.append((X.shape, kw, out[0]))
        return out

    monkeypatch.setattr(nl, "cross_val_probs", spy)
    cfg = replace(TINY, methods=("cleanlab", "cleanlab-find", "random"))
    rows = nl.one_setting(cfg, "digits", digits, 0.2, "logreg")
    assert len(calls) == 1  # one cross-validation, shared by both cleanlab rows
    shape, kw, probs = calls[0]
    assert shape == (200, 1, 8, 8) and kw == {"folds": 3, "split_seed": 0,
                                               **cfg.training("digits", "logreg")}
    import cleanlab.rank

    noisy, flipped = nl.corrupt(digits, 0.2, seed=[0, 0])
    expected = nl.detection_metrics(
        cleanlab.rank.get_label_quality_scores(noisy["train"][1], probs), flipped)
    by = {r["method"]: r for r in rows}
    assert by["cleanlab"]["auroc"] == pytest.approx(expected["auroc"])
    assert by["cleanlab-find"]["n_removed"] > 0 and np.isnan(by["cleanlab-find"]["ap"])
    assert by["random"]["n_removed"] == len(flipped) == 40


def test_outputs_are_complete_or_absent(tmp_path, monkeypatch):
    pytest.importorskip("cleanlab")
    cfg = replace(TINY, methods=("sgd", "tracin", "training-loss", "cleanlab", "random"))
    summary = nl.run(cfg, tmp_path / "out", progress=False)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "ap.png", "results.csv",
                                                     "results.json"]
    saved = json.loads((out / "results.json").read_text())
    assert saved["config"]["methods"] == list(cfg.methods) and saved["config"]["n_train"] == 200
    assert len(saved["rows"]) == 2 * 5  # logreg and mlp x methods
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10 and {r["method"] for r in rows} == set(cfg.methods)
    for r in summary["rows"]:
        assert 0 <= r["auroc"] <= 1 and 0 <= r["test_acc_after"] <= 1 and r["n_flipped"] == 40
        assert 0 < r["val_loss_after"] < 10 and r["fit_seconds"] > 0
    table = nl.format_table(summary)
    assert table.count("\n") == 11 and "| digits | 20% | mlp | cleanlab |" in table
    with pytest.raises(OutputError, match="overwrite=True"):
        nl.run(cfg, out, progress=False)

    def broken(*args):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(nl, "plot_ap", broken)
    with pytest.raises(RuntimeError, match="plotting failed"):
        nl.run(replace(cfg, methods=("random",)), tmp_path / "again", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no partial directory


def test_influence_function_is_skipped_for_the_cnn_and_says_so():
    cfg = replace(TINY, influence_function_models=("logreg",),
                  methods=("influence-function", "random"))
    splits = {"train": (np.random.default_rng(0).random((64, 1, 28, 28), dtype=np.float32),
                        np.arange(64) % 10),
              "val": (np.zeros((8, 1, 28, 28), np.float32), np.arange(8)),
              "test": (np.zeros((8, 1, 28, 28), np.float32), np.arange(8))}
    rows = nl.one_setting(replace(cfg, epochs=1), "mnist", splits, 0.25, "mnist-cnn")
    assert "skipped" in rows[0] and "auroc" not in rows[0] and "auroc" in rows[1]
    assert "skipped" in nl.format_table({"rows": rows})


@pytest.mark.parametrize("change, message", [
    ({"datasets": ("cifar",)}, r"unknown dataset.*cifar.*digits"),
    ({"noise_rates": (0.0,)}, r"noise rates must lie in \(0, 1\), got 0.0"),
    ({"noise_rates": (1.0,)}, r"noise rates must lie in \(0, 1\), got 1.0"),
    ({"noise_rates": (0.1, -0.2)}, r"got -0.2"),
    ({"models": ("resnet",)}, r"unknown model.*resnet"),
    ({"methods": ("loo",)}, r"unknown method.*loo"),
    ({"folds": 1}, r"folds must be >= 2"),
    ({"datasets": ("digits",), "models": ("mnist-cnn",)}, r"none of the models"),
])
def test_bad_settings_are_refused_before_any_work(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        nl.run(replace(TINY, **change), tmp_path / "o", progress=False)  # refused by replace
    assert not (tmp_path / "o").exists()
    with pytest.raises(ValueError, match="noise rate must lie in"):
        nl.flip_labels(np.zeros(10, dtype=np.int64), 1.5, 2, np.random.default_rng(0))


def test_missing_cleanlab_names_the_extra(tmp_path, monkeypatch):
    for mod in ("cleanlab", "cleanlab.rank", "cleanlab.filter"):
        monkeypatch.setitem(sys.modules, mod, None)  # import now raises ImportError
    with pytest.raises(ImportError, match=r"pip install sgdinfluence\[bench\]"):
        nl.run(TINY, tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()
    nl.run(replace(TINY, methods=("random",), models=("logreg",)), tmp_path / "o",
           progress=False)  # the other methods still run


def test_command_line_options(tmp_path):
    def config(*options):
        return cli.noisy_labels_config(cli.parser().parse_args(
            ["experiment", "noisy-labels", *options]))
    cfg = config("--quick", "--noise-rates", "0.1,0.3", "--methods", "sgd,random", "--epochs", "2")
    assert cfg.datasets == ("digits",) and cfg.noise_rates == (0.1, 0.3)
    assert cfg.methods == ("sgd", "random") and cfg.epochs == 2 and cfg.threads == 1
    assert config() == replace(NoisyLabelsConfig(), threads=1)
    with pytest.raises(ValueError, match="noise rates"):
        config("--noise-rates", "20")
