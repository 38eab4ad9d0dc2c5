"""Queries Q(θ): what the influence of a training instance is measured on.

A query is one of
- a validation set ``(X, y)`` or Dataset: Q = its mean loss (the paper's choice);
- a callable ``model -> scalar tensor``;
- ``PerExample((X, y))``: one query per validation example (M = its size);
- a list of the above, stacked.

:class:`Query` turns any of these into a vector Q(θ) (M,) of flat parameters, evaluated in
eval mode: its ``values`` (what leave-one-out retraining compares) and its ``gradients``
U = ∇_θ Q (M, P) (the u of Algorithm 2).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, grad, jacrev, vmap
from torch.utils.data import Dataset

from ..errors import DataError, Error
from . import losses
from .objective import batch_norm_written_out, mode
from .tensors import as_tensors, chunks
from .train import Run


class PerExample:
    """Ask for one score row per validation example, instead of one for their mean loss."""

    def __init__(self, data):
        self.data = data


class _Called(nn.Module):
    """Lets ``functional_call`` run a user's ``model -> scalar`` with parameters θ."""

    def __init__(self, model: nn.Module, fn: Callable[[nn.Module], torch.Tensor]):
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self) -> torch.Tensor:
        value = self.fn(self.model)
        if not (torch.is_tensor(value) and value.numel() == 1):
            raise Error("a callable query must return a scalar tensor, got "
                        f"{type(value).__name__} {tuple(getattr(value, 'shape', ()))}")
        return value.reshape(1)


class Query:
    """A parsed query: parts of kind "mean" / "each" (with data) or "call" (a callable)."""

    def __init__(self, run: Run, query):
        self.objective = run.objective()
        self.single = not isinstance(query, (list, PerExample))
        if isinstance(query, list) and not query:
            raise Error("query is an empty list")
        self.parts = [self._part(run, q) for q in (query if isinstance(query, list) else [query])]

    def _part(self, run: Run, q):
        if isinstance(q, PerExample):
            return ("each", *_validation(run, q.data, self.objective))
        if isinstance(q, Dataset) or (isinstance(q, tuple) and len(q) == 2):
            return ("mean", *_validation(run, q, self.objective))
        if callable(q):
            module = _Called(self.objective.model, q)
            self._check_differentiable(module, q)
            return ("call", module)
        raise TypeError("query must be a validation set (X, y), a Dataset, a callable model -> "
                        f"scalar, PerExample(...) or a list of these; got {type(q).__name__}")

    def _check_differentiable(self, module: _Called, q) -> None:
        """Evaluate a callable query once at θ[T] and refuse it if its value does not depend
        on the parameters through autograd (argmax, ``.item()``, ``torch.no_grad``): its
        gradient u, and so every score, would be zero."""
        theta = self.objective.flatten().requires_grad_()
        with mode(self.objective.model, train=False):
            value = self._call(module, theta)
        if not value.requires_grad:
            name = getattr(q, "__name__", type(q).__name__)
            raise Error(f"the callable query {name!r} cannot be differentiated with respect to "
                        "the model's parameters (it uses argmax, .item(), torch.no_grad or the "
                        "like), so every score would be 0; query a differentiable surrogate "
                        "instead, such as a loss on the validation data")

    def values(self, theta: torch.Tensor, buffers: dict | None = None) -> torch.Tensor:
        """Q(θ) (M,), a pure function of flat θ (P,) (vmappable for data queries), and of the
        model's ``buffers`` where given."""
        out = []
        with mode(self.objective.model, train=False):
            for kind, *args in self.parts:
                if kind == "call":
                    out.append(self._call(args[0], theta, buffers))
                    continue
                per = torch.cat([self.objective.per_instance(theta, xc, yc, buffers)
                                 for xc, yc in chunks(*args)])
                out.append(per.mean()[None] if kind == "mean" else per)
        return torch.cat(out)

    def statistics_gradients(self, theta: torch.Tensor, names: list[str],
                             buffers: dict | None = None) -> dict[str, torch.Tensor]:
        """∂Q/∂b (M, ...) for the model's buffers ``names`` (batch norm's running statistics,
        which training made, and which eval mode reads), at θ and the model's buffers (or
        ``buffers``)."""
        buffers = {n: b.detach() for n, b in self.objective.model.named_buffers()} | {
            n: b.detach() for n, b in (buffers or {}).items()}
        chosen = {n: buffers[n] for n in names}
        with batch_norm_written_out(self.objective.model):
            return jacrev(lambda b: self.values(theta.detach(), {**buffers, **b}))(chosen)

    def gradients(self, theta: torch.Tensor, buffers: dict | None = None) -> torch.Tensor:
        """U = ∇_θ Q(θ) (M, P), reducing over the validation data chunk by chunk; with the
        model's ``buffers`` (batch-norm statistics) of that moment, if given."""
        per_instance = self.objective.per_instance
        rows = []
        with mode(self.objective.model, train=False), _buffers(self.objective.model, buffers):
            for kind, *args in self.parts:
                if kind == "call":
                    rows.append(grad(lambda th, m=args[0]: self._call(m, th)[0])(theta)[None])
                elif kind == "mean":
                    n = len(args[0])
                    g = grad(lambda th, xc, yc: per_instance(th, xc, yc).sum() / n)  # noqa: B023
                    rows.append(sum(g(theta, xc, yc) for xc, yc in chunks(*args))[None])
                else:
                    each = vmap(grad(lambda th, xi, yi: per_instance(th, xi[None], yi[None])[0]),
                                in_dims=(None, 0, 0))
                    rows.append(torch.cat([each(theta, xc, yc) for xc, yc in chunks(*args)]))
        return torch.cat(rows)

    def _call(self, module: _Called, theta: torch.Tensor, buffers: dict | None = None
              ) -> torch.Tensor:
        state = self.objective.views(theta, prefix="model.")
        if buffers is not None:
            state.update({"model." + n: b for n, b in buffers.items()})
        return functional_call(module, state, ())


@contextlib.contextmanager
def _buffers(model: nn.Module, buffers: dict | None):
    """Evaluate with ``buffers`` loaded into the model, then put its own back."""
    if not buffers:
        yield
        return
    saved = {n: b.clone() for n, b in model.named_buffers()}
    model.load_state_dict(buffers, strict=False)
    try:
        yield
    finally:
        model.load_state_dict(saved, strict=False)


def query_matrix(run: Run, query) -> tuple[torch.Tensor, bool]:
    """U = ∇_θ Q(θ[T]) (M, P), and whether a single query was given (so that the caller can
    return (N,) rather than (1, N))."""
    q = Query(run, query)
    return q.gradients(q.objective.flatten()), q.single


def _validation(run: Run, data, objective) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = as_tensors(data, "query")
    train = run.train
    if tuple(x.shape[1:]) != train.x_shape:
        raise DataError(f"query X has instances of shape {tuple(x.shape[1:])}, but the model was "
                        f"trained on instances of shape {train.x_shape}")
    x = x.to(train.device, train.dtype if x.is_floating_point() else x.dtype)
    y = losses.prepare_targets(run.loss_fn, y, train.dtype if train.dtype.is_floating_point
                               else torch.get_default_dtype(), "query").to(train.device)
    if tuple(y.shape[1:]) != train.y_shape:
        raise DataError(f"query y has targets of shape {tuple(y.shape[1:])}, but the model was "
                        f"trained on targets of shape {train.y_shape}")
    with torch.no_grad(), mode(objective.model, train=False):  # the model's output width
        out = objective.outputs(objective.flatten(), x[:1])
    losses.check_targets(run.loss_fn, y, out, "query")
    return x, y
