"""Per-instance losses ``ℓ(outputs, targets) -> (B,)``, by name or as a user's callable."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .errors import Error

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy. outputs (B, C) logits, targets (B,) class indices."""
    return F.cross_entropy(outputs, targets, reduction="none")


def bce(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on logits o: softplus(o) - y·o (the same function as
    ``binary_cross_entropy_with_logits``, whose forward-mode derivative runs a slow Python
    decomposition). outputs (B,) or (B, 1), targets (B,) in [0, 1]."""
    o = outputs.reshape(targets.shape)
    return (F.softplus(o) - targets * o).reshape(len(targets), -1).mean(1)


def mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Squared error, averaged over the output dimensions of each instance."""
    return (outputs - targets.reshape(outputs.shape)).square().reshape(len(outputs), -1).mean(1)


LOSSES: dict[str, LossFn] = {"cross_entropy": cross_entropy, "bce": bce, "mse": mse}


def resolve(loss: str | LossFn) -> LossFn:
    if callable(loss):
        return loss
    if not isinstance(loss, str):
        raise TypeError(f"loss must be a name ({', '.join(sorted(LOSSES))}) or a callable "
                        f"(outputs, targets) -> per-instance losses, got {type(loss).__name__}")
    if loss not in LOSSES:
        raise Error(f"unknown loss {loss!r}; use one of {sorted(LOSSES)} or a callable "
                    "(outputs, targets) -> per-instance losses")
    return LOSSES[loss]


def prepare_targets(loss_fn: LossFn, y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Cast targets once, up front, to what the loss expects."""
    if loss_fn is cross_entropy:
        if y.is_floating_point():
            if not torch.equal(y, y.round()):
                raise ValueError("cross_entropy needs integer class labels in y")
        return y.long()
    if loss_fn in (bce, mse):
        return y.to(dtype)
    return y
