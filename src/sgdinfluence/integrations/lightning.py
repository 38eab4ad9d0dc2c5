"""A Lightning callback that records a ``LightningModule``'s training (automatic
optimization) with :class:`sgdinfluence.Recorder`.

    recorder = RecordingCallback("cross_entropy")
    trainer = L.Trainer(max_epochs=3, gradient_clip_val=1.0, callbacks=[recorder])
    trainer.fit(module, train_loader)
    run = recorder.run

Lightning runs its loop as always (sampler, epochs, ``accumulate_grad_batches``, the
optimizer and scheduler of ``configure_optimizers``, validation, checkpoints). During ``fit``
the callback stands in for two of the module's methods, and gives them back afterwards:

- ``training_step``: notes the indices of the batch's instances (read off the loader's
  sampler as it yields them) and returns ``None``, so that Lightning computes no loss and no
  gradient of its own;
- ``optimizer_step`` (Lightning's hook for taking the step): runs the closure (the step's last
  ``training_step``), then ``Recorder.step(indices, micro_batches=k)``, which computes the
  gradient of ``loss(module(x), y)``, clips it as ``gradient_clip_val`` /
  ``gradient_clip_algorithm`` say, and calls the torch optimizer's ``step``.

The step a run records is ``loss(module(x), y)`` averaged over the batch: the module's
``training_step`` must compute that (at the first step, both are computed on the first batch
in eval mode and refused unless they agree), and its dataset must hold (x, y) pairs.
"""

from __future__ import annotations

import warnings
from collections import deque

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import GradClipAlgorithmType
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch.utils.data import BatchSampler, DataLoader, Sampler, default_collate

from ..core.recorder import Recorder
from ..errors import ConfigError, DataError


class RecordingCallback(pl.Callback):
    """Record ``trainer.fit``'s run; after it, ``self.run`` is the :class:`sgdinfluence.Run`.
    ``loss`` is a name or a per-instance callable, as for the Recorder; ``store`` and ``seed``
    as there."""

    def __init__(self, loss="cross_entropy", *, store="memory", seed: int = 0):
        self.loss, self.store, self.seed = loss, store, seed
        self.run = None
        self._recorder: Recorder | None = None
        self._seen: deque[int] = deque()  # indices the sampler gave, not yet trained on
        self._parts: list[torch.Tensor] = []
        self._check_batch = False

    def on_fit_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        _refuse_what_a_run_cannot_replay(trainer, module)
        self.run, self._recorder = None, None
        module.training_step = self._training_step  # type: ignore[method-assign]
        module.optimizer_step = self._optimizer_step  # type: ignore[method-assign]
        # returning None is how training_step tells Lightning that the step is taken elsewhere
        warnings.filterwarnings("ignore", message="`training_step` returned `None`")

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        loader = _loader(trainer)
        k = trainer.accumulate_grad_batches
        n, size, batches = len(loader.dataset), loader.batch_size, trainer.num_training_batches
        if k > 1 and (batches % k or (n % size and not loader.drop_last)):  # type: ignore[operator]
            raise ConfigError(
                f"accumulate_grad_batches={k} divides each micro-batch's mean loss by {k}, also "
                f"in the epoch's last, shorter step ({batches} batches of {size} of {n} "
                f"instances), whose step is then not the mean a run records: choose a batch "
                f"size and accumulate_grad_batches whose product divides the {n} instances")
        clip = trainer.gradient_clip_val or None  # by norm unless gradient_clip_algorithm says
        by_value = GradClipAlgorithmType(trainer.gradient_clip_algorithm or "norm") == "value"
        self._recorder = Recorder(
            module, trainer.optimizers[0], self.loss, loader.dataset, store=self.store,
            seed=self.seed, max_grad_norm=None if by_value else clip,
            clip_grad_value=clip if by_value else None)

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        sampler = _loader(trainer).batch_sampler
        if not isinstance(sampler.sampler, _Tap):  # type: ignore[union-attr]
            sampler.sampler = _Tap(sampler.sampler, self._seen)  # type: ignore[union-attr]
        self._seen.clear()
        self._check_batch = True

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        _give_back(module)
        if self._recorder is not None:
            self.run = self._recorder.finish()

    def on_exception(self, trainer: pl.Trainer, module: pl.LightningModule, exception) -> None:
        _give_back(module)

    def _training_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        idx = torch.tensor([self._seen.popleft() for _ in range(len(y))])
        if self._check_batch:  # once an epoch: the indices are those of the batch trained on
            self._check_batch = False
            self._check(idx, x, y)
        self._parts.append(idx)
        return None

    def _optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        if optimizer_closure is not None:
            optimizer_closure()  # the step's last training_step
        idx, k, self._parts = torch.cat(self._parts), len(self._parts), []
        assert self._recorder is not None
        self._recorder.step(idx, micro_batches=k)

    def _check(self, idx: torch.Tensor, x, y) -> None:
        """Refuse a batch that is not the dataset's items at the indices the sampler gave, or
        a training_step whose loss is not the one recorded (both computed in eval mode)."""
        assert self._recorder is not None
        data, module = self._recorder.data, self._recorder.model
        items = default_collate([data.dataset[i] for i in idx.tolist()])  # type: ignore[attr-defined]
        if not (torch.equal(items[0], x.to(items[0].dtype)) and torch.equal(items[1], y)):
            raise DataError("the batch Lightning loaded is not the Dataset's items at the indices "
                            "its sampler gave (a custom batch_sampler or collate_fn, or random "
                            "transforms in the Dataset?): record that loop with sgi.Recorder")
        training = module.training
        module.eval()
        try:
            with torch.no_grad():
                theirs = type(module).training_step(module, (x, y), 0)
                theirs = theirs["loss"] if isinstance(theirs, dict) else theirs
                xs, ys = data.batch(idx)
                ours = self._recorder.objective.loss_fn(module(xs), ys).mean()
        finally:
            module.train(training)
        if theirs is None or not torch.allclose(theirs.to(ours.dtype), ours, rtol=1e-5):
            raise ConfigError(f"{type(module).__name__}.training_step returns "
                              f"{None if theirs is None else float(theirs):.6g} on the first batch "
                              f"but the recorded loss, the mean of {self.loss}(module(x), y), is "
                              f"{float(ours):.6g}: give RecordingCallback the loss training_step "
                              "computes")


