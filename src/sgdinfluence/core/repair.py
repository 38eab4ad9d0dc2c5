"""Repair a failure on a target set in rounds, and how many instances each round removes.

    fixed = sgi.repair(run, target=(X_q, y_q), holdout=(X_h, y_h), val=(X_v, y_v))
    fixed.removed        # the training indices removed, round after round (R,)
    fixed.model          # the model trained without them
    fixed.rounds         # what each round removed and measured

A round ranks the training instances of the current run (by default as :func:`select` does:
SGD-influence on the target's loss averaged over the ends of the epochs), chooses how many to
remove (:func:`choose_k`: a grid of k, each removal retrained on the identical schedule from
the start and measured on the target's held-out half and the validation set, then refined by
bisection), removes them, and trains again on the instances kept; the next round ranks that
new run. It stops as soon as the target's held-out error is no longer significantly above the
validation error (what the model can do on data like its training data), when no k lowers the
mistakes significantly, or when a budget (rows removed, trainings, rounds) is spent.

Why rounds: a failure learned from a group (a backdoor's poisoned rows) is carried by the
members the first ranking missed; once the others are gone, they stand out in the new run.
Why bisection: a grid of k spaced 3x apart can only remove 3x what was needed, or too few;
between the chosen k and the one below it, the smallest k as good as the best is found.

Choosing k uses McNemar's test (one-sided, ``z``) on the instances judged (validation, then
the target's held-out half): a k is admitted only if its removal turned significantly more of
them from wrong to right than from right to wrong, and did not make validation alone
significantly worse (a repair may not cost accuracy elsewhere); the best admitted k
has the lowest error (the validation error, or with a target the mean of it and the target
error); the k chosen is the smallest admitted k that the best is not significantly better
than, on the validation set nor on the held-out target (tested apart: the churn of a large
validation set would hide a worse target). Another round follows
only while the target's held-out error is significantly above the validation error (a
one-sided two-proportion test) and the round lowered it significantly below the previous
result (McNemar's test on the held-out target alone): a target that is harder than the
validation data by its nature (a trigger makes its inputs unusual) would otherwise send
round after round after clean rows.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, DataError, Error
from . import losses
from .data import Tensors
from .estimators import influence
from .objective import mode
from .tensors import CHUNK, as_tensors
from .train import Run, fit

Z = 1.645  # one-sided 5%
GRID = (1, 3, 10, 30, 100, 300, 1000, 3000, 10000, 30000, 100000)  # 3x apart, roughly
METHODS = ("sgd", "sgd-nohessian")
RETRAIN = ("all", "fresh")
STOPPED = {
    "fixed": "the target's held-out error is no longer significantly above the validation "
             "error",
    "no gain": "no k lowered the mistakes significantly",
    "stalled": "a round did not lower the target's held-out error significantly (after the "
               "first, such a round is undone), though it stays above the validation error "
               "(the target may be harder by nature)",
    "rows": "the budget of rows to remove is spent",
    "trainings": "the budget of trainings is spent",
    "rounds": "the rounds asked for are done",
}


# --- measuring a model ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Measured:
    """A model's mistakes on the validation set and on the target's held-out half (one bool
    per instance; ``target`` None without a target) and its test error (None without a test
    set)."""

    val: np.ndarray
    target: np.ndarray | None = None
    test: float | None = None

    @property
    def val_error(self) -> float:
        return float(self.val.mean())

    @property
    def target_error(self) -> float | None:
        return None if self.target is None else float(self.target.mean())

    @property
    def error(self) -> float:
        """What k is chosen by: the validation error, or with a target the mean of it and the
        target's held-out error (each set counts alike, whatever its size)."""
        return self.val_error if self.target is None else (self.val_error +
                                                           float(self.target.mean())) / 2

    @property
    def judged(self) -> np.ndarray:
        """Every judged instance's mistake: validation, then the target's held-out half."""
        return self.val if self.target is None else np.concatenate([self.val, self.target])

    def as_dict(self) -> dict:
        return {"val_error": self.val_error, "target_error": self.target_error,
                "test_error": self.test}

    def __repr__(self) -> str:
        return "Measured(" + ", ".join(f"{k}={v:.4f}" for k, v in self.as_dict().items()
                                       if v is not None) + ")"


