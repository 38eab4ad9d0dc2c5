"""Batch norm's running statistics: training makes them, eval mode (the query) reads them, so
every step's instances reach the query through them too. The sweep carries their adjoint;
the oracle writes batch norm out with running statistics in autograd's graph
(tests/oracle.py, DifferentiableBatchNorm). Leave-one-out retrains with them."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sgdinfluence as sgi
from oracle import unroll, unrolled_optimizer
from problems import interrupt_sweep, per_sample
from sgdinfluence.core.estimators.sgd import sgd_influence
from sgdinfluence.core.queries import Query


def problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(60, 5, generator=g, dtype=torch.float64)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).long()
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8, momentum=0.3), nn.ReLU(),
                          nn.Linear(8, 2)).double()
    return model, (X[:40], y[:40]), (X[40:], y[40:])


def test_the_sweep_follows_the_running_statistics_to_the_query():
    model, train, val = problem()
    run = sgi.fit(model, train, epochs=3, batch_size=8, lr=0.2, momentum=0.9)
    query = lambda forward: F.cross_entropy(forward(val[0]), val[1])  # noqa: E731
    expected, _ = unrolled_optimizer(model, *train, per_sample, run.batches, run.lrs, query,
                                     momentum=0.9)
    scores = sgi.influence(run, val)
    rel = np.abs(scores - expected.numpy()).max() / np.abs(expected.numpy()).max()
    assert rel < 1e-9
    q = Query(run, val)  # the sweep without the statistics' adjoint: the old blind spot
    blind = sgd_influence(run, q.gradients(q.objective.flatten()))[0].numpy()
    assert np.abs(blind - expected.numpy()).max() / np.abs(expected.numpy()).max() > 1e-2


@pytest.mark.parametrize("vmapped", [True, False])
def test_the_statistics_term_joins_the_steps_own_reverse_pass_for_every_query_row(
        vmapped, monkeypatch):
    # a step of one forward takes the statistics' term in the adjoint's passes (no forward
    # of its own), vmapped over the query rows or, where vmap is refused, row by row
    from sgdinfluence.core.estimators import sgd

    model, train, val = problem(5)
    run = sgi.fit(model, train, epochs=2, batch_size=8, lr=0.2)
    half = (val[0][:8], val[1][:8])
    expected = [unrolled_optimizer(model, *train, per_sample, run.batches, run.lrs,
                                   lambda f, q=q: F.cross_entropy(f(q[0]), q[1]))[0].numpy()
                for q in (val, half)]

    def unused(*args, **kwargs):
        raise AssertionError("the statistics' term took a forward of its own")

    def refused(*args, **kwargs):
        raise RuntimeError("vmap: refused here")

    monkeypatch.setattr(sgd.RunningStatistics, "step", unused)
    if not vmapped:
        monkeypatch.setattr(sgd, "vmap", refused)
    scores = sgi.influence(run, [val, half])
    for row, exact in zip(scores, expected, strict=True):
        assert np.abs(row - exact).max() / np.abs(exact).max() < 1e-9


def test_leave_one_out_retrains_the_running_statistics_too():
    model, train, val = problem(1)
    run = sgi.fit(model, train, epochs=2, batch_size=8, lr=0.2)
    loo = sgi.influence(run, val, method="loo", indices=[0, 7])
    w = torch.ones(40, dtype=torch.float64)
    forward = unroll(copy.deepcopy(model), *train, per_sample, run.batches, run.lrs, w,
                     create_graph=False)[2]
    with torch.no_grad():
        base = F.cross_entropy(forward(val[0]), val[1])
    for j, value in zip([0, 7], loo, strict=True):
        wj = w.clone()
        wj[j] = 0
        _, _, forward = unroll(copy.deepcopy(model), *train, per_sample, run.batches, run.lrs,
                               wj, create_graph=False)
        with torch.no_grad():
            assert abs(value - (F.cross_entropy(forward(val[0]), val[1]) - base).item()) < 1e-12


def test_the_query_over_epochs_reads_each_epochs_statistics():
    """at="epochs": Q at each epoch's end, each read with the statistics of that moment."""
    model, train, val = problem(2)
    run = sgi.fit(model, train, epochs=3, batch_size=8, lr=0.2, momentum=0.9)
    query = lambda forward: F.cross_entropy(forward(val[0]), val[1])  # noqa: E731
    ends = [*run.epoch_starts[1:], run.num_steps]
    expected = sum(unrolled_optimizer(copy.deepcopy(model), *train, per_sample,
                                      run.batches[:end], run.lrs[:end], query, momentum=0.9)[0]
                   for end in ends) / len(ends)
    scores = sgi.influence(run, val, at="epochs")
    assert np.abs(scores - expected.numpy()).max() / np.abs(expected.numpy()).max() < 1e-9


