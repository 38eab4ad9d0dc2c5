"""One score per training instance from every method a cleanser compares: lower = more harmful.

``score(run, method, val)`` returns (N,) for the run's training set. The influence methods
estimate the change of validation loss when the instance is left out (negative = removing
it helps); the others are the paper's and the practitioner's baselines, signed so that the
instances to remove first come first in ``np.argsort(scores)``.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.ensemble import IsolationForest
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPRegressor
from sklearn.preprocessing import StandardScaler

from .errors import ConfigError
from .estimators import influence
from .models import features
from .queries import _chunks
from .train import Run, mode

METHODS = {
    "sgd": "SGD-influence, all epochs (Algorithm 2)",
    "sgd-last": "SGD-influence, last epoch only",
    "tracin": "TracIn (the sweep without the Hessian term)",
    "influence-function": "influence functions (Koh & Liang), LiSSA, damping 0.01",
    "training-loss": "highest training loss first",
    "isolation-forest": "isolation forest on penultimate-layer features",
    "autoencoder": "highest autoencoder reconstruction error first",
    "random": "random order",
}


def score(run: Run, method: str, val, *, seed: int = 0, progress: bool = False) -> np.ndarray:
    """Scores (N,) of ``method`` (a key of ``METHODS``) for the run's training instances."""
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; use one of {list(METHODS)}")
    if method in ("sgd", "sgd-last", "tracin"):
        return influence(run, val, "tracin" if method == "tracin" else "sgd",
                         epochs=1 if method == "sgd-last" else None, progress=progress)
    if method == "influence-function":
        # H need not be positive definite away from a convex optimum, so CG can fail; the
        # truncated Neumann series (LiSSA, as in Koh & Liang's code) always returns.
        return influence(run, val, "influence-function", solver="lissa", damping=0.01,
                         lissa_depth=100)
    if method == "random":
        return np.random.default_rng(seed).random(run.num_train)
    X, y = run.train
    if method == "training-loss":
        objective = run.objective()
        with torch.no_grad(), mode(objective.model, train=False):
            theta = objective.flatten()
            loss = torch.cat([objective.per_instance(theta, xc, yc) for xc, yc in _chunks(X, y)])
        return -loss.double().cpu().numpy()
    if method == "isolation-forest":
        F = features(run.model, X).double().cpu().numpy()
        return IsolationForest(random_state=seed).fit(F).score_samples(F)
    return -_reconstruction_error(X.flatten(1).double().cpu().numpy(), seed)


def _reconstruction_error(X: np.ndarray, seed: int, hidden: int = 32) -> np.ndarray:
    """Squared error (N,) of a one-hidden-layer autoencoder on the standardised inputs."""
    Z = StandardScaler().fit_transform(X)
    ae = MLPRegressor(hidden_layer_sizes=(min(hidden, Z.shape[1]),), max_iter=50,
                      early_stopping=False, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ae.fit(Z, Z)
    return np.square(ae.predict(Z) - Z).sum(1)