def better(before: Measured, after: Measured, z: float = Z) -> bool:
    """Whether ``after`` turned significantly more judged instances from wrong to right than
    from right to wrong, relative to ``before`` (McNemar's test, one-sided)."""
    b, a = before.judged, after.judged
    fixed, broken = int((b & ~a).sum()), int((~b & a).sum())
    return fixed - broken > z * math.sqrt(fixed + broken)


def lowered(before: Measured, after: Measured, z: float = Z) -> bool:
    """Whether ``after`` got significantly fewer of the target's held-out instances wrong
    than ``before`` (McNemar's test on those alone, one-sided)."""
    if before.target is None or after.target is None:
        return False
    return better(Measured(val=before.target), Measured(val=after.target), z)


def above(m: Measured, z: float = Z) -> bool:
    """Whether the target's held-out error is significantly above the validation error: the
    failure is not yet repaired."""
    return m.target is not None and exceeds(m.target, m.val, z)


def exceeds(a: np.ndarray, b: np.ndarray, z: float = Z) -> bool:
    """Whether the rate of True in ``a`` is significantly above that in ``b`` (independent
    samples; a one-sided two-proportion z-test with the pooled rate)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    p = (a.sum() + b.sum()) / (len(a) + len(b))
    spread = math.sqrt(p * (1 - p) * (1 / len(a) + 1 / len(b)))
    return bool(a.mean() - b.mean() > z * spread) if spread > 0 else False


# --- choosing k ----------------------------------------------------------------------------------

def pick(curve: Mapping[int, Measured], z: float = Z) -> int:
    """The k to remove, from the measurements ``curve`` (k -> Measured, k = 0 the model as
    trained). Admitted: k = 0 and the k significantly better than it that are not
    significantly worse on validation alone (:func:`spares_validation`); the best admitted k
    has the lowest error (the smallest k on ties); the smallest admitted k that the best is
    not significantly better than (:func:`as_good`: on validation, nor on the held-out
    target) is chosen."""
    if 0 not in curve:
        raise Error("curve needs k = 0, the model as trained")
    base = curve[0]
    admitted = [k for k in sorted(curve) if k == 0 or (
        better(base, curve[k], z) and spares_validation(curve[k], base, z))]
    best = min(admitted, key=lambda k: (curve[k].error, k))
    return next(k for k in admitted if k <= best and as_good(curve[k], curve[best], z))


def spares_validation(m: Measured, base: Measured, z: float = Z) -> bool:
    """Whether ``m`` is not significantly worse than ``base`` on the validation set alone: a
    repair of the target may not cost accuracy elsewhere (the target's gain, tested together
    with validation, would otherwise hide that cost)."""
    return not better(Measured(val=m.val), Measured(val=base.val), z)


def as_good(m: Measured, best: Measured, z: float = Z) -> bool:
    """Whether ``best`` is not significantly better than ``m`` on the validation set, nor on
    the target's held-out half (McNemar's test, one-sided): tested apart, so that the churn
    of a large validation set (every retraining flips some of its instances both ways) does
    not hide a worse target."""
    sets = [(m.val, best.val)] + ([] if m.target is None or best.target is None else
                                  [(m.target, best.target)])
    return not any(better(Measured(val=a), Measured(val=b), z) for a, b in sets)


def choose_k(measure: Callable[[int], Measured], ks, *, known: Mapping[int, Measured] | None = None,
             z: float = Z, refine: bool = True, probes: int = 6, resolution: float = 0.1
             ) -> tuple[int, dict[int, Measured]]:
    """The k to remove and every measurement taken: ``measure(k)`` measures the model without
    the ranking's k first (k = 0: as trained); ``known`` holds measurements already taken.

    The grid ``ks`` first; then, with ``refine``, at most ``probes`` more k: one between the
    best k and the next k above it (a minimum between grid points), then bisection between
    the chosen k and the largest k below it until they are ``resolution`` of k apart (or 1),
    so that the k chosen is the smallest as good as the best, not the grid point above it."""
    curve: dict[int, Measured] = dict(known or {})
    for k in (0, *sorted(set(ks))):
        if k not in curve:
            curve[k] = measure(k)
    left = probes if refine else 0
    ks_above = [k for k in curve if k > _best(curve, z)]
    if left and ks_above:
        best, up = _best(curve, z), min(ks_above)
        if up - best > max(1, resolution * up):
            curve[(best + up) // 2] = measure((best + up) // 2)
            left -= 1
    while left:
        k = pick(curve, z)
        below = max((j for j in curve if j < k), default=0)
        if k == 0 or k - below <= max(1, resolution * k):
            break
        curve[(below + k) // 2] = measure((below + k) // 2)
        left -= 1
    return pick(curve, z), dict(sorted(curve.items()))


def _best(curve: Mapping[int, Measured], z: float) -> int:
    admitted = [k for k in sorted(curve) if k == 0 or better(curve[0], curve[k], z)]
    return min(admitted, key=lambda k: (curve[k].error, k))


# --- repair in rounds ----------------------------------------------------------------------------

@dataclass(frozen=True)
class RepairConfig:
    """How :func:`repair` runs; saved with its result.

    ``method``: how each round ranks (``"sgd"``, ``"sgd-nohessian"``: as :func:`select`, on
    the target's loss over the epochs' ends; or a callable, see :func:`repair`).
    ``rounds``: ``"auto"`` (until repaired or a budget is spent, at most ``MAX_ROUNDS``) or
    at most this many. ``ks``: each round's grid (default: 1, 3, 10, 30, ... up to the rows
    left). ``refine``: bisect after the grid (:func:`choose_k`). ``retrain``: what a round's
    result is, ``"all"`` the removal retrained on the run's identical schedule from the
    start, ``"fresh"`` a new training of the kept rows with a new seed (and, for a run of
    :func:`fit`, a new initialisation); the next round ranks a new training of the kept rows
    either way. ``max_removed`` (default: a fifth of the training set) and
    ``max_trainings`` (default 60; a retraining or a new training counts one) are the
    budgets. ``z``: the tests' one-sided quantile (1.645: 5%)."""

    method: str = "sgd"
    rounds: int | str = "auto"
    ks: tuple[int, ...] | None = None
    refine: bool = True
    retrain: str = "all"
    max_removed: int | None = None
    max_trainings: int = 60
    z: float = Z

    MAX_ROUNDS = 10

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {list(METHODS)} or a callable (run, "
                              f"target) -> scores, got {self.method!r}")
        if self.rounds != "auto" and (isinstance(self.rounds, bool) or
                                      not isinstance(self.rounds, (int, np.integer)) or
                                      self.rounds < 1):
            raise ConfigError(f"rounds must be 'auto' or an int >= 1, got {self.rounds!r}")
        if self.ks is not None:
            ks = tuple(self.ks)
            if not ks or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1
                             for k in ks):
                raise ConfigError(f"ks must be ints >= 1, got {self.ks!r}")
            object.__setattr__(self, "ks", tuple(sorted(set(int(k) for k in ks))))
        if self.retrain not in RETRAIN:
            raise ConfigError(f"retrain must be one of {list(RETRAIN)}, got {self.retrain!r}")
        for name in ("max_removed", "max_trainings"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer))
                                  or v < 1):
                raise ConfigError(f"{name} must be an int >= 1, got {v!r}")
        if not (isinstance(self.z, (int, float)) and math.isfinite(self.z) and self.z > 0):
            raise ConfigError(f"z must be a finite number > 0, got {self.z!r}")

    @property
    def most_rounds(self) -> int:
        return self.MAX_ROUNDS if self.rounds == "auto" else int(self.rounds)


