"""sgi.select against its literal reference: the same ranking with the estimates replaced by
the true effect of leaving each instance out, found by retraining."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import kendalltau

import sgdinfluence as sgi
from oracle import unroll
from problems import per_sample, small_problem
from sgdinfluence.app.models import mlp


def mean_over_epoch_ends(model, train, run, val, w):
    """Q averaged over the ends of the epochs of training with instance weights w, each end
    reached by literally training the schedule up to it."""
    ends = [*run.epoch_starts[1:], run.num_steps]
    total = 0.0
    for end in ends:
        _, _, forward = unroll(model, *train, per_sample, run.batches[:end], run.lrs[:end], w,
                               momentum=0.9, create_graph=False)
        with torch.no_grad():
            total += F.cross_entropy(forward(val[0]), val[1]).item()
    return total / len(ends)


def test_select_is_the_literal_ranking_by_retraining():
    model, train, val = small_problem(lambda d: mlp(d, hidden=(8,)), seed=6)
    run = sgi.fit(model, train, epochs=3, batch_size=8, lr=0.1, momentum=0.9)
    ones = torch.ones(40, dtype=torch.float64)
    base = mean_over_epoch_ends(model, train, run, val, ones)
    truth = np.array([mean_over_epoch_ends(model, train, run, val,
                                           ones.index_fill(0, torch.tensor([j]), 0)) - base
                      for j in range(40)])
    k = 5
    chosen = sgi.select(run, val, k)
    reference = np.argsort(truth)[:k]
    scores = sgi.influence(run, val, at="epochs")
    assert len(set(chosen) & set(reference)) >= k - 1  # the 5th and 6th are 1e-4 apart
    assert truth[chosen].sum() <= 0.95 * truth[reference].sum()  # nearly the best removal
    assert kendalltau(scores, truth).statistic > 0.9
    np.testing.assert_array_equal(chosen, np.argsort(scores, kind="stable")[:k])


@pytest.mark.parametrize(("args", "error", "message"), [
    ({"k": 0}, sgi.Error, r"k must be in \[1, 40\)"), ({"k": 40}, sgi.Error, "k must be in"),
    ({"k": 2.0}, TypeError, "k must be an int"), ({"k": True}, TypeError, "k must be an int"),
    ({"k": 2, "method": "tracin"}, sgi.Error, "method"),
])
def test_select_refuses(args, error, message):
    model, train, val = small_problem(seed=6)
    run = sgi.fit(model, train, epochs=1, batch_size=8, lr=0.1)
    with pytest.raises(error, match=message):
        sgi.select(run, val, **args)
    with pytest.raises(sgi.Error, match="single query"):
        sgi.select(run, sgi.PerExample(val), 2)
