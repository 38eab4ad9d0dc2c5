"""Estimators of the effect of leaving out each training instance, behind ``influence()``."""

from __future__ import annotations

import numpy as np

from ..queries import query_matrix
from ..train import Run
from .sgd import sgd_influence

METHODS = ("sgd",)


def influence(run: Run, query, method: str = "sgd", epochs: int | None = None,
              progress: bool = False) -> np.ndarray:
    """Estimate, for every training instance j, how the query changes when j is left out of
    training: ``⟨u, θ_{-j}[T] - θ[T]⟩`` with u the gradient of the query at θ[T].

    Negative = harmful (leaving j out lowers the validation loss). Returns (N,) for a single
    query, (M, N) for several (a list, or ``PerExample``).
    """
    if not isinstance(run, Run):
        raise TypeError(f"run must be a Run from sgi.fit or sgi.load_run, got {type(run).__name__}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {list(METHODS)}")
    if epochs is not None and not (isinstance(epochs, int) and 1 <= epochs <= run.epochs):
        raise ValueError(f"epochs must be None or an int in [1, {run.epochs}], got {epochs!r}")
    U, single = query_matrix(run, query)
    scores = sgd_influence(run, U, epochs=epochs, progress=progress).cpu().numpy()
    return scores[0] if single else scores
