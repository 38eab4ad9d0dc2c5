"""Estimators of the effect of leaving out each training instance, behind ``influence()``.

All return the same quantity, the change of the query when instance j is left out of
training, ``Q(θ_{-j}[T]) - Q(θ[T])`` (first-order estimates: ``⟨u, θ_{-j}[T] - θ[T]⟩``):

- ``"sgd"``: SGD-influence, Algorithm 2 over the recorded trajectory (``epochs=1``: last epoch;
  ``at="epochs"``: the query averaged over the ends of the epochs swept, not only at θ[T])
- ``"sgd-nohessian"``: the same sweep with the Hessian terms dropped (u held fixed)
- ``"tracin"``: TracIn as published, the query's gradient at each step (``every``: TracInCP;
  ``self_influence``: each instance its own query, ``query`` ignored)
- ``"influence-function"``: Koh & Liang at θ[T] (``solver``, ``damping``)
- ``"loo"``: the truth, by counterfactual retraining on the identical schedule
"""

from __future__ import annotations

import contextlib
import functools
import warnings

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from ...errors import Error
from .. import distributed
from ..objective import tracked_batch_norms
from ..queries import PerExample, Query
from ..tensors import as_indices
from ..train import Run
from .influence_function import influence_function
from .loo import leave_one_out
from .loo import leave_out as _leave_out
from .reliability import Reliability as Reliability
from .reliability import reliability as reliability
from .sgd import SweepFile, auto_epochs, sgd_influence
from .tracin import tracin

OPTIONS = {  # the options each method takes, besides indices and progress
    "sgd": {"epochs", "at", "checkpoint", "damping", "max_growth"},
    "sgd-nohessian": {"epochs", "at", "checkpoint"},
    "tracin": {"every", "self_influence"},
    "loo": {"chunk"},
    "influence-function": {"solver", "damping", "cg_rtol", "lissa_depth", "lissa_scale"},
}
METHODS = tuple(OPTIONS)
MAX_GROWTH = 10.0  # epochs="auto": sweep the epochs over which ‖u‖ grows at most 10x


def influence(run: Run, query, method: str = "sgd", *, indices=None, progress: bool = False,
              **options) -> np.ndarray:
    """Estimate, for every training instance j, how the query changes when j is left out of
    training. Negative = harmful (leaving j out lowers the validation loss).

    ``query``: a validation set ``(X, y)`` (its mean loss), a callable ``model -> scalar``,
    ``PerExample((X, y))`` or a list of these (None for TracIn's ``self_influence``).
    ``at="epochs"`` (``"sgd"``, ``"sgd-nohessian"``) measures the query averaged over the
    ends of the epochs swept (Q at the end of each epoch, θ[T] included) instead of at θ[T]
    alone, in the same single sweep: harm done while the model learned a failure still
    counts once the failure has saturated, when leaving out any one culprit no longer
    changes the final model (docs/design.md, "Targets").
    ``checkpoint`` (``"sgd"``, ``"sgd-nohessian"``): a file path where the sweep saves its
    state at each epoch start, so that a long sweep that is interrupted continues from there
    when called again with the same arguments (the result is the same as without; another
    number of threads may continue it); the file is removed when the sweep completes. Not in
    a process group.
    ``epochs="auto"`` (``"sgd"``): for each query, the most recent epochs over which the
    adjoint ‖u‖ grows at most ``max_growth`` times (10 by default): the scores of the sweep
    over the last k epochs, k chosen by that rule from one full sweep (whose state at each
    epoch start holds every last-k sweep's scores), at the cost of one sweep. Where the
    sweep amplifies u by orders of magnitude, the older epochs' terms carry the run's
    nonlinearity as much (docs/design.md, "Deep models").
    ``damping`` λ ≥ 0 (``"sgd"``): u ← u − η_t (H_t + λI) u, a step's contribution fading by
    about (1 − η λ) per later step (docs/design.md); 0, the default, is Algorithm 2.
    ``indices`` restricts the result to those training instances, in that order: integer
    indices, or a boolean mask of length N (the instances where it is True, ascending).
    Returns (N,) or (len(indices),) for a single query, (M, N) or (M, len(indices)) for
    several.
    """
    if not isinstance(run, Run):
        raise TypeError(f"run must be a Run from sgi.fit or sgi.load_run, got {type(run).__name__}")
    run.check()
    if method not in OPTIONS:
        raise Error(f"unknown method {method!r}; use one of {list(METHODS)}")
    unknown = set(options) - OPTIONS[method]
    if unknown:
        raise TypeError(f"method {method!r} takes no option {sorted(unknown)}; "
                        f"its options are {sorted(OPTIONS[method])}")
    epochs = options.get("epochs")
    if epochs == "auto" and method == "sgd":
        if options.get("at", "end") != "end" or options.get("checkpoint") is not None:
            raise Error("epochs='auto' chooses among sweeps of the query at θ[T] in one "
                        "uninterrupted sweep: use it with at='end' and without checkpoint")
        if distributed.world()[1] > 1:
            raise Error("epochs='auto' is not supported in a process group; pass epochs=k")
    elif epochs is not None and (not isinstance(epochs, int) or isinstance(epochs, bool)
                                 or not 1 <= epochs <= run.epochs):
        extra = " or 'auto'" if method == "sgd" else ""
        raise Error(f"epochs must be None{extra} or an int in [1, {run.epochs}], got {epochs!r}")
    elif "max_growth" in options:
        raise Error("max_growth is the rule of epochs='auto'; pass epochs='auto' with it")
    growth = options.get("max_growth", MAX_GROWTH)
    if isinstance(growth, bool) or not isinstance(growth, (int, float)) or not growth >= 1:
        raise Error(f"max_growth must be a number >= 1, got {growth!r}")
    damping = options.get("damping", 0.0) if method == "sgd" else 0.0
    if isinstance(damping, bool) or not isinstance(damping, (int, float)) or not (
            0 <= damping < float("inf")):
        raise Error(f"damping must be a finite number >= 0, got {damping!r}")
    if options.get("at", "end") not in ("end", "epochs"):
        raise Error(f"at must be 'end' or 'epochs', got {options['at']!r}")
    if options.get("checkpoint") is not None and distributed.world()[1] > 1:
        raise Error("checkpoint is not supported in a process group; sweep without it")
    every = options.get("every", 1)
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise Error(f"every must be an int >= 1, got {every!r}")
    idx = (torch.arange(run.num_train) if indices is None
           else as_indices(indices, run.num_train, "indices", allow_empty=False))
    if options.pop("self_influence", False):  # each instance its own query
        with math_attention(run):
            return tracin(run, None, progress=progress, **options)[0, idx].detach().cpu().numpy()
    q = Query(run, query)
    with math_attention(run):
        scores = _estimate(run, q, method, idx, progress, options)
    out = scores.detach().cpu().numpy()
    return out[0] if q.single else out


