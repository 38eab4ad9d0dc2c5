"""Training data read by index, one mini-batch at a time: tensors in memory, or a map-style
``Dataset`` streamed from wherever it reads, never materialised.

Training, retraining, the sweep and leave-one-out ask for ``batch(indices)``, or for the
batches of a sequence of steps at once (``batches``, through ``DataLoader`` workers when
asked); whole passes (influence functions, training losses) go ``chunks`` at a time. Either
way the inputs arrive in the model's dtype and on its device, and the targets as the loss
wants them. A streamed dataset must return the same (x, y) for an index every time: random
augmentation belongs in ``fit(augment=)``, which replays it from the step's seed.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import DataError
from . import losses
from .tensors import CHUNK


class TrainData(abc.ABC):
    """N training instances (x, y), read by index."""

    x_shape: tuple[int, ...]  # one instance's input
    y_shape: tuple[int, ...]  # one instance's target
    dtype: torch.dtype  # of the inputs, once prepared (the model's)
    device: torch.device

    @abc.abstractmethod
    def __len__(self) -> int:
        """N."""

    @abc.abstractmethod
    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (B, ...) and targets (B, ...) of the instances ``idx`` (B,)."""

    def batches(self, indices: Sequence[torch.Tensor]) -> Iterator[tuple[torch.Tensor,
                                                                          torch.Tensor]]:
        """The batches of ``indices`` (one index tensor per step), in that order."""
        return (self.batch(idx) for idx in indices)

    def chunks(self, size: int = CHUNK) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """All N instances in order, ``size`` at a time."""
        return self.batches(torch.arange(len(self)).split(size))

    def to(self, device: torch.device) -> TrainData:
        """The same data, prepared on ``device`` (e.g. after loading a GPU run on the CPU)."""
        self.device = torch.device(device)
        return self


class Tensors(TrainData):
    """Training data held as two tensors, X (N, ...) and y (N, ...), already prepared;
    ``X, y = data`` unpacks them."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor):
        self.X, self.y = X, y
        self.x_shape, self.y_shape = tuple(X.shape[1:]), tuple(y.shape[1:])
        self.dtype, self.device = X.dtype, X.device

    def __len__(self) -> int:
        return len(self.X)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter((self.X, self.y))

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.X[idx], self.y[idx]

    def to(self, device: torch.device) -> Tensors:
        self.X, self.y = self.X.to(device), self.y.to(device)
        self.device = self.X.device
        return self

    def chunks(self, size: int = CHUNK) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return zip(self.X.split(size), self.y.split(size), strict=True)


class Streamed(TrainData):
    """A map-style ``Dataset`` of (x, y), read batch by batch and prepared for the model
    (inputs in ``dtype`` on ``device``, targets for ``loss_fn``), each batch checked (finite
    inputs; targets the model's ``outputs`` can take, once fit has set them). ``workers`` > 0
    reads the batches of a sequence of steps through that many ``DataLoader`` workers."""

    def __init__(self, dataset: Dataset, loss_fn: losses.LossFn, dtype: torch.dtype,
                 device: torch.device, workers: int = 0):
        self.dataset, self.loss_fn, self.workers = dataset, loss_fn, workers
        self.dtype, self.device = dtype, device
        self.outputs: torch.Tensor | None = None  # the model's output for one instance
        try:
            self.n = len(dataset)  # type: ignore[arg-type]
        except TypeError as e:
            raise DataError("train: a Dataset must have a length (a map-style Dataset read by "
                            "index); an IterableDataset cannot be replayed") from e
        if self.n == 0:
            raise DataError("train is empty: the Dataset has no items")
        x, y = _pair(dataset[0], 0)
        self.x_shape, self.y_shape = tuple(x.shape), tuple(y.shape)

    def __len__(self) -> int:
        return self.n

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._ready(idx, self.collate([(i, self.dataset[i]) for i in idx.tolist()]))

    def batches(self, indices: Sequence[torch.Tensor]) -> Iterator[tuple[torch.Tensor,
                                                                          torch.Tensor]]:
        if not self.workers:
            return super().batches(indices)
        loader = DataLoader(_Indexed(self.dataset), batch_sampler=[i.tolist() for i in indices],
                            num_workers=self.workers, collate_fn=self.collate)
        return (self._ready(idx, batch) for idx, batch in zip(indices, loader, strict=True))

    def collate(self, items: list[tuple[int, object]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Stack (index, (x, y)) items into a batch, naming an index whose shapes differ."""
        if not items:  # a rank's empty share of a small batch
            return torch.empty(0, *self.x_shape), torch.empty(0, *self.y_shape,
                                                              dtype=torch.long)
        xs, ys = [], []
        for i, item in items:
            x, y = _pair(item, i)
            if tuple(x.shape) != self.x_shape or tuple(y.shape) != self.y_shape:
                raise DataError(f"train: the Dataset's item {i} has x of shape "
                                f"{tuple(x.shape)} and y of shape {tuple(y.shape)}, but item 0 "
                                f"has {self.x_shape} and {self.y_shape}; every item must have "
                                "the same shapes")
            xs.append(x)
            ys.append(y)
        return torch.stack(xs), torch.stack(ys)

    def _ready(self, idx: torch.Tensor, batch: tuple[torch.Tensor, torch.Tensor]
               ) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        if x.is_floating_point():
            finite = torch.isfinite(x.flatten(1)).all(1)
            if not finite.all():
                raise DataError(f"train: the Dataset's items {idx[~finite][:10].tolist()} hold "
                                "NaN or infinite inputs; fix or drop them")
            x = x.to(self.device, self.dtype)
        else:
            x = x.to(self.device)
        y = losses.prepare_targets(self.loss_fn, y, self.dtype, "train").to(self.device)
        if self.outputs is not None:
            losses.check_targets(self.loss_fn, y, self.outputs, "train")
        return x, y

    def __getstate__(self) -> dict:
        return {**self.__dict__, "device": str(self.device)}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, device=torch.device(state["device"]))


class _Indexed(Dataset):
    """Items as (index, item), so that a worker's batch can name a bad index."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __getitem__(self, i: int):
        return i, self.dataset[i]


def _pair(item, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        x, y = item
        return torch.as_tensor(x), torch.as_tensor(y)
    except (TypeError, ValueError, RuntimeError) as e:
        raise DataError(f"train: the Dataset's item {i} is not a pair (x, y) of arrays or "
                        f"tensors ({type(item).__name__}: {e})") from e
