"""Turning what users pass as data into a pair of tensors ``(X, y)``, with clear errors."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


def as_tensors(data, name: str = "data") -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(X, y)`` as tensors from a pair of tensors / arrays or a ``Dataset`` of ``(x, y)``.

    X has shape (N, ...), y shape (N, ...). A Dataset is read once, item by item, and stacked.
    """
    if isinstance(data, Dataset):
        n = len(data)  # type: ignore[arg-type]
        if n == 0:
            raise ValueError(f"{name} is empty: the Dataset has no items")
        items = [data[i] for i in range(n)]
        try:
            X = torch.stack([torch.as_tensor(x) for x, _ in items])
            y = torch.stack([torch.as_tensor(t) for _, t in items])
        except (TypeError, ValueError, RuntimeError) as e:
            raise ValueError(
                f"{name}: a Dataset must return (x, y) pairs of equal shapes: {e}") from e
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        X, y = (_tensor(a, name) for a in data)
    else:
        raise TypeError(
            f"{name} must be a pair (X, y) of tensors or arrays, or a torch Dataset of (x, y); "
            f"got {type(data).__name__}"
        )
    if X.ndim == 0 or y.ndim == 0:
        raise ValueError(f"{name}: X and y must have a leading instance axis, got shapes "
                         f"{tuple(X.shape)} and {tuple(y.shape)}")
    if len(X) != len(y):
        raise ValueError(f"{name}: X has {len(X)} instances but y has {len(y)}")
    if len(X) == 0:
        raise ValueError(f"{name} is empty: X and y have no instances")
    if X.is_floating_point() and not torch.isfinite(X).all():
        bad = torch.nonzero(~torch.isfinite(X.reshape(len(X), -1)).all(1)).flatten()
        raise ValueError(f"{name}: X holds NaN or infinite values (rows {bad[:10].tolist()}...)")
    return X, y


def _tensor(a, name: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.detach()
    try:
        return torch.as_tensor(np.asarray(a))
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name}: cannot turn {type(a).__name__} into a tensor: {e}") from e
