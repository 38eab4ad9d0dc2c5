"""What users pass as data or indices, as tensors, with clear errors; data in chunks."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError, Error, IndexOutOfRange

CHUNK = 1024  # instances per forward pass where a whole data set is evaluated


def chunks(x: torch.Tensor, y: torch.Tensor, size: int = CHUNK):
    """Pairs (x[a:b], y[a:b]) of at most ``size`` instances, in order."""
    return zip(x.split(size), y.split(size), strict=True)


def as_tensors(data, name: str = "data") -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(X, y)`` as tensors from a pair of tensors / arrays or a ``Dataset`` of ``(x, y)``.

    X has shape (N, ...), y shape (N, ...). A Dataset is read once, item by item, and stacked.
    """
    if isinstance(data, Dataset):
        n = len(data)  # type: ignore[arg-type]
        if n == 0:
            raise DataError(f"{name} is empty: the Dataset has no items")
        items = [data[i] for i in range(n)]
        try:
            X = torch.stack([torch.as_tensor(x) for x, _ in items])
            y = torch.stack([torch.as_tensor(t) for _, t in items])
        except (TypeError, ValueError, RuntimeError) as e:
            raise DataError(
                f"{name}: a Dataset must return (x, y) pairs of equal shapes: {e}") from e
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        X, y = (_tensor(a, name) for a in data)
    else:
        raise TypeError(
            f"{name} must be a pair (X, y) of tensors or arrays, or a torch Dataset of (x, y); "
            f"got {type(data).__name__}"
        )
    if X.ndim == 0 or y.ndim == 0:
        raise DataError(f"{name}: X and y must have a leading instance axis, got shapes "
                        f"{tuple(X.shape)} and {tuple(y.shape)}")
    if len(X) != len(y):
        raise DataError(f"{name}: X has {len(X)} instances but y has {len(y)}")
    if len(X) == 0:
        raise DataError(f"{name} is empty: X and y have no instances")
    if X.is_floating_point() and not torch.isfinite(X).all():
        bad = torch.nonzero(~torch.isfinite(X.reshape(len(X), -1)).all(1)).flatten()
        raise DataError(f"{name}: X holds NaN or infinite values (rows {bad[:10].tolist()}...)")
    return X, y


def _tensor(a, name: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.detach()
    try:
        return torch.as_tensor(np.asarray(a))
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name}: cannot turn {type(a).__name__} into a tensor: {e}") from e


def as_indices(value, n: int, name: str, allow_empty: bool = True) -> torch.Tensor:
    """Training-instance indices (K,) as a CPU long tensor, from what users pass to pick them.

    ``value`` is a 1-D sequence, array or tensor of integers (any integer dtype; duplicates
    kept), or a boolean mask of length ``n``, which selects the indices where it is True, in
    ascending order. Floats are refused (a TypeError) rather than truncated, and a mask of
    another length is refused rather than read as the indices 0 and 1.
    """
    if isinstance(value, torch.Tensor):
        kind = ("b" if value.dtype == torch.bool else
                "f" if value.is_floating_point() or value.is_complex() else "i")
        dtype, a = str(value.dtype).removeprefix("torch."), value.detach().cpu()
    else:
        if isinstance(value, (str, bytes)) or not isinstance(value, (np.ndarray, Iterable)):
            raise TypeError(f"{name} must be a sequence, array or tensor of integer indices, or "
                            f"a boolean mask; got {type(value).__name__}")
        try:
            arr = np.asarray(value if isinstance(value, np.ndarray) else list(value))
        except ValueError as e:  # a ragged nesting
            raise Error(f"{name} must be 1-D integer indices or a boolean mask: {e}") from e
        if arr.size == 0 and not isinstance(value, np.ndarray):
            arr = arr.astype(np.int64)  # numpy makes [] float64
        kind, dtype = ("i" if arr.dtype.kind in "iu" else arr.dtype.kind), str(arr.dtype)
        a = torch.from_numpy(arr.astype(np.int64) if kind == "i" else
                             arr if kind == "b" else np.zeros(0, np.int64))
    if kind not in "bi":
        raise TypeError(f"{name} must hold integer indices or be a boolean mask; got dtype "
                        f"{dtype}, which is refused rather than truncated; pass integers")
    if a.ndim != 1:
        hint = "; wrap a single index in a list" if a.ndim == 0 else ""
        raise Error(f"{name} must be 1-D (integer indices, or a boolean mask of length {n}); "
                    f"got shape {tuple(a.shape)}{hint}")
    if kind == "b":
        if len(a) != n:
            raise Error(f"{name} is a boolean mask of length {len(a)}, but the training set has "
                        f"{n} instances; pass a mask of length {n}, or integer indices")
        a = torch.nonzero(a).flatten()
    idx = a.long()
    if not allow_empty and len(idx) == 0:
        raise Error(f"{name} selects no training instances; pass at least one index")
    bad = idx[(idx < 0) | (idx >= n)]
    if len(bad):
        raise IndexOutOfRange(f"{name} holds indices outside [0, {n}): {bad[:10].tolist()}")
    return idx