@dataclass
class Round:
    """One round: the ``k`` training indices it removed (of the original run, ``removed``),
    the run it ranked as trained (``start``), the result after the removal (``after``: see
    ``RepairConfig.retrain``), every k it measured (``curve``), its trainings and seconds.
    ``undone``: a round after the first whose result did not lower the target's held-out
    error significantly below the last result; its rows stay in, its model is not kept."""

    round: int
    k: int
    removed: np.ndarray
    start: Measured
    after: Measured
    curve: dict[int, Measured] = field(repr=False)
    trainings: int
    seconds: float
    undone: bool = False  # its removal did not lower the target below the last result

    def as_dict(self) -> dict:
        return {"round": self.round, "k": self.k, "removed": self.removed.tolist(),
                "undone": self.undone,
                "start": self.start.as_dict(), "after": self.after.as_dict(),
                "curve": {str(k): m.as_dict() for k, m in self.curve.items()},
                "trainings": self.trainings, "seconds": self.seconds}


@dataclass
class Repair:
    """What :func:`repair` did: ``removed`` (R,) the training indices removed, in the order
    removed; ``model`` the model without them (see ``RepairConfig.retrain``); ``run`` the
    last run ranked; ``rounds``; ``before`` / ``after`` the measurements of the model as
    trained and of ``model``; ``stopped`` why it stopped (a key of ``STOPPED``);
    ``trainings`` in all (the first training not counted when a run was given)."""

    removed: np.ndarray
    model: nn.Module
    run: Run
    rounds: list[Round]
    before: Measured
    after: Measured
    stopped: str
    trainings: int
    seconds: float
    config: RepairConfig

    @property
    def why(self) -> str:
        """Why it stopped, in words."""
        return STOPPED[self.stopped]

    def as_dict(self) -> dict:
        config = asdict(self.config)
        if callable(self.config.method):
            config["method"] = getattr(self.config.method, "__name__", "callable")
        return {"removed": self.removed.tolist(), "rounds": [r.as_dict() for r in self.rounds],
                "before": self.before.as_dict(), "after": self.after.as_dict(),
                "stopped": self.stopped, "why": self.why, "trainings": self.trainings,
                "seconds": self.seconds, "config": config}


