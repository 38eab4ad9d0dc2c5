"""The cleansing pipeline: it finds flipped labels, retrains on the identical schedule, and
writes its outputs completely or not at all."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from sgdinfluence.app import report
from sgdinfluence.app.cleanse import CleanseConfig, cleanse, error, split
from sgdinfluence.app.data import load
from sgdinfluence.app.data.files import flip_labels
from sgdinfluence.app.output import MARKER
from sgdinfluence.errors import OutputError

M_FLIPPED = 0.1


@pytest.fixture(scope="module")
def flipped_digits():
    cfg = CleanseConfig(model="mlp", epochs=8, batch_size=32, lr=0.1, weight_decay=1e-4,
                        val=0.15, methods=("sgd", "random"), ks=(30, 120), retrain="all")
    splits = split(load("digits"), cfg)
    splits.train.y, flipped = flip_labels(splits.train.y, M_FLIPPED, 10,
                                          np.random.default_rng(0))
    return cleanse(splits, cfg, progress=False), flipped


def test_flipped_labels_are_over_represented_among_the_most_harmful(flipped_digits):
    result, flipped = flipped_digits
    m = len(flipped)
    precision = np.isin(result.order("sgd")[:m], flipped).mean()
    chance = np.isin(result.order("random")[:m], flipped).mean()
    assert precision > 0.5 > 0.2 > chance  # the base rate is 10%
    # removing them helps on held-out data
    assert result.curves["sgd"][120][1] < result.curves["sgd"][0][1]


def test_retraining_is_the_identical_schedule(flipped_digits):
    result, _ = flipped_digits
    run, test = result.run, result.splits.test
    assert result.curves["sgd"][0][1] == error(run.model, test)
    retrained = run.retrain(result.order("sgd")[:30], from_epoch=0)
    assert result.curves["sgd"][30] == (error(retrained, result.splits.val), error(retrained, test))
    # and leaving nothing out reproduces the trained model bit for bit
    same = run.retrain([], from_epoch=run.epochs - 1)
    for p, q in zip(same.parameters(), run.model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_splits_are_disjoint_stratified_and_seeded():
    cfg = CleanseConfig(val=0.2, test=100, seed=3)
    a, b = split(load("digits"), cfg), split(load("digits"), cfg)
    np.testing.assert_array_equal(a.train.index, b.train.index)
    ids = [set(t.index) for t in (a.train, a.val, a.test)]
    assert len(ids[2]) == 100 and not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert len(ids[0]) + len(ids[1]) + len(ids[2]) == 1797
    assert np.bincount(a.val.y).min() >= 30  # every class in validation


def test_outputs_are_complete(flipped_digits, tmp_path):
    result, _ = flipped_digits
    out = report.write(result, tmp_path / "r")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "curve.png", "report.html",
                                                     "results.json", "scores.csv"]
    info = json.loads((out / "results.json").read_text())
    assert info["config"]["ks"] == [30, 120] and set(info["curves"]) == {"sgd", "random"}
    assert info["summary"].startswith("Removing ")
    frame = pd.read_csv(out / "scores.csv")
    assert list(frame["rank"]) == list(range(1, len(frame) + 1))  # sorted by rank
    assert sorted(frame["index"]) == sorted(result.splits.train.index)
    assert (np.diff(frame["score"]) >= 0).all()  # the most harmful first
    k = report.best_k(result, "sgd")  # the instances removed at the k validation chose
    assert frame["removed"].sum() == k and frame["removed"][:k].all()
    assert "<img" in (out / "report.html").read_text()


def test_outputs_are_absent_after_a_failure(flipped_digits, tmp_path, monkeypatch):
    result, _ = flipped_digits

    def broken(*args):
        raise RuntimeError("disk full")
    monkeypatch.setattr(report, "render", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        report.write(result, tmp_path / "r")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "old").write_text("")
    with pytest.raises(OutputError, match="pass overwrite=True"):
        report.write(result, tmp_path / "r")


@pytest.mark.parametrize("change, message", [
    (dict(ks=(2000,)), "k = 2000 would remove the whole training set of"),
    (dict(methods=("sgd", "magic")), "unknown methods ['magic']"),
    (dict(retrain="some"), "retrain must be 'last', 'all' or 'fresh'"),
    (dict(rounds=0), "rounds must be 'auto' or an int >= 1, got 0"),
    (dict(rounds=2), "rounds other than 1 and retrain='fresh' repair a failure on a target"),
    (dict(retrain="fresh"), "rounds other than 1 and retrain='fresh' repair a failure"),
    (dict(max_trainings=0), "max_trainings must be an int >= 1"),
    (dict(methods=("auto", "magic")), "unknown methods ['magic']; use some of ['auto', "),
    (dict(model="resnet"), "unknown model 'resnet'"),
    (dict(val=1.5), "val must be a fraction in (0, 1) or a count"),
    (dict(augment="crop", model="mlp"), None),
])
def test_bad_configuration(change, message):
    if message is None:  # crops are fine on images even with an MLP
        CleanseConfig(**change)
        return
    with pytest.raises(ValueError, match=__import__("re").escape(message)):
        cfg = CleanseConfig(**change)  # options alone: refused here; with the data: below
        cleanse(split(load("digits"), cfg), cfg, progress=False)


def fake_result(changes, test_errors, n=1000, base=100, reliability=None):
    """A result whose validation mistakes at k = 0 are the first ``base`` of n instances, and
    at each k ``changes[k] = (fixed, broken)``: that many of them right, of the others wrong."""
    from types import SimpleNamespace

    before = np.arange(n) < base
    mistakes = {0: before}
    for k, (fixed, broken) in changes.items():
        after = before.copy()
        after[:fixed] = False
        after[base:base + broken] = True
        mistakes[k] = after
    curves = {k: (float(m.mean()), test_errors[k]) for k, m in mistakes.items()}
    return SimpleNamespace(curves={"sgd": curves}, scores={"sgd": None}, target_curves={},
                           mistakes={"sgd": mistakes}, reliability=reliability,
                           splits=SimpleNamespace(train=SimpleNamespace(y=np.zeros(500),
                                                                        image=True)))


def test_summary_chooses_k_on_validation_and_says_when_nothing_helps():
    # validation prefers k = 30 even though the test error is lower at k = 10
    text = report.summary(fake_result({10: (30, 10), 30: (40, 10)},
                                      {0: 0.09, 10: 0.05, 30: 0.07}))
    assert text.startswith("Removing the 30 most harmful of 500 training images")
    assert text.endswith("lowers test error from 9.00% to 7.00%.")
    text = report.summary(fake_result({10: (10, 10), 30: (10, 30)},
                                      {0: 0.09, 10: 0.05, 30: 0.07}))
    assert text.startswith("Removing up to 30 of the most harmful") and "9.00%" in text


def test_the_summary_cautions_where_the_scores_do_not_mean_leave_one_out():
    holds = {"verdict": "holds", "advice": "the scores estimate leaving an instance out"}
    text = report.summary(fake_result({30: (40, 10)}, {0: 0.09, 30: 0.07}, reliability=holds))
    assert text.endswith("lowers test error from 9.00% to 7.00%.")
    poor = {"verdict": "does not hold", "advice": "the scores do not predict leaving an "
            "instance out of this run: …; sweep the last epochs only (epochs=1)"}
    text = report.summary(fake_result({30: (40, 10)}, {0: 0.09, 30: 0.07}, reliability=poor))
    assert text.endswith("to 7.00%. Caution: the scores do not predict leaving an instance out "
                         "of this run: …; sweep the last epochs only (epochs=1).")


def test_a_gain_within_noise_removes_nothing():
    """k is taken only where McNemar's test says the validation gain is not chance: 9 fixed
    against 4 broken (5 of 1000) is not (5 < 1.645·√13); 40 against 10 is."""
    noise = fake_result({10: (9, 4)}, {0: 0.09, 10: 0.10})
    assert report.best_k(noise, "sgd") == 0
    real = fake_result({10: (9, 4), 30: (40, 10)}, {0: 0.09, 10: 0.10, 30: 0.08})
    assert report.best_k(real, "sgd") == 30


def test_the_cifar_network_is_the_authors():
    from sgdinfluence.app.models import cifar_cnn

    model = cifar_cnn()
    assert sum(p.numel() for p in model.parameters()) == 307_946  # batch norm on convs 1, 3, 5
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model) == 3
    x = torch.full((2, 3, 32, 32), 0.5)
    torch.testing.assert_close(model[0](x)[0, :, 0, 0],
                               (0.5 - torch.tensor([0.4914, 0.4822, 0.4465]))
                               / torch.tensor([0.2023, 0.1994, 0.2010]))


@pytest.mark.parametrize("shape, model", [
    ((1, 12, 12), "mlp"), ((1, 15, 15), "mlp"), ((1, 16, 16), "mnist-cnn"),
    ((1, 28, 28), "mnist-cnn"), ((3, 32, 32), "cifar-cnn"), ((3, 12, 12), "mlp"),
    ((1, 20, 16), "mlp"), ((64,), "mlp"),
])
def test_the_automatic_model_is_one_that_takes_the_data(shape, model):
    from sgdinfluence.app.cleanse import choose_model
    from sgdinfluence.app.models import build

    name, _ = choose_model(CleanseConfig(), shape)
    assert name == model
    assert build(name, shape, 10)(torch.zeros(2, *shape)).shape == (2, 10)


def test_the_mnist_cnn_names_its_true_minimum_size():
    from sgdinfluence.app.models import build

    build("mnist-cnn", (1, 16, 16), 10)
    with pytest.raises(ValueError, match="needs images of at least 16x16 pixels, got 15x15"):
        build("mnist-cnn", (1, 15, 15), 10)


def test_a_cnn_on_a_table_says_it_needs_images():
    from sgdinfluence.app.cleanse import choose_model

    for model in ("mnist-cnn", "cifar-cnn"):
        with pytest.raises(ValueError, match=f"model '{model}' needs images, and the data is a "
                                             "table \\(instances of 30 features\\)"):
            choose_model(CleanseConfig(model=model), (30,))


def test_every_seed_numpy_takes_splits_the_data():
    """The validation split is seeded with seed + 1: at the top of the range it wraps."""
    top = 2**32 - 1
    splits = split(load("digits"), CleanseConfig(seed=top, subset=200))
    assert len(splits.train.y) == 200
    with pytest.raises(ValueError, match=f"seed must be in \\[0, {top}\\], got {top + 1}"):
        CleanseConfig(seed=top + 1)
