"""Per-instance losses ``ℓ(outputs, targets) -> (B,)``, by name or as a user's callable."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..errors import ConfigError, DataError

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
        raise ConfigError(f"unknown loss {loss!r}; use one of {sorted(LOSSES)} or a callable "
                          "(outputs, targets) -> per-instance losses")
    return LOSSES[loss]


def prepare_targets(loss_fn: LossFn, y: torch.Tensor, dtype: torch.dtype,
                    name: str = "train") -> torch.Tensor:
    """Cast targets once, up front, to what the loss expects."""
    if loss_fn is cross_entropy:
        if y.is_floating_point() and not torch.equal(y, y.round()):
            raise DataError(f"{name}: cross_entropy needs integer class labels in y, but y holds "
                            "non-integer values; use loss='bce' or 'mse' for real targets")
        return y.long()
    if loss_fn in (bce, mse):
        return y.to(dtype)
    return y


def check_targets(loss_fn: LossFn, y: torch.Tensor, outputs: torch.Tensor, name: str) -> None:
    """Refuse targets y (N,) that the loss cannot take with the model's outputs (B, C, ...):
    class labels outside [0, C) for cross_entropy, values outside [0, 1] for bce. (Left
    unchecked, the first shows as an IndexError or a device assert deep inside training.)"""
    if loss_fn is cross_entropy and outputs.ndim >= 2:
        width = outputs.shape[1]
        bad = y[(y < 0) | (y >= width)]
        if len(bad):
            raise DataError(
                f"{name}: y holds class labels {torch.unique(bad)[:10].tolist()} outside "
                f"[0, {width}), but the model outputs {width} logits per instance (one per "
                f"class); give the model one output per class, or number the classes "
                f"0..{width - 1}")
    elif loss_fn is bce:
        bad = y[~((y >= 0) & (y <= 1))]
        if len(bad):
            raise DataError(f"{name}: bce needs targets in [0, 1], but y holds "
                            f"{torch.unique(bad)[:10].tolist()}; use 0/1 labels (or "
                            "probabilities), or loss='cross_entropy' for class labels")