def repair(run_or_fit: Run | Callable[[np.ndarray | None], Run], target, holdout, *, val,
           test=None, method: str | Callable = "sgd", rounds: int | str = "auto", ks=None,
           refine: bool = True, retrain: str = "all", max_removed: int | None = None,
           max_trainings: int = 60, z: float = Z,
           mistakes: Callable[[nn.Module, object], np.ndarray] | None = None,
           refit: Callable[[np.ndarray], Run] | None = None, progress: bool = False) -> Repair:
    """Remove training instances, round after round, until the model works on the target.

    ``run_or_fit``: a :class:`Run`, or a callable ``fit(keep)`` that trains on the training
    instances ``keep`` (an index array into the whole training set; ``None`` the first time:
    all of them) and returns their Run, in that order. ``refit``: such a callable for the
    new trainings of the kept rows after the first round; by default ``run_or_fit`` when it
    is one, else the run's own recipe (:func:`fit` again from its θ[0], with its settings
    and seed; that needs a run of :func:`fit` with its data in memory and a constant
    learning rate). ``target``: the query (a target set ``(X, y)``, its mean loss);
    ``holdout``: the target's held-out half ``(X, y)``, never queried, which with ``val``
    (validation data ``(X, y)``) chooses k and tells when the failure is repaired; ``test``
    ``(X, y)``, measured and reported, never used to decide.

    ``method``: ``"sgd"`` or ``"sgd-nohessian"`` (ranked as :func:`select` ranks), or a
    callable ``(run, target) -> scores`` (N,) of the run's training instances, the ones to
    remove first lowest. The other options are :class:`RepairConfig`'s. ``mistakes``: a
    callable ``(model, data) -> bool array`` of the instances ``model`` gets wrong; by
    default the argmax of the outputs (cross_entropy) or their sign (bce) against ``y``.
    """
    how = None if isinstance(method, str) or not callable(method) else method
    cfg = RepairConfig(method=method if isinstance(method, str) or how is None else "sgd",  # type: ignore[arg-type]
                       rounds=rounds,
                       ks=None if ks is None else tuple(ks), refine=refine, retrain=retrain,
                       max_removed=max_removed, max_trainings=max_trainings, z=z)
    if how is not None:
        object.__setattr__(cfg, "method", how)
    start = time.perf_counter()
    trainings = 0
    if refit is not None and not callable(refit):
        raise TypeError(f"refit must be a callable keep -> Run, got {type(refit).__name__}")
    if isinstance(run_or_fit, Run):
        needed = refit is None and (cfg.most_rounds > 1 or cfg.retrain == "fresh")
        run, retrain_kept = run_or_fit, _refit(run_or_fit) if needed else None
    elif callable(run_or_fit):
        refit = refit or run_or_fit
        run, retrain_kept = _checked_run(run_or_fit(None), None), None
        trainings += 1
    else:
        raise TypeError(f"run_or_fit must be a Run from sgi.fit or a callable keep -> Run, got "
                        f"{type(run_or_fit).__name__}")

    def again(keep: np.ndarray, round_: int, fresh: bool) -> Run:
        """A new training of the kept rows, the next round's run."""
        if retrain_kept is not None:
            return retrain_kept(keep, round_, fresh)
        assert refit is not None
        return _checked_run(refit(keep), keep)
    run.check()
    n = run.num_train
    limit = max(1, n // 5) if cfg.max_removed is None else cfg.max_removed
    if limit >= n:
        raise ConfigError(f"max_removed must be below the training set's {n} instances, got "
                          f"{limit}")
    wrong = _mistakes_fn(run, mistakes)
    sets = {"target": _data(target, "target", mistakes), "holdout": _data(holdout, "holdout",
                                                                          mistakes),
            "val": _data(val, "val", mistakes)}
    test_data = None if test is None else _data(test, "test", mistakes)

    def measured(model: nn.Module) -> Measured:
        return Measured(val=wrong(model, sets["val"]), target=wrong(model, sets["holdout"]),
                        test=None if test_data is None else float(wrong(model,
                                                                        test_data).mean()))

    def rank(run: Run) -> np.ndarray:
        if how is not None:
            scores = np.asarray(how(run, sets["target"]), dtype=float)
            if scores.shape != (run.num_train,):
                raise DataError(f"method returned scores of shape {scores.shape}; expected one "
                                f"per training instance of the run, ({run.num_train},)")
        else:
            scores = influence(run, sets["target"], cfg.method, at="epochs", progress=progress)
        return np.argsort(scores, kind="stable")

    kept = np.arange(n)
    removed: list[np.ndarray] = []
    done: list[Round] = []
    before = now = result = measured(run.model)  # result: the last round's, measured
    model, stopped = run.model, "rounds"
    for r in range(1, cfg.most_rounds + 1):
        # the run this round ranks is ``run``, its model measured ``now``
        rows_left = limit - sum(map(len, removed))
        left = cfg.max_trainings - trainings
        grid = [k for k in (cfg.ks or GRID) if k <= min(rows_left, run.num_train - 1)]
        if rows_left < 1 or not grid:
            stopped = "rows"
        elif left < 1:
            stopped = "trainings"
        else:
            stopped = ""
        if stopped:
            break
        began, used, start_m = time.perf_counter(), trainings, now
        order = rank(run)
        grid = grid[-left:]  # a budget too small for the grid keeps its largest k
        models: dict[int, nn.Module] = {}

        def removal(k: int, run=run, order=order, models=models) -> Measured:
            retrained = run.retrain(order[:k], from_epoch=0)
            got = measured(retrained)
            models[k] = retrained.cpu()  # kept until the round has chosen
            return got

        k, curve = choose_k(removal, grid, known={0: now}, z=cfg.z, refine=cfg.refine,
                            probes=max(0, min(6, left - len(grid))))
        trainings += len(models)
        if k == 0:
            done.append(Round(r, 0, np.empty(0, np.int64), now, now, curve,
                              trainings - used, time.perf_counter() - began))
            stopped = "no gain"
            break
        gone, kept_now = kept[order[:k]], np.delete(kept, order[:k])
        device = next(run.model.parameters()).device
        last_round = r == cfg.most_rounds
        if cfg.retrain == "fresh":
            fresh_run = again(kept_now, r, True)
            trainings += 1
            after, candidate = measured(fresh_run.model), fresh_run.model
        else:
            after, candidate = curve[k], models[k].to(device)
        models.clear()
        done.append(Round(r, k, gone, start_m, after, curve, trainings - used,
                          time.perf_counter() - began))
        if r > 1 and not lowered(result, after, cfg.z):  # judged on the last result, not on
            done[-1].undone = True  # the new training (a bad draw, maybe): undone
            stopped = "stalled"
            break
        removed.append(gone)
        kept, model = kept_now, candidate
        if cfg.retrain == "fresh":
            run, now = fresh_run, after
        if not above(after, cfg.z):
            stopped = "fixed"
            break
        if not lowered(result, after, cfg.z):  # round 1 kept as a cleansing
            stopped = "stalled"
            break
        result = after
        rows_left = limit - sum(map(len, removed))
        if last_round:
            stopped = "rounds"
        elif rows_left < min(cfg.ks or GRID):
            stopped = "rows"
        elif cfg.retrain == "all" and cfg.max_trainings - trainings < 2:  # a new run and a k
            stopped = "trainings"
        if stopped:
            break
        if cfg.retrain == "all":  # the next round ranks a new training of the kept rows
            run = again(kept, r, False)
            trainings += 1
            now = measured(run.model)
            done[-1].trainings, done[-1].seconds = trainings - used, time.perf_counter() - began
    last = measured(model)
    return Repair(np.concatenate(removed) if removed else np.empty(0, np.int64), model, run,
                  done, before, last, stopped or "rounds", trainings,
                  time.perf_counter() - start, cfg)


def _checked_run(run, keep: np.ndarray | None) -> Run:
    if not isinstance(run, Run):
        raise TypeError(f"run_or_fit, a callable, must return a Run (sgi.fit's), got "
                        f"{type(run).__name__}")
    if keep is not None and run.num_train != len(keep):
        raise DataError(f"run_or_fit({len(keep)} instances) returned a run of {run.num_train} "
                        "training instances; it must train on exactly the instances keep names")
    return run


def _refit(run: Run) -> Callable[[np.ndarray, int, bool], Run]:
    """The run's recipe on the kept rows: the same model class from θ[0], loss, settings and
    seed (a ``fresh`` round: a new seed and initialisation)."""
    if not isinstance(run.train, Tensors):
        raise ConfigError("repair re-fits the run on the kept rows, which needs its training "
                          "data as tensors in memory; pass refit, a callable keep -> Run that "
                          "trains on the rows keep")
    cfg, train = run.config, run.train
    if isinstance(cfg.lr, str) or isinstance(cfg.weight_decay, tuple) or cfg.epochs < 1:
        raise ConfigError("repair re-fits the run on the kept rows, which needs a run of "
                          "sgi.fit with a constant learning rate and one weight decay; pass "
                          "refit, a callable keep -> Run that trains on the rows keep")
    lr, decay = float(cfg.lr), float(cfg.weight_decay)  # type: ignore[arg-type]

    def refit(keep: np.ndarray, round_: int, fresh: bool) -> Run:
        model = copy.deepcopy(run.model)
        model.load_state_dict(run.initial_state)
        seed = cfg.seed
        if fresh:
            seed = (cfg.seed + 1000 * round_) % 2**63
            _reinitialise(model, seed)
        opt = asdict(run.optimizer)
        idx = torch.as_tensor(keep, device=train.X.device)
        return fit(model, (train.X[idx], train.y[idx]), run.loss_fn, epochs=cfg.epochs,
                   batch_size=min(cfg.batch_size, len(keep)), lr=lr, weight_decay=decay,
                   seed=seed, augment=run.augment, optimizer=opt.pop("name"), **opt)

    return refit


def _reinitialise(model: nn.Module, seed: int) -> None:
    """New parameters, drawn as each module draws its own (``reset_parameters``)."""
    torch.manual_seed(seed)
    for m in model.modules():
        own = list(m.parameters(recurse=False))
        if own and not hasattr(m, "reset_parameters"):
            raise ConfigError(f"retrain='fresh' draws new parameters with each module's "
                              f"reset_parameters, which {type(m).__name__} lacks; pass "
                              "refit, a callable keep -> Run that trains afresh")
        if own:
            getattr(m, "reset_parameters")()  # noqa: B009 (a Module's attribute, untyped)


def _data(data, name: str, mistakes):
    """``(X, y)`` as tensors (checked here, at the entry point), or as given when the caller
    measures mistakes with its own function."""
    if mistakes is not None:
        return data
    if data is None:
        raise DataError(f"{name} is required: a pair (X, y)")
    return as_tensors(data, name)


def _mistakes_fn(run: Run, mistakes) -> Callable[[nn.Module, object], np.ndarray]:
    if mistakes is not None:
        if not callable(mistakes):
            raise TypeError(f"mistakes must be a callable (model, data) -> bool array, got "
                            f"{type(mistakes).__name__}")

        def checked(model: nn.Module, data) -> np.ndarray:
            return np.asarray(mistakes(model, data), dtype=bool)
        return checked
    if run.loss_fn not in (losses.cross_entropy, losses.bce):
        raise ConfigError("repair counts mistakes by the argmax (cross_entropy) or the sign "
                          "(bce) of the outputs; for another loss pass mistakes, a callable "
                          "(model, data) -> bool array of the instances the model gets wrong")
    binary = run.loss_fn is losses.bce

    @torch.no_grad()
    def wrong(model: nn.Module, data) -> np.ndarray:
        X, y = data
        p = next(model.parameters())
        with mode(model, train=False):
            out = torch.cat([model(x.to(p.device, p.dtype)).cpu() for x in X.split(CHUNK)])
        pred = (out.reshape(len(y)) > 0).long() if binary else out.argmax(1)
        return (pred != y.long().reshape(len(y))).numpy()
    return wrong