def _estimate(run: Run, q: Query, method: str, idx: torch.Tensor, progress: bool,
              options: dict) -> torch.Tensor:
    if method == "loo":
        scores = leave_one_out(run, q, idx, progress=progress, **options)
    elif method == "tracin":
        scores = tracin(run, q, progress=progress, **options)[:, idx]
    else:
        U = q.gradients(q.objective.flatten())
        if method == "influence-function":
            scores = influence_function(run, U, **options)[:, idx]
        elif options.get("epochs") == "auto":
            scores = _auto_epochs(run, q, U, progress, options)[:, idx]
        else:  # sgd, sgd-nohessian
            swept, ends = options.get("epochs") or run.epochs, {}
            stats = _statistics(run, q) if method == "sgd" else {}
            at, path = options.pop("at", "end"), options.pop("checkpoint", None)
            if at == "epochs":  # Q's mean over the swept epochs' ends
                U, ends = U / swept, _epoch_ends(run, q, swept, method == "sgd")
                stats = {n: v / swept for n, v in stats.items()}
            damped = {"damping": options["damping"]} if options.get("damping") else {}
            file = None if path is None else SweepFile(path, {
                "query": U, "start": run.store[0], "steps": run.num_steps, "method": method,
                "epochs": swept, "at": at} | damped)  # (files from before damping match)
            scores = sgd_influence(run, U, hessian=method == "sgd", progress=progress,
                                   checkpoints=ends, statistics=stats,
                                   resume=None if file is None else file.load(U.device),
                                   save=None if file is None else file.save,
                                   **options)[:, idx]
            if file is not None:
                file.done()
    return scores


def _auto_epochs(run: Run, q: Query, U: torch.Tensor, progress: bool, options: dict
                 ) -> torch.Tensor:
    """``epochs="auto"``: one full sweep that keeps its scores at each epoch start (those of
    the sweep over the epochs after it) and ‖u‖ there; each query row's scores over the
    last k epochs, k by :func:`auto_epochs`."""
    norms: list[torch.Tensor] = []
    kept: dict[int, torch.Tensor] = {}

    def keep(state: dict) -> None:
        kept[state["t"]] = state["scores"].clone()  # the sweep goes on adding to it

    sgd_influence(run, U, progress=progress, statistics=_statistics(run, q), norms=norms,
                  save=keep, damping=options.get("damping", 0.0))
    k = auto_epochs(norms, options.get("max_growth", MAX_GROWTH))
    return torch.stack([kept[run.epoch_starts[run.epochs - int(km)]][m]
                        for m, km in enumerate(k)])


_said: set[str] = set()