def test_an_interrupted_sweep_continues_from_its_checkpoint_to_the_same_scores(tmp_path,
                                                                               monkeypatch):
    # every part of the sweep's state: momentum's slot, batch norm's statistics, epoch ends
    model, train, val = problem(2)
    run = sgi.fit(model, train, epochs=4, batch_size=8, lr=0.2, momentum=0.9)
    whole = sgi.influence(run, val, at="epochs")
    path = tmp_path / "sweep.pt"
    saves = interrupt_sweep(monkeypatch, lambda: sgi.influence(run, val, at="epochs",
                                                               checkpoint=path), after=2)
    assert path.is_file() and saves == [run.epoch_starts[3], run.epoch_starts[2]]
    with pytest.raises(sgi.Error, match="holds the sweep of another run, query or options"):
        sgi.influence(run, val, checkpoint=path)  # at the end, not over the epochs
    resumed = sgi.influence(run, val, at="epochs", checkpoint=path)
    np.testing.assert_array_equal(resumed, whole)
    assert not path.exists()  # removed once done


def test_a_checkpoint_resumes_where_the_query_gradient_was_summed_in_another_order(
        tmp_path, monkeypatch):
    # another number of threads sums the query's gradient in another order: its digest
    # differs in the last bits, and the sweep must still continue; another query must not
    from sgdinfluence.core.trajectory import read_run_file, write_run_file
    model, train, val = problem(4)
    run = sgi.fit(model, train, epochs=3, batch_size=8, lr=0.2)
    whole = sgi.influence(run, val)
    path = tmp_path / "sweep.pt"
    interrupt_sweep(monkeypatch, lambda: sgi.influence(run, val, checkpoint=path))
    saved = read_run_file(path)
    saved["key"]["query"] = "digest of the same gradient summed in another order"
    saved["query"] = saved["query"] * (1 + 1e-14 * torch.randn_like(saved["query"]))
    write_run_file(path, saved)
    np.testing.assert_array_equal(sgi.influence(run, val, checkpoint=path), whole)
    saved["query"] = saved["query"] * (1 + 1e-6 * torch.randn_like(saved["query"]))
    write_run_file(path, saved)
    with pytest.raises(sgi.Error, match="holds the sweep of another run, query or options"):
        sgi.influence(run, val, checkpoint=path)


def test_a_checkpoint_path_that_is_not_a_sweep_is_refused(tmp_path):
    model, train, val = problem(3)
    run = sgi.fit(model, train, epochs=1, batch_size=8, lr=0.2)
    mine = tmp_path / "notes.pt"
    mine.write_text("a file of the user's")
    with pytest.raises(sgi.Error, match="exists and is not a saved sweep"):
        sgi.influence(run, val, checkpoint=mine)
    assert mine.read_text() == "a file of the user's"
    run.save(tmp_path / "run.pt")
    with pytest.raises(sgi.Error, match="is a run file, not a saved sweep"):
        sgi.influence(run, val, checkpoint=tmp_path / "run.pt")
    with pytest.raises(sgi.Error, match="directory .* does not exist"):
        sgi.influence(run, val, checkpoint=tmp_path / "no" / "sweep.pt")
