"""The small float64 problem the exactness tests share: 5 features, a noisy linear boundary."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sgdinfluence.app.models import mlp


def per_sample(outputs, targets):
    """The oracle's per-instance loss: cross-entropy, one value per row."""
    return F.cross_entropy(outputs, targets, reduction="none")


def val_loss(val):
    """The query: the mean cross-entropy on ``val`` = (X, y), as a function of the forward."""
    return lambda forward: F.cross_entropy(forward(val[0]), val[1])


def rel_err(a, b):
    """The largest difference relative to the largest magnitude of ``b``."""
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b).max() / np.abs(b).max()


def small_problem(model_fn=lambda d: mlp(d, hidden=(8, 8)), n=40, n_val=30, d=5, seed=0):
    """A model (float64, initialised from ``seed``), training (n) and validation (n_val)
    pairs (X, y) with binary labels."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n + n_val, d, generator=g, dtype=torch.float64)
    y = (X[:, 0] + 0.5 * X[:, 1] + 0.7 * torch.randn(n + n_val, generator=g, dtype=torch.float64)
         > 0).long()
    torch.manual_seed(seed)
    return model_fn(d).double(), (X[:n], y[:n]), (X[n:], y[n:])


class Interrupted(Exception):
    """A checkpointed sweep stopped on purpose, as a kill would stop it."""


def interrupt_sweep(monkeypatch, sweep, after: int = 1) -> list[int]:
    """Call ``sweep()`` (an influence call with ``checkpoint=``) and stop it right after its
    ``after``-th save, the file left as a kill would leave it; the steps it saved at."""
    from sgdinfluence.core.estimators.sgd import SweepFile

    real, saves = SweepFile.save, []

    def save_then_stop(self, state):
        real(self, state)
        saves.append(state["t"])
        if len(saves) == after:
            raise Interrupted

    with monkeypatch.context() as m:
        m.setattr(SweepFile, "save", save_then_stop)
        with pytest.raises(Interrupted):
            sweep()
    return saves
