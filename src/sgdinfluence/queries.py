"""Query vectors u = ∇_θ Q(θ[T]): what the influence of a training instance is measured on.

A query is one of
- a validation set ``(X, y)`` or Dataset: Q = its mean loss (the paper's choice);
- a callable ``model -> scalar tensor``;
- ``PerExample((X, y))``: one query per validation example (M = its size);
- a list of the above, stacked.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.func import grad, vmap
from torch.utils.data import Dataset

from . import losses
from ._data import as_tensors
from .train import Objective, Run, mode

CHUNK = 1024  # instances per forward pass when reducing over a validation set


class PerExample:
    """Ask for one score row per validation example, instead of one for their mean loss."""

    def __init__(self, data):
        self.data = data


def query_matrix(run: Run, query) -> tuple[torch.Tensor, bool]:
    """Stack the query gradients at θ[T] into U (M, P); also say whether a single query was
    given (so that the caller can return (N,) instead of (1, N))."""
    objective = run.objective()
    theta = objective.flatten()
    with mode(objective.model, train=False):
        if isinstance(query, list):
            if not query:
                raise ValueError("query is an empty list")
            return torch.cat([_rows(run, objective, theta, q) for q in query]), False
        rows = _rows(run, objective, theta, query)
    return rows, not isinstance(query, PerExample)


def _rows(run: Run, objective: Objective, theta: torch.Tensor, query) -> torch.Tensor:
    if isinstance(query, PerExample):
        x, y = _validation(run, query.data)
        g = vmap(grad(lambda th, xi, yi: objective.per_instance(th, xi[None], yi[None])[0]),
                 in_dims=(None, 0, 0))
        return torch.cat([g(theta, xc, yc) for xc, yc in _chunks(x, y)])
    if isinstance(query, Dataset) or (isinstance(query, tuple) and len(query) == 2):
        x, y = _validation(run, query)
        mean_loss = grad(lambda th, xc, yc: objective.per_instance(th, xc, yc).sum() / len(x))
        return sum(mean_loss(theta, xc, yc) for xc, yc in _chunks(x, y))[None]
    if callable(query):
        return _callable_row(objective, theta, query)[None]
    raise TypeError("query must be a validation set (X, y), a Dataset, a callable model -> "
                    f"scalar, PerExample(...) or a list of these; got {type(query).__name__}")


def _chunks(x: torch.Tensor, y: torch.Tensor):
    return zip(x.split(CHUNK), y.split(CHUNK), strict=True)


def _validation(run: Run, data) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = as_tensors(data, "query")
    X_train, y_train = run.train
    if x.shape[1:] != X_train.shape[1:]:
        raise ValueError(f"query X has instances of shape {tuple(x.shape[1:])}, but the model was "
                         f"trained on instances of shape {tuple(X_train.shape[1:])}")
    x = x.to(X_train.device, X_train.dtype)
    y = losses.prepare_targets(run.loss_fn, y, X_train.dtype if X_train.is_floating_point()
                               else torch.get_default_dtype()).to(y_train.device)
    if y.shape[1:] != y_train.shape[1:]:
        raise ValueError(f"query y has targets of shape {tuple(y.shape[1:])}, but the model was "
                         f"trained on targets of shape {tuple(y_train.shape[1:])}")
    return x, y


def _callable_row(objective: Objective, theta: torch.Tensor,
                  query: Callable[[nn.Module], torch.Tensor]) -> torch.Tensor:
    model = objective.model
    objective.load(theta)
    value = query(model)
    if not (torch.is_tensor(value) and value.numel() == 1):
        raise ValueError("a callable query must return a scalar tensor, got "
                         f"{type(value).__name__} {tuple(getattr(value, 'shape', ()))}")
    if not value.requires_grad:
        raise ValueError("a callable query must return a tensor that depends on the model's "
                         "parameters (it has no gradient)")
    grads = torch.autograd.grad(value.reshape(()), objective.params, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                      for g, p in zip(grads, objective.params, strict=True)])
