"""Algorithm 1 and 2 with torch's optimizers: fit trains exactly as a torch.optim loop, and
SGD-influence equals the oracle unrolled through each optimizer (tests/oracle.py)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import sgdinfluence as sgi
from oracle import unrolled_optimizer
from problems import per_sample, small_problem
from sgdinfluence.app.models import logistic_regression, mlp
from sgdinfluence.errors import ConfigError

# name: (fit's options, (the torch optimizer, its options)); weight decay 0.01 throughout
CONFIGS = {
    "momentum": (dict(momentum=0.9), (torch.optim.SGD, dict(momentum=0.9))),
    "dampening": (dict(momentum=0.9, dampening=0.1),
                  (torch.optim.SGD, dict(momentum=0.9, dampening=0.1))),
    "nesterov": (dict(momentum=0.9, nesterov=True),
                 (torch.optim.SGD, dict(momentum=0.9, nesterov=True))),
    "adam": (dict(optimizer="adam"), (torch.optim.Adam, {})),
    "adamw": (dict(optimizer="adamw"), (torch.optim.AdamW, {})),
}
MODELS = {"logreg": logistic_regression, "mlp": lambda d: mlp(d, hidden=(8, 8))}
WD = 0.01


def decaying(t):
    return 0.1 / np.sqrt(t + 1)


def run_of(name, model_name="mlp", **extra):
    options, _ = CONFIGS[name]
    model, train, val = small_problem(MODELS[model_name])
    run = sgi.fit(model, train, epochs=3, batch_size=7, lr=decaying, weight_decay=WD, seed=1,
                  **options, **extra)
    return model, train, val, run


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("name", CONFIGS)
def test_fit_trains_as_a_torch_optim_loop(name, model_name):
    model, train, _, run = run_of(name, model_name)
    cls, options = CONFIGS[name][1]
    torch_model = model  # fit trained a copy: this is θ[0]
    opt = cls(torch_model.parameters(), lr=run.lrs[0], weight_decay=WD, foreach=False,
              **options)
    X, y = train
    for idx, lr in zip(run.batches, run.lrs, strict=True):
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad()
        F.cross_entropy(torch_model(X[idx]), y[idx]).backward()
        opt.step()
    for p, q in zip(run.model.parameters(), torch_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    # and the recorded optimizer state is torch's, before the last step's update
    assert run.store[run.num_steps - 1].numel() == (1 + run.optimizer.slots) * sum(
        p.numel() for p in model.parameters())


def oracle_options(name):
    options = {"optimizer": "sgd", **CONFIGS[name][0]}
    return options


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("name", CONFIGS)
def test_influence_matches_the_oracle_unrolled_through_the_optimizer(name, model_name):
    model, train, val, run = run_of(name, model_name)
    query = lambda forward: F.cross_entropy(forward(val[0]), val[1])  # noqa: E731
    expected, final = unrolled_optimizer(model, *train, per_sample, run.batches, run.lrs, query,
                                         weight_decay=WD, **oracle_options(name))
    for p, q in zip(run.model.parameters(), final, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    scores = sgi.influence(run, val)
    assert np.abs(expected.numpy()).max() > 1e-4
    assert np.abs(scores - expected.numpy()).max() / np.abs(expected.numpy()).max() < 1e-9


@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_last_epoch_and_dropout_and_stores(name, tmp_path):
    """The last-epoch sweep against the oracle from its first step; with dropout, the three
    stores give identical scores; retraining with nothing left out is the run."""
    model, train, val, run = run_of(name)
    query = lambda forward: F.cross_entropy(forward(val[0]), val[1])  # noqa: E731
    last = run.epoch_starts[-1]
    expected, _ = unrolled_optimizer(model, *train, per_sample, run.batches, run.lrs, query,
                                     weight_decay=WD, from_step=last, **oracle_options(name))
    scores = sgi.influence(run, val, epochs=1)
    assert np.abs(scores - expected.numpy()).max() / np.abs(expected.numpy()).max() < 1e-9

    options = CONFIGS[name][0]
    torch.manual_seed(0)
    dropout = mlp(5, hidden=(16,), dropout=0.3).double()
    results = []
    for store in ("memory", "replay", sgi.DiskStore(tmp_path / "run")):
        r = sgi.fit(dropout, train, epochs=3, batch_size=7, lr=decaying, weight_decay=WD,
                    store=store, **options)
        results.append(sgi.influence(r, val))
        same = r.retrain([], from_epoch=1)
        for p, q in zip(same.parameters(), r.model.parameters(), strict=True):
            assert torch.equal(p, q)
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])
    loaded = sgi.load_run(tmp_path / "run")
    assert loaded.optimizer == r.optimizer
    np.testing.assert_array_equal(sgi.influence(loaded, val), results[0])


def test_an_lr_schedule_is_recorded_per_step():
    model, train, _ = small_problem(MODELS["logreg"])
    schedule = sgi.LRSchedule(0.1, lambda opt: torch.optim.lr_scheduler.StepLR(opt, 4, 0.5))
    run = sgi.fit(model, train, epochs=2, batch_size=10, lr=schedule, optimizer="adam")
    assert run.lrs == [0.1] * 4 + [0.05] * 4
    per_epoch = sgi.LRSchedule(0.1, lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1, 0.5),
                               every="epoch")
    run = sgi.fit(model, train, epochs=2, batch_size=10, lr=per_epoch)
    assert run.lrs == [0.1] * 4 + [0.05] * 4


@pytest.mark.parametrize("options, message", [
    (dict(optimizer="rmsprop"), "unknown optimizer 'rmsprop'"),
    (dict(nesterov=True), "nesterov needs momentum > 0 and dampening 0"),
    (dict(optimizer="adam", momentum=0.9), "momentum, dampening and nesterov are options of sgd"),
    (dict(optimizer="adam", betas=(0.9, 1.0)), "betas is out of range"),
    (dict(momentum=-0.1), "momentum is out of range"),
])
def test_unsupported_settings_are_refused(options, message):
    model, train, _ = small_problem(MODELS["logreg"])
    with pytest.raises(ConfigError, match=message):
        sgi.fit(model, train, epochs=1, batch_size=10, lr=0.1, **options)


@pytest.mark.parametrize("name", ["nesterov", "adamw"])
def test_vectorised_leave_one_out_is_literal_retraining(name):
    _, _, val, run = run_of(name)
    true = sgi.influence(run, val, method="loo", indices=[0, 5, 17])
    base = F.cross_entropy(run.model(val[0]), val[1]).item()
    for j, value in zip([0, 5, 17], true, strict=True):
        model = run.retrain([j])
        with torch.no_grad():
            assert value == pytest.approx(F.cross_entropy(model(val[0]), val[1]).item() - base,
                                          rel=1e-9, abs=1e-15)
