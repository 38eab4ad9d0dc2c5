"""The reliability measure: the adjoint's growth, and the scores of the most harmful and most
helpful instances against their literal leave-one-out, with a verdict that tells a convex run
whose scores mean leave-one-out from a chaotic one whose scores do not."""

import numpy as np
import pytest
import torch

import sgdinfluence as sgi
from sgdinfluence.app.models import logistic_regression, mlp


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(240, 5, generator=g, dtype=torch.float64)
    y = (X[:, 0] + 0.5 * X[:, 1] + 0.5 * torch.randn(240, generator=g, dtype=torch.float64)
         > 0).long()
    return (X[:200], y[:200]), (X[200:], y[200:])


def test_a_convex_run_holds_and_the_numbers_are_the_estimators(data):
    train, val = data
    torch.manual_seed(0)
    run = sgi.fit(logistic_regression(5).double(), train, epochs=5, batch_size=10, lr=0.1)
    r = sgi.reliability(run, val)
    assert r.verdict == "holds" and r.spearman >= 0.8 and 0.5 <= r.scale <= 2
    scores = sgi.influence(run, val)
    np.testing.assert_array_equal(r.all_scores, scores)
    order = np.argsort(scores, kind="stable")
    assert r.checked == sorted([*order[:4].tolist(), *order[-4:].tolist()])
    np.testing.assert_array_equal(r.scores, scores[r.checked])
    np.testing.assert_allclose(r.truth, sgi.influence(run, val, method="loo",
                                                     indices=r.checked), rtol=1e-12)
    assert len(r.growth) == run.epochs and all(0 < g < 1 for g in r.growth)  # it shrinks
    assert r.advice.startswith("the scores estimate leaving an instance out of this run")
    assert set(r.as_dict()) == {"growth", "checked", "scores", "truth", "spearman", "scale",
                                "verdict", "advice"}


def test_a_chaotic_run_does_not_hold_and_says_what_to_do(data):
    train, val = data
    torch.manual_seed(0)
    run = sgi.fit(mlp(5, hidden=(32, 32)).double(), train, epochs=20, batch_size=10, lr=2.0)
    r = sgi.reliability(run, val)
    assert r.verdict == "does not hold" and max(r.growth) > 1e3
    assert "confirm a removal by retraining (sgi.leave_out), or try epochs='auto'" in r.advice


def test_bad_arguments_are_refused(data):
    train, val = data
    run = sgi.fit(logistic_regression(5).double(), train, epochs=1, batch_size=10, lr=0.1)
    with pytest.raises(sgi.Error, match="reliability takes a single query"):
        sgi.reliability(run, [val, val])
    with pytest.raises(sgi.Error, match=r"sample must be an int in \[2, 200\], got 1"):
        sgi.reliability(run, val, sample=1)


def test_changes_below_the_query_precision_cannot_tell(data, monkeypatch):
    """A float32 deep run whose leave-outs all round to no change (a ResNet-18 on 512
    CIFAR-10 images did): no verdict is made up from them."""
    from sgdinfluence.core.estimators import loo

    train, val = data
    run = sgi.fit(logistic_regression(5).double(), train, epochs=1, batch_size=10, lr=0.1)
    monkeypatch.setattr(loo, "leave_out", lambda run, q, sets: torch.zeros(1, len(sets),
                                                                            dtype=torch.float32))
    r = sgi.reliability(run, val)
    assert r.verdict == "cannot tell" and "check the run in float64" in r.advice
    assert r.advice.startswith("leaving any of the 8 instances out changes the query by less "
                               "than its float32 precision")
