"""The same exactness on a GPU: run where CUDA is available, skipped elsewhere (this
project's CI has no GPU; benchmarks/gpu_check.py runs these checks and the speed figures on a
lent machine)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import sgdinfluence as sgi
from oracle import unrolled_optimizer
from problems import small_problem
from sgdinfluence.app.models import mlp

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def problem(device, dropout=0.0, seed=0):
    model, train, val = small_problem(lambda d: mlp(d, hidden=(8, 8), dropout=dropout),
                                      seed=seed)
    return (model.to(device), tuple(a.to(device) for a in train),
            tuple(a.to(device) for a in val))


@pytest.mark.parametrize("options", [{}, {"momentum": 0.9}, {"optimizer": "adam"}])
def test_influence_on_cuda_matches_the_oracle_in_float64(options):
    model, train, val = problem("cuda")
    run = sgi.fit(model, train, epochs=3, batch_size=7, lr=lambda t: 0.1 / np.sqrt(t + 1),
                  weight_decay=0.01, **options)
    assert next(run.model.parameters()).is_cuda and run.store[0].is_cuda
    expected, _ = unrolled_optimizer(
        model, *train, lambda o, t: F.cross_entropy(o, t, reduction="none"), run.batches,
        run.lrs, lambda forward: F.cross_entropy(forward(val[0]), val[1]), weight_decay=0.01,
        **{"optimizer": "sgd", **options})
    expected = expected.cpu().numpy()
    scores = sgi.influence(run, val)
    assert np.abs(scores - expected).max() / np.abs(expected).max() < 1e-9


def test_replay_and_retraining_repeat_the_run_on_cuda():
    model, train, val = problem("cuda", dropout=0.3)
    memory = sgi.fit(model, train, epochs=3, batch_size=7, lr=0.1, momentum=0.9)
    replay = sgi.fit(model, train, epochs=3, batch_size=7, lr=0.1, momentum=0.9, store="replay")
    for t in range(memory.num_steps):
        assert torch.equal(memory.store[t], replay.store[t])
    np.testing.assert_array_equal(sgi.influence(memory, val), sgi.influence(replay, val))
    for p, q in zip(memory.retrain([]).parameters(), memory.model.parameters(), strict=True):
        assert torch.equal(p, q)
