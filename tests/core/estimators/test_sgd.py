"""Algorithm 2 against the exact unrolled-autodiff oracle, and against literal retraining."""

import copy
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import kendalltau

import sgdinfluence as sgi
from oracle import unrolled, unrolled_optimizer
from problems import per_sample, rel_err, small_problem, val_loss
from sgdinfluence.app.models import logistic_regression, mlp
from sgdinfluence.core.augment import RandomCrop


def decaying(t):
    return 0.3 / np.sqrt(t + 1)


MODELS = {"logreg": logistic_regression, "mlp": lambda d: mlp(d, hidden=(8, 8))}


@pytest.mark.parametrize("name", MODELS)
def test_matches_unrolled_autodiff(name):
    model, train, val = small_problem(MODELS[name])
    run = sgi.fit(model, train, epochs=3, batch_size=7, lr=decaying, weight_decay=0.01, seed=1)
    expected, final = unrolled(model, *train, per_sample, run.batches, run.lrs, 0.01,
                               val_loss(val))
    for p, q in zip(run.model.parameters(), final, strict=True):  # the same training, too
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    scores = sgi.influence(run, val)
    assert scores.shape == (40,) and scores.dtype == np.float64
    assert np.abs(expected.numpy()).max() > 1e-4  # a real signal, not zeros on both sides
    assert rel_err(scores, expected) < 1e-9


@pytest.mark.parametrize("name", MODELS)
def test_last_epoch_matches_oracle_restricted_to_last_epoch(name):
    model, train, val = small_problem(MODELS[name], seed=2)
    run = sgi.fit(model, train, epochs=3, batch_size=6, lr=decaying, weight_decay=0.01)
    last = run.epoch_starts[-1]
    expected, _ = unrolled(model, *train, per_sample, run.batches, run.lrs, 0.01,
                           val_loss(val), from_step=last)
    scores = sgi.influence(run, val, epochs=1)
    assert rel_err(scores, expected) < 1e-9
    assert rel_err(scores, sgi.influence(run, val)) > 1e-3  # it is an approximation


def test_query_forms_agree():
    model, train, val = small_problem(MODELS["mlp"], seed=3)
    run = sgi.fit(model, train, epochs=2, batch_size=8, lr=0.2)
    mean = sgi.influence(run, val)
    as_callable = sgi.influence(run, lambda m: F.cross_entropy(m(val[0]), val[1]))
    np.testing.assert_allclose(as_callable, mean, rtol=1e-10, atol=1e-16)
    # linearity in u: the mean of the per-example rows is the row of the mean loss
    per = sgi.influence(run, sgi.PerExample(val))
    assert per.shape == (30, 40)
    np.testing.assert_allclose(per.mean(0), mean, rtol=1e-9, atol=1e-16)
    stacked = sgi.influence(run, [val, (val[0][:5], val[1][:5])])
    assert stacked.shape == (2, 40)
    np.testing.assert_allclose(stacked[0], mean, rtol=1e-10, atol=1e-16)


def test_dropout_is_replayed_in_the_sweep():
    """With dropout the oracle can't be written independently of the seeds, so check the two
    sweep paths (one query, and several through vmap) against each other and retraining."""
    model, train, val = small_problem(lambda d: mlp(d, hidden=(16,), dropout=0.3), seed=4)
    run = sgi.fit(model, train, epochs=2, batch_size=8, lr=0.2)
    one = sgi.influence(run, val)
    two = sgi.influence(run, [val, val])
    np.testing.assert_allclose(two, np.stack([one, one]), rtol=1e-12, atol=1e-18)
    # a tiny leave-out agrees with the linear estimate only if the masks were replayed
    loss = lambda m: F.cross_entropy(m(val[0]), val[1]).item()  # noqa: E731
    base = loss(run.model)
    true = np.array([loss(run.retrain([j])) - base for j in range(10)])
    assert kendalltau(one[:10], true).statistic > 0.6


def test_kendall_tau_against_leave_one_out_retraining(cancer):
    """The paper's Sec 7.1 check on real data: logistic regression, 200 / 200 instances."""
    train, val = cancer
    torch.manual_seed(0)
    model = logistic_regression(30).double()
    run = sgi.fit(model, train, epochs=5, batch_size=5, lr=lambda t: 0.1 / np.sqrt(t + 1),
                  weight_decay=1e-3)
    scores = sgi.influence(run, val)

    def val_loss(m):
        with torch.no_grad():
            return F.cross_entropy(m(val[0]), val[1]).item()

    base = val_loss(run.model)
    true = np.array([val_loss(run.retrain([j])) - base for j in range(200)])
    tau = kendalltau(scores, true).statistic
    print(f"Kendall tau, SGD-influence vs leave-one-out retraining: {tau:.3f}")
    assert tau >= 0.9


