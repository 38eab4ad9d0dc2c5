"""The small float64 problem the exactness tests share: 5 features, a noisy linear boundary."""

import torch

from sgdinfluence.app.models import mlp


def small_problem(model_fn=lambda d: mlp(d, hidden=(8, 8)), n=40, n_val=30, d=5, seed=0):
    """A model (float64, initialised from ``seed``), training (n) and validation (n_val)
    pairs (X, y) with binary labels."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n + n_val, d, generator=g, dtype=torch.float64)
    y = (X[:, 0] + 0.5 * X[:, 1] + 0.7 * torch.randn(n + n_val, generator=g, dtype=torch.float64)
         > 0).long()
    torch.manual_seed(seed)
    return model_fn(d).double(), (X[:n], y[:n]), (X[n:], y[n:])
