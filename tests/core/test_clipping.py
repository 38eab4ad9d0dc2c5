"""Gradient clipping (``max_grad_norm``, ``clip_grad_value``) as part of the recorded step:
fit and the recorder train as a torch loop with ``torch.nn.utils.clip_grad_*_``, and the
sweep and leave-one-out retraining equal the oracle unrolled through the clipped updates
(tests/oracle.py, which clips per tensor as torch does). A clip the recorder did not take
is refused."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import sgdinfluence as sgi
from oracle import unroll, unrolled_optimizer
from problems import per_sample, small_problem
from sgdinfluence.errors import ConfigError, Error

# name: (fit's optimizer options, torch optimizer, its options, weight decay)
CONFIGS = {
    "sgd": (dict(), torch.optim.SGD, dict(), 0.0),
    "momentum": (dict(momentum=0.9), torch.optim.SGD, dict(momentum=0.9), 0.0),
    "adamw": (dict(optimizer="adamw"), torch.optim.AdamW, dict(), 0.01),
}
CLIPS = {"norm": dict(max_grad_norm=0.4), "value": dict(clip_grad_value=0.05),
         "both": dict(clip_grad_value=0.1, max_grad_norm=0.4)}


def torch_loop(model, train, batches, lrs, make, options, weight_decay, clip):
    """A user's loop: mean loss, backward, torch's clip functions, step. Returns the model
    and how many steps the norm clip engaged (of how many)."""
    model = copy.deepcopy(model)
    opt = make(model.parameters(), lr=lrs[0], weight_decay=weight_decay, **options)
    engaged = 0
    for idx, lr in zip(batches, lrs, strict=True):
        opt.param_groups[0]["lr"] = lr
        opt.zero_grad()
        per_sample(model(train[0][idx]), train[1][idx]).mean().backward()
        if "clip_grad_value" in clip:
            torch.nn.utils.clip_grad_value_(model.parameters(), clip["clip_grad_value"])
        if "max_grad_norm" in clip:
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip["max_grad_norm"])
            engaged += bool(norm > clip["max_grad_norm"])
        opt.step()
    return model, engaged


def fitted(name, clip, seed=0):
    options, make, torch_options, wd = CONFIGS[name]
    model, train, val = small_problem(seed=seed)
    run = sgi.fit(model, train, epochs=3, batch_size=7, lr=0.3 if name != "adamw" else 0.02,
                  weight_decay=wd, seed=1, **options, **clip)
    return model, train, val, run


@pytest.mark.parametrize("clip", CLIPS)
@pytest.mark.parametrize("name", CONFIGS)
def test_the_oracle_clips_as_torch_does(name, clip):
    options, make, torch_options, wd = CONFIGS[name]
    model, train, val, run = fitted(name, CLIPS[clip])
    trained, engaged = torch_loop(model, train, run.batches, run.lrs, make, torch_options, wd,
                                  CLIPS[clip])
    if "max_grad_norm" in CLIPS[clip]:
        assert 0 < engaged < run.num_steps  # the clip both engages and lets steps pass
    w = torch.ones(len(train[0]), dtype=torch.float64)
    final, _, _ = unroll(model, *train, per_sample, run.batches, run.lrs, w, create_graph=False,
                         optimizer=options.get("optimizer", "sgd"),
                         momentum=options.get("momentum", 0.0), weight_decay=wd,
                         **CLIPS[clip])
    for p, q in zip(trained.parameters(), final, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("clip", CLIPS)
@pytest.mark.parametrize("name", CONFIGS)
def test_fit_trains_clipped_and_the_sweep_equals_the_oracle(name, clip):
    options, make, torch_options, wd = CONFIGS[name]
    model, train, val, run = fitted(name, CLIPS[clip])
    trained, _ = torch_loop(model, train, run.batches, run.lrs, make, torch_options, wd,
                            CLIPS[clip])
    for p, q in zip(run.model.parameters(), trained.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    query = lambda forward: F.cross_entropy(forward(val[0]), val[1])  # noqa: E731
    expected, _ = unrolled_optimizer(model, *train, per_sample, run.batches, run.lrs, query,
                                     optimizer=options.get("optimizer", "sgd"),
                                     momentum=options.get("momentum", 0.0), weight_decay=wd,
                                     **CLIPS[clip])
    scores = sgi.influence(run, val)
    assert np.abs(expected.numpy()).max() > 1e-4
    assert np.abs(scores - expected.numpy()).max() / np.abs(expected.numpy()).max() < 1e-9
    unclipped = sgi.fit(model, train, epochs=3, batch_size=7, lr=run.lrs[0], weight_decay=wd,
                        seed=1, **options)
    assert np.abs(sgi.influence(unclipped, val) - scores).max() > 1e-3  # the clip matters


def test_leave_one_out_retrains_with_the_clip():
    """Vectorised leave-one-out (several runs stacked, each clipped by its own norm) equals
    literal retraining by the oracle with w_j = 0."""
    model, train, val, run = fitted("momentum", CLIPS["norm"])
    loo = sgi.influence(run, val, method="loo", indices=[0, 5, 9])
    val_loss = lambda params, names: F.cross_entropy(  # noqa: E731
        torch.func.functional_call(model, dict(zip(names, params, strict=True)), (val[0],)),
        val[1])
    names = [n for n, _ in model.named_parameters()]
    w = torch.ones(len(train[0]), dtype=torch.float64)
    base = val_loss(unroll(model, *train, per_sample, run.batches, run.lrs, w,
                           create_graph=False, momentum=0.9, max_grad_norm=0.4)[0], names)
    for j, value in zip([0, 5, 9], loo, strict=True):
        wj = w.clone()
        wj[j] = 0
        left = val_loss(unroll(model, *train, per_sample, run.batches, run.lrs, wj,
                               create_graph=False, momentum=0.9, max_grad_norm=0.4)[0], names)
        assert abs(value - (left - base).item()) < 1e-12


def test_the_recorder_clips_and_matches_the_users_loop_and_the_oracle():
    model, train, val, run = fitted("momentum", CLIPS["both"])
    user = copy.deepcopy(model)
    opt = torch.optim.SGD(user.parameters(), lr=0.3, momentum=0.9)
    rec = sgi.Recorder(user, opt, "cross_entropy", train, **CLIPS["both"])
    for idx in run.batches:
        rec.step(idx)
    recorded = rec.finish()
    trained, _ = torch_loop(model, train, run.batches, run.lrs, torch.optim.SGD,
                            dict(momentum=0.9), 0.0, CLIPS["both"])
    for p, q in zip(user.parameters(), trained.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(sgi.influence(recorded, val), sgi.influence(run, val),
                               rtol=1e-9, atol=1e-12)
    same = recorded.retrain([])
    for p, q in zip(same.parameters(), user.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def test_a_clip_the_recorder_did_not_take_is_refused():
    model, train, _ = small_problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9)

    def clip(optimizer, args, kwargs):  # the way a user might clip in a hook
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.01)

    opt.register_step_pre_hook(clip)
    rec = sgi.Recorder(model, opt, "cross_entropy", train)
    with pytest.raises(Error, match=r"at step 0 the optimizer moved the parameters .* pass "
                       r"max_grad_norm= or clip_grad_value= to the Recorder instead"):
        rec.step([0, 1, 2, 3])


def test_clipping_with_a_coupled_decay_is_refused():
    model, train, _ = small_problem()
    with pytest.raises(ConfigError, match="clipping with a coupled weight decay .* use adamw"):
        sgi.fit(model, train, epochs=1, batch_size=7, lr=0.1, weight_decay=0.01,
                max_grad_norm=1.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=0.01)
    with pytest.raises(ConfigError, match="clipping with a coupled weight decay"):
        sgi.Recorder(model, opt, "cross_entropy", train, max_grad_norm=1.0)
    for bad in (0, -1.0, float("nan"), "1", True):
        with pytest.raises(ConfigError, match="max_grad_norm must be None or a finite number"):
            sgi.fit(model, train, epochs=1, batch_size=7, lr=0.1, max_grad_norm=bad)