def test_augmentation_and_batch_norm_match_unrolled_autodiff():
    """Random crops and flips replayed from the step seeds, and batch-norm statistics, as in
    the CIFAR-10 network: still exact, the running statistics' dependence on every step
    included (the oracle writes batch norm out with differentiable running statistics)."""
    g = torch.Generator().manual_seed(4)
    X = torch.randn(56, 2, 6, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (56,), generator=g)
    train, val = (X[:40], y[:40]), (X[40:], y[40:])
    torch.manual_seed(4)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.BatchNorm2d(3), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(3 * 36, 3)).double()
    augment = RandomCrop(padding=1, flip=True)
    run = sgi.fit(model, train, epochs=2, batch_size=8, lr=0.1, weight_decay=0.01, seed=5,
                  augment=augment)

    def inputs(t, x):
        torch.manual_seed(run.seeds[t])
        return augment(x)

    oracle_model = copy.deepcopy(model)
    expected, final = unrolled(oracle_model, *train, per_sample, run.batches, run.lrs, 0.01,
                               val_loss(val), inputs=inputs)
    for p, q in zip(run.model.parameters(), final, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    assert np.abs(expected.numpy()).max() > 1e-4
    assert rel_err(sgi.influence(run, val), expected) < 1e-9
    half = (val[0][:8], val[1][:8])  # several queries at once go through vmap
    np.testing.assert_allclose(sgi.influence(run, [val, half])[1], sgi.influence(run, half),
                               rtol=1e-10)
    # crops differ between steps and instances, so the oracle without them disagrees
    plain, _ = unrolled(copy.deepcopy(model), *train, per_sample, run.batches, run.lrs, 0.01,
                        val_loss(val))
    assert rel_err(plain, expected) > 1e-2


@pytest.mark.parametrize("optimizer", [{}, {"optimizer": "adam"}])
def test_a_convolutional_network_without_batch_norm_matches_unrolled_autodiff(optimizer):
    """One query on a convolution without batch norm takes the forward-mode path; several
    queries on cropped images fall back to row-by-row reverse passes: both exact."""
    g = torch.Generator().manual_seed(6)
    X = torch.randn(56, 2, 6, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (56,), generator=g)
    train, val = (X[:40], y[:40]), (X[40:], y[40:])
    torch.manual_seed(6)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(3 * 9, 3)).double()
    augment = RandomCrop(padding=1)
    run = sgi.fit(model, train, epochs=2, batch_size=8, lr=0.05, weight_decay=0.01, seed=7,
                  augment=augment, **optimizer)

    def inputs(t, x):
        torch.manual_seed(run.seeds[t])
        return augment(x)

    expected, _ = unrolled_optimizer(copy.deepcopy(model), *train, per_sample, run.batches,
                                     run.lrs, val_loss(val), weight_decay=0.01, inputs=inputs,
                                     **optimizer)
    assert np.abs(expected.numpy()).max() > 1e-4
    assert rel_err(sgi.influence(run, val), expected) < 1e-9
    per = sgi.influence(run, sgi.PerExample(val))  # 16 rows
    assert rel_err(per.mean(0), expected) < 1e-9


@pytest.mark.parametrize(("method", "epochs"), [("sgd", None), ("sgd", 2),
                                               ("sgd-nohessian", None)])
def test_query_over_epochs_is_the_mean_of_the_oracles_at_each_epoch_end(method, epochs):
    """at="epochs": the query averaged over the ends of the (swept) epochs. The oracle is
    literal: the unrolled training stopped at each epoch's end, differentiated there (for
    the no-Hessian sweep: that sweep of the run stopped there)."""
    model, train, val = small_problem(MODELS["mlp"], seed=5)
    run = sgi.fit(model, train, epochs=3, batch_size=7, lr=decaying, weight_decay=0.01,
                  momentum=0.9)
    k = epochs or run.epochs
    first = run.epoch_starts[run.epochs - k]
    ends = [*run.epoch_starts[1:], run.num_steps][run.epochs - k:]
    scores = sgi.influence(run, val, method, epochs=epochs, at="epochs")
    if method == "sgd":
        expected = sum(unrolled_optimizer(model, *train, per_sample, run.batches[:end],
                                          run.lrs[:end], val_loss(val), momentum=0.9,
                                          weight_decay=0.01, from_step=first)[0]
                       for end in ends) / k
    else:
        expected = sum(sgi.influence(_truncated(run, end), val, method) for end in ends) / k
    assert np.abs(expected).max() > 1e-4
    assert rel_err(scores, expected) < 1e-9
    assert rel_err(scores, sgi.influence(run, val, method, epochs=epochs)) > 1e-2


def _truncated(run, end):
    """The run stopped at step ``end`` (an epoch's end), θ[end] its model."""
    if end == run.num_steps:
        return run
    objective = run.objective()
    objective.load(run.unpack(run.store[end])[0])
    e = run.epoch_starts.index(end)
    return dataclasses.replace(run, model=objective.model.eval(), batches=run.batches[:end],
                               lrs=run.lrs[:end], seeds=run.seeds[:end],
                               epoch_starts=run.epoch_starts[:e],
                               epoch_buffers=run.epoch_buffers[:e])
