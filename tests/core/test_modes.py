"""Modules in eval mode inside a training model (a frozen backbone's batch norm, a disabled
dropout): recorded as the user's loop set them, replayed by retraining, the sweep and
leave-one-out, and left as the user set them. Checked against a torch loop and the oracle
(tests/oracle.py) put in the same modes. (Batch norm's running statistics, updated while it
trains and read once it is frozen, are constants here as in the oracle, whose torch kernels
do not differentiate their updates: their dependence on the data is issue 21's to add.)"""

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import sgdinfluence as sgi
from oracle import unroll, unrolled_optimizer
from problems import per_sample

N, D = 40, 5


def problem():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(N + 30, D, generator=g, dtype=torch.float64)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).long()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(D, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.3),
                          nn.Linear(8, 2)).double()
    model[1].running_mean.normal_(0, 0.5, generator=g)  # statistics from a "pretraining"
    model[1].running_var.uniform_(0.5, 2.0, generator=g)
    batches = [b for _ in range(3) for b in torch.randperm(N, generator=g).split(8)]
    return model, (X[:N], y[:N]), (X[N:], y[N:]), batches


def frozen_from(step):
    """The user's modes at step t: BN (module "1") frozen from ``step`` on, dropout off."""
    return lambda t: {"1", "3"} if t >= step else {"3"}


def user_loop(model, train, batches, modes, recorder=None):
    opt = recorder.optimizer if recorder else torch.optim.SGD(model.parameters(), lr=0.2,
                                                                momentum=0.9)
    for t, idx in enumerate(batches):
        model.train()
        for name, m in model.named_modules():
            if name in modes(t):
                m.eval()
        if recorder is not None:
            recorder.step(idx)
        else:
            opt.zero_grad()
            F.cross_entropy(model(train[0][idx]), train[1][idx]).backward()
            opt.step()
    return model


def test_a_recorded_loop_with_parts_in_eval_mode_is_replayed_exactly():
    model, train, val, batches = problem()
    for modes in (frozen_from(0), frozen_from(7)):
        plain = user_loop(copy.deepcopy(model), train, batches, modes)
        mine = copy.deepcopy(model)
        rec = sgi.Recorder(mine, torch.optim.SGD(mine.parameters(), lr=0.2, momentum=0.9),
                           "cross_entropy", train)
        user_loop(mine, train, batches, modes, rec)
        run = rec.finish()
        assert mine[1].training is False and mine[0].training is True  # as the user left it
        for p, q in zip(mine.state_dict().values(), plain.state_dict().values(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
        w = torch.ones(N, dtype=torch.float64)
        final, _, _ = unroll(copy.deepcopy(model), *train, per_sample, batches,
                             [0.2] * len(batches), w, momentum=0.9, create_graph=False,
                             eval_modules=modes)
        for p, q in zip(plain.parameters(), final, strict=True):  # the oracle is torch's loop
            torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
        query = lambda forward: F.cross_entropy(forward(val[0]), val[1])  # noqa: E731
        expected, _ = unrolled_optimizer(copy.deepcopy(model), *train, per_sample, batches,
                                         [0.2] * len(batches), query, momentum=0.9,
                                         eval_modules=modes)
        scores = sgi.influence(run, val)
        assert np.abs(scores - expected.numpy()).max() / np.abs(expected.numpy()).max() < 1e-9
        same = run.retrain([])
        for p, q in zip(same.state_dict().values(), mine.state_dict().values(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
        if modes(0) == {"1", "3"}:  # BN wholly frozen: vectorised leave-one-out is literal
            wj = w.clone()
            wj[3] = 0
            _, _, forward = unroll(copy.deepcopy(model), *train, per_sample, batches,
                                   [0.2] * len(batches), wj, momentum=0.9, create_graph=False,
                                   eval_modules=modes)
            with torch.no_grad():
                truth = (F.cross_entropy(forward(val[0]), val[1]) -
                         F.cross_entropy(same(val[0]), val[1])).item()
            loo = sgi.influence(run, val, method="loo", indices=[3])
            assert abs(loo[0] - truth) < 1e-12


def test_fit_keeps_the_parts_a_training_model_has_in_eval_mode(tmp_path):
    model, train, val, batches = problem()
    model.train()
    model[1].eval()
    run = sgi.fit(model, train, epochs=2, batch_size=8, lr=0.2)
    assert run.eval_modules == [[0, ["1"]]] and model[1].training is False
    query = lambda forward: F.cross_entropy(forward(val[0]), val[1])  # noqa: E731
    no_dropout = copy.deepcopy(model)  # dropout trains in train mode: the oracle without it
    no_dropout[3].p = 0.0
    run = sgi.fit(no_dropout, train, epochs=2, batch_size=8, lr=0.2)
    expected, _ = unrolled_optimizer(copy.deepcopy(no_dropout), *train, per_sample,
                                     run.batches, run.lrs, query, eval_modules=lambda t: {"1"})
    scores = sgi.influence(run, val)
    assert np.abs(scores - expected.numpy()).max() / np.abs(expected.numpy()).max() < 1e-9
    run.save(tmp_path / "r.run")
    np.testing.assert_array_equal(sgi.influence(sgi.load_run(tmp_path / "r.run"), val), scores)
    model.eval()  # wholly in eval mode: trained wholly in train mode, as before
    assert sgi.fit(model, train, epochs=1, batch_size=8, lr=0.2).eval_modules == []