@contextlib.contextmanager
def math_attention(run: Run):
    """Run attention with PyTorch's math kernel: the estimators differentiate a step twice
    (or under vmap), which its fused kernels (flash attention, on the CPU too) do not
    support. Training ran the default kernel; the two agree to rounding. Said once."""
    attention = [type(m).__name__ for m in run.model.modules() if "Attention" in type(m).__name__]
    if attention and "attention" not in _said:
        _said.add("attention")
        warnings.warn(f"the model has attention ({attention[0]}): influence runs "
                      "scaled_dot_product_attention with PyTorch's math kernel, which can be "
                      "differentiated twice (training used the default kernel; they agree to "
                      "rounding)", stacklevel=3)
    with sdpa_kernel(SDPBackend.MATH):
        yield


def _statistics(run: Run, q: Query, theta: torch.Tensor | None = None,
                buffers: dict | None = None) -> dict:
    """∂Q/∂r at θ[T] (or ``theta`` with the model's ``buffers`` then) for the batch-norm
    running statistics r the query reads (none when the model has no batch norm that
    tracks them)."""
    names = [f"{name}.{stat}" for name in tracked_batch_norms(run.model)
             for stat in ("running_mean", "running_var")]
    if not names:
        return {}
    return q.statistics_gradients(q.objective.flatten() if theta is None else theta, names,
                                  buffers)


def _epoch_ends(run: Run, q: Query, epochs: int, hessian: bool) -> dict:
    """The query's gradient at the end of each of the last ``epochs`` epochs but the last
    (θ[T]), as lazy terms of their mean, keyed by the step whose state they are taken at;
    with its gradient by the running statistics of that moment (``hessian``)."""
    ends = range(run.epochs - epochs + 1, run.epochs)  # epoch e starts where e - 1 ends
    return {run.epoch_starts[e]: functools.partial(_gradient_at, run, q, e, epochs, hessian)
            for e in ends}


def _gradient_at(run: Run, q: Query, epoch: int, epochs: int, hessian: bool
                 ) -> tuple[torch.Tensor, dict]:
    theta, buffers = run.unpack(run.store[run.epoch_starts[epoch]])[0], run.epoch_buffers[epoch]
    stats = _statistics(run, q, theta, buffers) if hessian else {}
    return q.gradients(theta, buffers) / epochs, {n: v / epochs for n, v in stats.items()}


def leave_out(run: Run, query, removed, *, chunk: int | None = None,
              progress: bool = False) -> np.ndarray:
    """The true change of the query when each set of training instances in ``removed`` (a
    sequence of K index sets or boolean masks) is left out, by retraining on the identical
    schedule, K runs at once: (K,) for a single query, (M, K) for several. Summed estimates
    compared with it over random subsets give the linear datamodeling score
    (:func:`sgdinfluence.metrics.lds`)."""
    if not isinstance(run, Run):
        raise TypeError(f"run must be a Run from sgi.fit or sgi.load_run, got {type(run).__name__}")
    run.check()
    sets = [as_indices(r, run.num_train, "removed") for r in removed]
    if not sets:
        raise Error("removed holds no index sets; pass a sequence of the sets of training "
                    "indices to leave out, e.g. [[3], [5, 7]]")
    q = Query(run, query)
    with math_attention(run):
        out = _leave_out(run, q, sets, chunk, progress).detach().cpu().numpy()
    return out[0] if q.single else out


def select(run: Run, query, k: int, *, method: str = "sgd", progress: bool = False
           ) -> np.ndarray:
    """The ``k`` training indices (k,) whose removal is estimated to lower ``query`` most,
    the most harmful first: the ones to remove to fix a failure on a target set.

    The strategy (docs/design.md, "Targets"): rank by the estimated effect on the query
    averaged over the ends of the epochs (``at="epochs"``), not at θ[T] alone, in one sweep.
    A failure the model has learned from a group of instances (a backdoor's poisoned rows,
    say) saturates: at θ[T] leaving out any one of them changes little, since the others
    carry it, and their individual estimates drown among instances with larger single
    effects. While the failure is being learned their effects are large and add up, and the
    average over epochs keeps them. ``method``: ``"sgd"`` or ``"sgd-nohessian"``. ``query``
    is a single query (a target set's mean loss, or a callable).
    """
    if method not in ("sgd", "sgd-nohessian"):
        raise Error(f"select's method must be 'sgd' or 'sgd-nohessian', got {method!r}")
    if isinstance(query, (list, PerExample)):
        raise Error("select needs a single query (a target set's mean loss or a callable), "
                    "not a list or PerExample")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int, got {type(k).__name__} {k!r}")
    if not 1 <= k < run.num_train:
        raise Error(f"k must be in [1, {run.num_train}), got {k}")
    scores = influence(run, query, method, at="epochs", progress=progress)
    return np.argsort(scores, kind="stable")[:k]
