"""The sweep's options for deep runs (issue 22): a damped adjoint, checked against the
unrolled oracle with the damping in its linearisation; the last-k-epoch sweeps a full sweep
holds at its epoch starts; and epochs="auto", the last k epochs by the adjoint's growth."""

import numpy as np
import pytest
import torch

import sgdinfluence as sgi
from oracle import unrolled_optimizer
from problems import interrupt_sweep, per_sample, rel_err, small_problem, val_loss
from sgdinfluence.core.estimators import _statistics
from sgdinfluence.core.estimators.sgd import auto_epochs, sgd_influence
from sgdinfluence.core.queries import Query

OPTIMIZERS = {
    "sgd": dict(optimizer="sgd", weight_decay=0.01),
    "nesterov": dict(optimizer="sgd", momentum=0.9, nesterov=True, weight_decay=0.01),
    "adamw": dict(optimizer="adamw", weight_decay=0.01),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_damped_sweep_is_the_oracle_with_damping_in_its_linearisation(name):
    model, train, val = small_problem(seed=3)
    opts = OPTIMIZERS[name]
    lr = 0.01 if name == "adamw" else 0.2
    run = sgi.fit(model, train, epochs=3, batch_size=8, lr=lr, seed=1, **opts)
    oracle = {k: v for k, v in opts.items() if k != "optimizer"}
    for damping in (0.5, 3.0):
        expected, final = unrolled_optimizer(model, *train, per_sample, run.batches, run.lrs,
                                             val_loss(val), optimizer=opts["optimizer"],
                                             seeds=run.seeds, damping=damping, **oracle)
        for p, q in zip(run.model.parameters(), final, strict=True):  # the same trajectory
            torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)
        scores = sgi.influence(run, val, damping=damping)
        assert rel_err(scores, expected) < 1e-9
        assert rel_err(scores, sgi.influence(run, val)) > 1e-3  # it changes the estimate


def test_zero_damping_is_algorithm_2_bit_for_bit():
    model, train, val = small_problem(seed=4)
    run = sgi.fit(model, train, epochs=2, batch_size=8, lr=0.2, momentum=0.9,
                  weight_decay=0.01)
    np.testing.assert_array_equal(sgi.influence(run, val, damping=0.0),
                                  sgi.influence(run, val))


@pytest.mark.parametrize("opts", [dict(lr=0.2), dict(lr=0.2, momentum=0.9, nesterov=True)])
def test_a_full_sweep_holds_every_last_k_epoch_sweep_at_its_epoch_starts(opts):
    model, train, val = small_problem(seed=5)
    run = sgi.fit(model, train, epochs=4, batch_size=8, weight_decay=0.01, **opts)
    q = Query(run, val)
    U = q.gradients(q.objective.flatten())
    kept: dict[int, torch.Tensor] = {}
    norms: list[torch.Tensor] = []
    full = sgd_influence(run, U, statistics=_statistics(run, q), norms=norms,
                         save=lambda s: kept.__setitem__(s["t"], s["scores"].clone()))
    assert len(norms) == run.epochs + 1
    for e in range(run.epochs):
        k = run.epochs - e
        expected = sgi.influence(run, val, epochs=k)
        np.testing.assert_array_equal(kept[run.epoch_starts[e]][0].numpy(), expected)
    np.testing.assert_array_equal(full[0].numpy(), sgi.influence(run, val))


def test_auto_epochs_takes_the_most_epochs_within_the_growth():
    norms = [torch.tensor([1.0, 2.0, 0.0]), torch.tensor([3.0, 2.0, 0.0]),
             torch.tensor([12.0, 50.0, 0.0]), torch.tensor([5.0, 1.0, 0.0])]
    # row 0 grows 3x, 12x, 5x: one epoch (not three, though 5 <= 10 again); row 1 1x, 25x:
    # one; row 2, a zero query: every epoch
    assert auto_epochs(norms, 10.0).tolist() == [1, 1, 3]
    assert auto_epochs(norms, 100.0).tolist() == [3, 3, 3]
    assert auto_epochs(norms, 1.0).tolist() == [1, 1, 3]  # at least the last epoch


def test_auto_epochs_gives_the_sweep_over_the_epochs_its_rule_chooses():
    model, train, val = small_problem(seed=6)
    run = sgi.fit(model, train, epochs=4, batch_size=4, lr=0.5, momentum=0.9,
                  weight_decay=0.01)
    q = Query(run, val)
    norms: list[torch.Tensor] = []
    sgd_influence(run, q.gradients(q.objective.flatten()), norms=norms)
    growth = [float(n[0] / norms[0][0]) for n in norms[1:]]
    assert growth[-1] > 1.5  # the adjoint grows on this run, so the rule has work to do
    for limit in (1.0, growth[1] * 1.01, growth[-1] * 1.01):
        k = int(auto_epochs(norms, limit)[0])
        np.testing.assert_array_equal(sgi.influence(run, val, epochs="auto", max_growth=limit),
                                      sgi.influence(run, val, epochs=k))
    np.testing.assert_array_equal(sgi.influence(run, [val, val], epochs="auto")[1],
                                  sgi.influence(run, val, epochs="auto"))


@pytest.mark.parametrize(("method", "options", "message"), [
    ("sgd", dict(epochs="auto", at="epochs"), "at='end'"),
    ("sgd", dict(epochs="auto", checkpoint="x.sweep"), "without checkpoint"),
    ("sgd", dict(max_growth=5.0), "pass epochs='auto'"),
    ("sgd", dict(epochs="auto", max_growth=0.5), "max_growth must be a number >= 1"),
    ("sgd", dict(epochs="auto", max_growth="10"), "max_growth must be a number >= 1"),
    ("sgd", dict(damping=-1.0), "damping must be a finite number >= 0"),
    ("sgd", dict(damping=float("nan")), "damping must be a finite number >= 0"),
    ("sgd", dict(epochs="all"), "None or 'auto' or an int"),
    ("sgd-nohessian", dict(epochs="auto"), "None or an int"),
])
def test_bad_options_are_refused(method, options, message):
    model, train, val = small_problem(seed=7, n=16)
    run = sgi.fit(model, train, epochs=2, batch_size=8, lr=0.1)
    with pytest.raises(sgi.Error, match=message):
        sgi.influence(run, val, method, **options)


def test_sgd_nohessian_takes_no_damping():
    model, train, val = small_problem(seed=7, n=16)
    run = sgi.fit(model, train, epochs=2, batch_size=8, lr=0.1)
    with pytest.raises(TypeError, match="no option"):
        sgi.influence(run, val, "sgd-nohessian", damping=1.0)


def test_a_damped_sweep_resumes_only_from_a_damped_checkpoint(tmp_path, monkeypatch):
    model, train, val = small_problem(seed=8)
    run = sgi.fit(model, train, epochs=3, batch_size=8, lr=0.2, momentum=0.9)
    whole = sgi.influence(run, val, damping=0.5)
    path = tmp_path / "sweep.pt"
    interrupt_sweep(monkeypatch, lambda: sgi.influence(run, val, damping=0.5, checkpoint=path))
    for other in (dict(), dict(damping=0.25)):
        with pytest.raises(sgi.Error, match="holds the sweep of another run, query or options"):
            sgi.influence(run, val, checkpoint=path, **other)
    np.testing.assert_array_equal(sgi.influence(run, val, damping=0.5, checkpoint=path), whole)
