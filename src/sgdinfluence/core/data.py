"""Training data read by index, one mini-batch at a time: tensors in memory, or a map-style
``Dataset`` streamed from wherever it reads, never materialised.

Training, retraining, the sweep and leave-one-out ask for ``batch(indices)``, or for the
batches of a sequence of steps at once (``batches``, through ``DataLoader`` workers when
asked); whole passes (influence functions, training losses) go ``chunks`` at a time. Either
way the inputs arrive in the model's dtype and on its device, and the targets as the loss
wants them.

A streamed Dataset may draw random augmentation from torch's, numpy's or ``random``'s global
generators: a step's items are read with those seeded from the step's seed and the item's
index (and the generators restored after), so every read of item i at step t (training,
retraining, the sweep) is the same; ``check_reproducible`` refuses a Dataset whose reads
still differ (randomness of its own). Whole passes are read unseeded.
"""

from __future__ import annotations

import abc
import contextlib
import random
from collections.abc import Iterator, Sequence

import numpy as np
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
    def batch(self, idx: torch.Tensor, seed: int | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (B, ...) and targets (B, ...) of the instances ``idx`` (B,), read with the
        randomness of the step whose ``seed`` is given."""

    def batches(self, indices: Sequence[torch.Tensor], seeds: Sequence[int] | None = None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of ``indices`` (one index tensor per step, with its step's seed), in
        that order."""
        return (self.batch(idx, None if seeds is None else seeds[k])
                for k, idx in enumerate(indices))

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

    def batch(self, idx: torch.Tensor, seed: int | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
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
        self._pool: _Pool | None = None
        self.dtype, self.device = dtype, device
        self.outputs: torch.Tensor | None = None  # the model's output for one instance
        try:
            self.n = len(dataset)  # type: ignore[arg-type]
        except TypeError as e:
            raise DataError("train: a Dataset must have a length (a map-style Dataset read by "
                            "index); an IterableDataset cannot be replayed") from e
        if self.n == 0:
            raise DataError("train is empty: the Dataset has no items")
        with _global_rngs_kept():
            x, y = _pair(dataset[0], 0)
        self.x_shape, self.y_shape = tuple(x.shape), tuple(y.shape)

    def __len__(self) -> int:
        return self.n

    def batch(self, idx: torch.Tensor, seed: int | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch; with ``workers``, its items read in parallel by that many processes
        (kept for the next batch: a recorder asks batch by batch)."""
        keys = _keys(idx, seed)
        if self.workers and len(keys) > 1:
            if self._pool is None:
                self._pool = _Pool(self.dataset, self.workers)
            items = self._pool.read(keys)
        else:
            reader = _Indexed(self.dataset)
            with _global_rngs_kept():
                items = [reader[key] for key in keys]
        return self._ready(idx, self.collate(items))

    def batches(self, indices: Sequence[torch.Tensor], seeds: Sequence[int] | None = None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if not self.workers:
            return super().batches(indices, seeds)
        keys = [_keys(idx, None if seeds is None else seeds[k]) for k, idx in enumerate(indices)]
        loader = DataLoader(_Indexed(self.dataset), batch_sampler=keys,
                            num_workers=self.workers, collate_fn=self.collate)
        return (self._ready(idx, batch) for idx, batch in zip(indices, loader, strict=True))

    def check_reproducible(self, idx: torch.Tensor, seed: int) -> None:
        """Read a step's batch twice: a Dataset whose items differ has randomness of its own,
        which no replay can repeat; refused, naming it."""
        (x1, y1), (x2, y2) = self.batch(idx, seed), self.batch(idx, seed)
        differ = ~((x1 == x2).flatten(1).all(1) & (y1 == y2).reshape(len(y1), -1).all(1))
        if differ.any():
            raise DataError(
                f"train: the Dataset {type(self.dataset).__name__} gave item "
                f"{idx[differ][0].item()} differently when read again with the same seeds: "
                "its randomness is not drawn from torch's, numpy's or random's global "
                "generators (which sgdinfluence seeds per step and item), so training could "
                "not be replayed; draw it from those, or use fit(augment=)")

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
        return {**self.__dict__, "device": str(self.device), "_pool": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, device=torch.device(state["device"]))


class _Indexed(Dataset):
    """Items as (index, item), so that a worker's batch can name a bad index; a key
    (index, seed) reads the item with the global generators seeded by ``seed``."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __getitem__(self, key: int | tuple[int, int]):
        if isinstance(key, int):
            return key, self.dataset[key]
        i, seed = key
        torch.default_generator.manual_seed(seed)  # the CPU's, where a Dataset draws
        np.random.seed(seed % 2**32)  # noqa: NPY002 (the global one a Dataset may draw from)
        random.seed(seed)
        return i, self.dataset[i]


class _Pool:
    """Worker processes that read a Dataset's items by key, in parallel, kept between batches
    and ended with the data (or the process)."""

    def __init__(self, dataset: Dataset, workers: int):
        context = torch.multiprocessing.get_context("fork" if "fork" in
                                                    torch.multiprocessing.get_all_start_methods()
                                                    else "spawn")
        self.pool = context.Pool(workers, initializer=_start_worker, initargs=(dataset,))
        self.workers = workers

    def read(self, keys: list) -> list:
        return self.pool.map(_read, keys, chunksize=max(1, -(-len(keys) // (4 * self.workers))))

    def __del__(self):
        self.pool.terminate()


_worker_dataset: _Indexed | None = None


def _start_worker(dataset: Dataset) -> None:
    global _worker_dataset
    torch.set_num_threads(1)
    _worker_dataset = _Indexed(dataset)


def _read(key):
    assert _worker_dataset is not None, "the pool's initializer sets it"
    return _worker_dataset[key]


def _keys(idx: torch.Tensor, seed: int | None) -> list:
    """The items of a step to read: their indices, with a seed per item when the step has
    one (the step's seed and the index: the same item of the same step reads the same,
    whatever else the batch holds)."""
    if seed is None:
        return idx.tolist()
    return [(i, (seed + (i + 1) * 2654435761) % 2**63) for i in idx.tolist()]


@contextlib.contextmanager
def _global_rngs_kept():
    """Restore torch's, numpy's and random's global generators after reading."""
    states = torch.get_rng_state(), np.random.get_state(), random.getstate()  # noqa: NPY002
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])  # noqa: NPY002
        random.setstate(states[2])


def _pair(item, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        x, y = item
        return torch.as_tensor(x), torch.as_tensor(y)
    except (TypeError, ValueError, RuntimeError) as e:
        raise DataError(f"train: the Dataset's item {i} is not a pair (x, y) of arrays or "
                        f"tensors ({type(item).__name__}: {e})") from e
