"""Augmentation inside a Dataset (the usual way: torchvision transforms in __getitem__, or
numpy / random noise): each step's items are read with the global generators seeded from the
step and the item, so training, retraining, the sweep and leave-one-out see the same
augmented items; a Dataset with randomness of its own is refused at the first step."""

import copy
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

import sgdinfluence as sgi
from oracle import unrolled_optimizer
from problems import small_problem
from sgdinfluence.errors import DataError


class Noisy(Dataset):
    """Training pairs with fresh noise at every read, drawn from one global generator."""

    def __init__(self, X, y, source):
        self.X, self.y, self.source = X, y, source
        self.own = np.random.default_rng()  # for source="own": never seeded by anyone

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        noise = {"torch": lambda: torch.randn(self.X.shape[1], dtype=torch.float64).numpy(),
                 "numpy": lambda: np.random.randn(self.X.shape[1]),  # noqa: NPY002
                 "random": lambda: np.array([random.gauss(0, 1)
                                             for _ in range(self.X.shape[1])]),
                 "own": lambda: self.own.standard_normal(self.X.shape[1])}[self.source]()
        return self.X[i] + 0.3 * torch.from_numpy(noise), self.y[i]


@pytest.mark.parametrize("source", ["torch", "numpy", "random"])
def test_augmentation_in_a_dataset_is_replayed(source):
    model, (X, y), val = small_problem()
    data = Noisy(X, y, source)
    state = torch.get_rng_state()
    run = sgi.fit(model, data, epochs=2, batch_size=8, lr=0.3, momentum=0.9)
    assert torch.equal(torch.get_rng_state(), state)  # the user's generator is untouched
    for p, q in zip(run.retrain([]).parameters(), run.model.parameters(), strict=True):
        assert torch.equal(p, q)
    # the oracle trains on the very items the run read: step t's batch as read at step t
    items = [run.train.batch(idx, run.seeds[t])[0] for t, idx in enumerate(run.batches)]
    query = lambda forward: F.cross_entropy(forward(val[0]), val[1])  # noqa: E731
    expected, _ = unrolled_optimizer(model, X, y, lambda o, t: F.cross_entropy(
        o, t, reduction="none"), run.batches, run.lrs, query, momentum=0.9,
        inputs=lambda t, x: items[t])
    scores = sgi.influence(run, val)
    assert np.abs(scores - expected.numpy()).max() / np.abs(expected.numpy()).max() < 1e-9
    plain = sgi.fit(model, (X, y), epochs=2, batch_size=8, lr=0.3, momentum=0.9)
    assert np.abs(sgi.influence(plain, val) - scores).max() > 1e-3  # the noise is there


def test_a_dataset_with_randomness_of_its_own_is_refused():
    model, (X, y), _ = small_problem()
    with pytest.raises(DataError, match=r"the Dataset Noisy gave item \d+ differently when read "
                       "again with the same seeds: .* draw it from those, or use "
                       r"fit\(augment=\)"):
        sgi.fit(model, Noisy(X, y, "own"), epochs=1, batch_size=8, lr=0.1)
    rec = sgi.Recorder(model, torch.optim.SGD(model.parameters(), lr=0.1), "cross_entropy",
                       Noisy(X, y, "own"))
    with pytest.raises(DataError, match="the Dataset Noisy gave item"):
        rec.step(torch.arange(8))


def test_recorder_workers_read_a_step_in_parallel_and_the_same_items():
    """Recorder(workers=2) reads each step's items in two processes, seeded per item: the same
    run as one process reading them."""
    model, (X, y), val = small_problem()
    runs = []
    for workers in (0, 2):
        m = copy.deepcopy(model)
        rec = sgi.Recorder(m, torch.optim.SGD(m.parameters(), lr=0.3), "cross_entropy",
                           Noisy(X, y, "numpy"), workers=workers)
        for idx in torch.randperm(len(X), generator=torch.Generator().manual_seed(0)).split(8):
            rec.step(idx)
        runs.append(rec.finish())
    for p, q in zip(runs[0].model.parameters(), runs[1].model.parameters(), strict=True):
        assert torch.equal(p, q)
    np.testing.assert_array_equal(sgi.influence(runs[0], val), sgi.influence(runs[1], val))