class _Tap(Sampler):
    """A sampler that also appends each index it yields to ``seen``."""

    def __init__(self, sampler: Sampler, seen: deque):
        self.sampler, self.seen = sampler, seen

    def __len__(self) -> int:
        return len(self.sampler)  # type: ignore[arg-type]

    def __iter__(self):
        for i in self.sampler:
            self.seen.append(int(i))
            yield i

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)


def _loader(trainer: pl.Trainer) -> DataLoader:
    loader = trainer.train_dataloader
    if not (isinstance(loader, DataLoader) and isinstance(loader.batch_sampler, BatchSampler)):
        raise ConfigError("RecordingCallback records one map-style DataLoader with a sampler and "
                          f"batch_size, got {type(loader).__name__}; record other loaders with "
                          "sgi.Recorder in your own loop")
    return loader


def _give_back(module: pl.LightningModule) -> None:
    for name in ("training_step", "optimizer_step"):
        module.__dict__.pop(name, None)


def _refuse_what_a_run_cannot_replay(trainer: pl.Trainer, module: pl.LightningModule) -> None:
    if not module.automatic_optimization:
        raise ConfigError("RecordingCallback records automatic optimization; with manual "
                          "optimization call rec.step(indices) of an sgi.Recorder in "
                          "training_step instead")
    if is_overridden("optimizer_step", module):
        raise ConfigError(f"{type(module).__name__} overrides optimizer_step, which the recorder "
                          "takes over: remove it (clip with Trainer(gradient_clip_val=))")
    if str(trainer.precision) not in ("32-true", "64-true", "32", "64"):
        raise ConfigError(f"Trainer(precision={trainer.precision!r}) trains under autocast or in "
                          "half precision, which a run cannot replay: use precision='32-true'")
    if trainer.world_size > 1:
        raise ConfigError("RecordingCallback records training on one device: Trainer(devices=1)")
    if len(trainer.optimizers) != 1:
        raise ConfigError(f"configure_optimizers returned {len(trainer.optimizers)} optimizers; "
                          "a run records one")
