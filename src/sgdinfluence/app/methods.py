"""The registry of ways to rank training instances for removal, one entry per method.

Every method returns scores (N,) for the run's training instances, signed alike: the
instances to remove first come first in ``np.argsort(scores)``. The influence methods
estimate the change of validation loss when the instance is left out (negative = removing it
helps); the others are the paper's and the practitioner's baselines. ``cleanse``, ``report``,
every experiment and the command line read this registry and nothing else.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from types import MappingProxyType

import numpy as np
import torch

from ..core.data import Tensors
from ..core.estimators import influence
from ..core.objective import mode
from ..core.train import Run, fit
from ..errors import ConfigError
from .models import features

INFLUENCE, DETECTOR, BASELINE = "influence", "detector", "baseline"
AUTO = "auto"  # not a method: cleanse's choice of one from the data (app/diagnose.py)


@dataclass(frozen=True)
class Method:
    """A scoring method: its name, its label in reports, its kind (``"influence"``: an
    estimate of the change of validation loss; ``"detector"``: a suspicion heuristic;
    ``"baseline"``), and the function ``(run, val, *, seed, progress, **options) -> (N,)``
    with its default options."""

    name: str
    label: str
    kind: str
    fn: Callable[..., np.ndarray] = field(repr=False)
    options: Mapping = field(default_factory=lambda: MappingProxyType({}))

    def score(self, run: Run, val, *, seed: int = 0, progress: bool = False) -> np.ndarray:
        return self.fn(run, val, seed=seed, progress=progress, **self.options)


def _influence(run: Run, val, *, seed: int, progress: bool, **options) -> np.ndarray:
    return influence(run, val, progress=progress, **options)


def _self_influence(run: Run, val, *, seed: int, progress: bool) -> np.ndarray:
    return -influence(run, None, "tracin", self_influence=True, progress=progress)


def _training_loss(run: Run, val, *, seed: int, progress: bool) -> np.ndarray:
    objective = run.objective()
    with torch.no_grad(), mode(objective.model, train=False):
        theta = objective.flatten()
        loss = torch.cat([objective.per_instance(theta, x, y) for x, y in run.train.chunks()])
    return -loss.double().cpu().numpy()


def _isolation_forest(run: Run, val, *, seed: int, progress: bool) -> np.ndarray:
    from sklearn.ensemble import IsolationForest

    F = torch.cat([features(run.model, x) for x, _ in run.train.chunks()]).double().cpu().numpy()
    return IsolationForest(random_state=seed).fit(F).score_samples(F)


def _autoencoder(run: Run, val, *, seed: int, progress: bool, hidden: int = 32) -> np.ndarray:
    """Minus the squared error of a one-hidden-layer autoencoder on the standardised inputs."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor
    from sklearn.preprocessing import StandardScaler

    X = torch.cat([x.flatten(1) for x, _ in run.train.chunks()])  # read whole: sklearn's model
    Z = StandardScaler().fit_transform(X.double().cpu().numpy())
    ae = MLPRegressor(hidden_layer_sizes=(min(hidden, Z.shape[1]),), max_iter=50,
                      early_stopping=False, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ae.fit(Z, Z)
    return -np.square(ae.predict(Z) - Z).sum(1)


def require_cleanlab():
    """The cleanlab modules, or an ImportError that says how to install them."""
    try:
        import cleanlab.filter
        import cleanlab.rank
    except ImportError as e:
        raise ImportError("comparing with cleanlab needs it installed: pip install "
                          "sgdinfluence[bench] (or pip install 'cleanlab>=2.6')") from e
    return cleanlab.rank, cleanlab.filter


def cross_val_probs(make_model, X: torch.Tensor, y: torch.Tensor, *, folds: int,
                    split_seed: int, **train) -> tuple[np.ndarray, list]:
    """Out-of-fold predicted probabilities (N, C) of the model class ``make_model()``.

    ``StratifiedKFold(folds, shuffle, split_seed)`` on the (noisy) labels; each fold's model is
    trained with ``fit(make_model(), (X[fit_idx], y[fit_idx]), **train)`` and predicts only
    the held-out instances. Returns the probabilities and the [(fit_idx, held_out)] splits.
    """
    from sklearn.model_selection import StratifiedKFold

    splits = list(StratifiedKFold(folds, shuffle=True, random_state=split_seed)
                  .split(np.zeros(len(y)), y.cpu().numpy()))
    probs: np.ndarray | None = None
    for fit_idx, held in splits:
        run = fit(make_model(), (X[fit_idx], y[fit_idx]), **train)
        with torch.no_grad(), mode(run.model, train=False):
            p = torch.cat([torch.softmax(run.model(x), 1) for x in X[held].split(2048)])
        if probs is None:
            probs = np.full((len(y), p.shape[1]), np.nan)
        probs[held] = p.double().cpu().numpy()
    assert probs is not None and not np.isnan(probs).any()
    return probs, splits


def _cleanlab(run: Run, val, *, seed: int, progress: bool, folds: int = 5) -> np.ndarray:
    """cleanlab's label-quality scores from out-of-fold probabilities of the run's model,
    trained from its initial state with its settings on each fold."""
    rank, _ = require_cleanlab()
    if not isinstance(run.train, Tensors) or isinstance(run.config.lr, str):
        raise ConfigError("the cleanlab method needs training data in memory and a constant "
                          "learning rate")

    def make_model() -> torch.nn.Module:
        model = copy.deepcopy(run.model)
        model.load_state_dict(run.initial_state)
        return model

    opt = asdict(run.optimizer)
    X, y = run.train.X, run.train.y
    probs, _ = cross_val_probs(
        make_model, X, y, folds=folds, split_seed=seed, loss=run.loss_fn, epochs=run.epochs,
        batch_size=run.config.batch_size, lr=run.config.lr, weight_decay=run.config.weight_decay,
        seed=run.config.seed, augment=run.augment, optimizer=opt.pop("name"), **opt)
    return rank.get_label_quality_scores(y.cpu().numpy(), probs)


def _random(run: Run, val, *, seed: int, progress: bool) -> np.ndarray:
    return np.random.default_rng(seed).random(run.num_train)


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("sgd", "SGD-influence, all epochs (Algorithm 2)", INFLUENCE, _influence,
           MappingProxyType({"method": "sgd"})),
    Method("sgd-last", "SGD-influence, last epoch only", INFLUENCE, _influence,
           MappingProxyType({"method": "sgd", "epochs": 1})),
    Method("sgd-nohessian", "SGD-influence without the Hessian term", INFLUENCE, _influence,
           MappingProxyType({"method": "sgd-nohessian"})),
    # the query averaged over the epochs' ends: what sgi.select ranks by (docs/design.md)
    Method("sgd-epochs", "SGD-influence on the query over training (sgi.select)", INFLUENCE,
           _influence, MappingProxyType({"method": "sgd", "at": "epochs"})),
    Method("sgd-nohessian-epochs", "SGD-influence without the Hessian, query over training",
           INFLUENCE, _influence, MappingProxyType({"method": "sgd-nohessian", "at": "epochs"})),
    Method("tracin", "TracIn (Pruthi et al.), every step", INFLUENCE, _influence,
           MappingProxyType({"method": "tracin"})),
    Method("tracin-self", "TracIn self-influence, highest first", DETECTOR, _self_influence),
    # H need not be positive definite away from a convex optimum, so CG can fail; the
    # truncated Neumann series (LiSSA, as in Koh & Liang's code) always returns.
    Method("influence-function", "influence functions (Koh & Liang), LiSSA, damping 0.01",
           INFLUENCE, _influence, MappingProxyType({
               "method": "influence-function", "solver": "lissa", "damping": 0.01,
               "lissa_depth": 100})),
    Method("training-loss", "highest training loss first", DETECTOR, _training_loss),
    Method("isolation-forest", "isolation forest on penultimate-layer features", DETECTOR,
           _isolation_forest),
    Method("autoencoder", "highest autoencoder reconstruction error first", DETECTOR,
           _autoencoder),
    Method("cleanlab", "cleanlab label quality, 5-fold (needs the bench extra)", DETECTOR,
           _cleanlab),
    Method("random", "random order", BASELINE, _random),
)}


def get(name: str) -> Method:
    """The registered method ``name``."""
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; use one of {list(METHODS)}")
    return METHODS[name]


def check(names, known: Mapping = METHODS, auto: bool = False) -> tuple[str, ...]:
    """``names`` as a tuple, refused unless non-empty and every one is in ``known`` (or, with
    ``auto``, is ``"auto"``: the method the data calls for, chosen by ``cleanse``)."""
    names = tuple(names)
    unknown = [m for m in names if m not in known and not (auto and m == AUTO)]
    if unknown or not names:
        choices = [AUTO, *known] if auto else list(known)
        raise ConfigError(f"unknown methods {unknown}; use some of {choices}")
    return names


def score(run: Run, method: str, val, *, seed: int = 0, progress: bool = False) -> np.ndarray:
    """Scores (N,) of the registered ``method`` for the run's training instances."""
    return get(method).score(run, val, seed=seed, progress=progress)
