"""A Hugging Face ``Trainer`` whose training is recorded by :class:`sgdinfluence.Recorder`.

    trainer = RecordingTrainer(model=model, args=args, train_dataset=train_dataset)
    trainer.train()
    run = trainer.run             # sgi.influence(run, trainer.tensors(val_dataset))

The Trainer runs its loop as always (sampler, epochs, gradient accumulation, lr scheduler,
logging, evaluation, checkpoints); the recorder takes each optimizer step in its place. What
this class overrides, and why:

- ``get_train_dataloader``: the Trainer's sampler, batch size and ``dataloader_drop_last``
  over the instances' *indices*: the recorder reads the instances itself, by index, so the
  run can replay them; the order is the Trainer's.
- ``training_step``: collects the indices of the step's micro-batches; at the last one it
  calls ``Recorder.step(indices, micro_batches=k)``, which computes the gradient (the model's
  logits, its loss), clips it to ``max_grad_norm`` and calls the torch optimizer's ``step``.
  The gradients are then dropped, so the Trainer's own ``optimizer.step()`` that follows finds
  none and changes nothing (torch's optimizers skip a parameter without ``.grad``; the
  recorder checks before each step that nothing moved).
- ``_get_grad_norm``: logs the norm of the gradient the recorder stepped with (after clipping).
- ``train``: starts a new recording and finishes it into ``trainer.run``.

The optimizer and the scheduler are the Trainer's (``optim='adamw_torch_fused'``, the default,
is replaced by ``'adamw_torch'``, the same update unfused, with one warning). Instances are read
as ``x`` (B, number of inputs, L): ``input_ids``, ``attention_mask``, ... stacked, all padded to
one length L; the run's model is ``model(x) -> logits``. Dropout draws from each step's seed.
"""

from __future__ import annotations

import copy
import inspect
import warnings

import torch
import transformers
from torch import nn
from torch.utils.data import DataLoader, Dataset
from transformers.training_args import OptimizerNames

from ..core.recorder import Recorder
from ..errors import ConfigError, DataError

LABELS = ("labels", "label", "label_ids")
LOSSES = {"regression": "mse", "single_label_classification": "cross_entropy",
          "multi_label_classification": "bce"}  # the loss each problem_type trains


class RecordingTrainer(transformers.Trainer):
    """``transformers.Trainer`` that records its run; after ``train()``, ``self.run`` is the
    :class:`sgdinfluence.Run`. ``loss`` (a name or a per-instance callable, as for the
    Recorder) is read from the model's ``config.problem_type`` when not given. What cannot be
    replayed is refused when the trainer is made, or at its first step."""

    def __init__(self, *args, loss=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.args = _recordable(self.args, self)
        self.loss, self.run = loss, None
        self._recorder: Recorder | None = None
        self._parts: list[torch.Tensor] = []
        self._grad_norm = torch.zeros(())

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        if resume_from_checkpoint:
            raise ConfigError("a run is recorded from its first step: train without "
                              "resume_from_checkpoint")
        self._recorder, self._parts, self.run = None, [], None
        output = super().train(None, *args, **kwargs)
        if self._recorder is None:
            raise ConfigError("the Trainer took no step, so there is no run to record")
        self.run = self._recorder.finish()
        return output

    def get_train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            raise ValueError("Trainer: training requires a train_dataset.")
        loader = DataLoader(torch.arange(len(self.train_dataset)),  # type: ignore[arg-type]
                            batch_size=self._train_batch_size,
                            sampler=self._get_train_sampler(self.train_dataset),
                            drop_last=self.args.dataloader_drop_last, collate_fn=_indices)
        return self.accelerator.prepare(loader)

    def training_step(self, model, inputs, num_items_in_batch=None) -> torch.Tensor:
        model.train()
        if self._recorder is None:
            self._recorder = self._record()
        self._parts.append(inputs["sgi_index"])
        if len(self._parts) < self.current_gradient_accumulation_steps:
            return torch.zeros((), device=self.args.device)  # the step's loss comes at its end
        idx, k, self._parts = torch.cat(self._parts), len(self._parts), []
        loss = self._recorder.step(idx, micro_batches=k)
        params = self._recorder.objective.params
        self._grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        model.zero_grad(set_to_none=True)  # the step is taken; the Trainer's finds no gradient
        return torch.tensor(loss, device=self.args.device)

    def _get_grad_norm(self, model, grad_norm=None):
        return self._grad_norm.item()

    def tensors(self, dataset) -> tuple[torch.Tensor, torch.Tensor]:
        """``dataset`` (items as the training set's) as the pair (X, y) the run's model takes:
        X (N, number of inputs, L), y (N,); a query for ``sgi.influence``."""
        items = _Items(dataset, *self._columns(dataset))
        xs, ys = zip(*(items[i] for i in range(len(items))), strict=True)
        return torch.stack(xs), torch.stack(ys)

    def _columns(self, dataset) -> tuple[list[str], str]:
        """The model inputs and the label key of the dataset's items."""
        item = dataset[0]
        label = next((k for k in (*(self.args.label_names or ()), *LABELS) if k in item), None)
        if label is None:
            raise DataError(f"train_dataset: item 0 holds no labels (keys {sorted(item)}); give "
                            "each item its 'labels'")
        accepted = inspect.signature(self.model.forward).parameters
        return [k for k in item if k in accepted and k not in LABELS and k != label], label

    def _record(self) -> Recorder:
        """The recorder, made at the first step: the optimizer and the scheduler exist."""
        keys, label = self._columns(self.train_dataset)
        train = _Items(self.train_dataset, keys, label)
        loss = self.loss or _loss(self.model, train[0][1])
        self._check_accumulation(train)
        optimizer = getattr(self.optimizer, "optimizer", self.optimizer)  # accelerate's wraps it
        return Recorder(_Logits(self.model, keys), optimizer, loss, train,
                        max_grad_norm=self.args.max_grad_norm or None, seed=self.args.seed)

    def _check_accumulation(self, train: _Items) -> None:
        """A run's step is the mean loss over its instances; refuse gradient accumulation
        where the Trainer's is not: micro-batches of unequal sizes (each one's mean weighs the
        same), or a model whose loss ignores ``num_items_in_batch`` when the Trainer passes it
        (the micro-batches' means are then summed)."""
        k, size, n = (self.args.gradient_accumulation_steps, self._train_batch_size,
                      len(train))
        if k == 1:
            return
        if n % size and not self.args.dataloader_drop_last:
            raise ConfigError(
                f"gradient_accumulation_steps={k} averages the micro-batches' mean losses, "
                f"weighing the {n % size} instances of the epoch's last, smaller micro-batch "
                f"more than the others; set dataloader_drop_last=True or a batch size that "
                f"divides the {n} instances")
        scaled = self.loss_is_scaled_for_ga
        if scaled is None:
            scaled = self.model_accepts_loss_kwargs
        if scaled and not _honours_num_items(self.model, train):
            raise ConfigError(
                f"gradient_accumulation_steps={k}: the Trainer sums the micro-batches' mean "
                f"losses here ({type(self.model).__name__}'s loss ignores num_items_in_batch), "
                f"{k} times the step's mean that a run records; set "
                "trainer.loss_is_scaled_for_ga = False (the Trainer then averages them)")


class _Logits(nn.Module):
    """The Hugging Face model as ``model(x) -> logits``, x (B, len(keys), L) its inputs
    stacked; the same parameter objects the optimizer holds."""

    def __init__(self, model: nn.Module, keys: list[str]):
        super().__init__()
        self.model, self.keys = model, tuple(keys)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(**{k: x[:, j] for j, k in enumerate(self.keys)}).logits


class _Items(Dataset):
    """A Hugging Face dataset's items (dicts of token inputs and labels) as pairs (x, y):
    x (len(keys), L) the inputs stacked, refused unless all are one length."""

    def __init__(self, dataset, keys: list[str], label: str):
        self.dataset, self.keys, self.label = dataset, keys, label
        first = [torch.as_tensor(v) for v in map(dataset[0].__getitem__, keys)]
        bad = [k for k, v in zip(keys, first, strict=True)
               if v.ndim != 1 or v.is_floating_point()]
        if not keys or bad:
            raise DataError(f"train_dataset: RecordingTrainer records token inputs (input_ids, "
                            f"attention_mask, ...: one integer per position), got {bad or keys}; "
                            "record other inputs with sgi.Recorder in your own loop")
        self.length = len(first[0])

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        item = self.dataset[i]
        x = [torch.as_tensor(item[k]) for k in self.keys]
        for k, v in zip(self.keys, x, strict=True):
            if v.shape != (self.length,):
                raise DataError(f"train_dataset: item {i}'s {k} has length {len(v)}, item 0's "
                                f"{self.length}; a run reads fixed-shape instances: tokenize "
                                "with padding='max_length' (and truncation=True)")
        return torch.stack(x), torch.as_tensor(item[self.label])


def _indices(batch: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"sgi_index": torch.stack(batch)}


def _loss(model: nn.Module, y: torch.Tensor) -> str:
    """The loss a Hugging Face model trains for its ``config.problem_type`` (inferred as it
    infers it: one label is regression, integer labels single-label classification)."""
    config = getattr(model, "config", None)
    if config is None:
        raise ConfigError(f"{type(model).__name__} has no config.problem_type to read its loss "
                          "from; pass RecordingTrainer(loss=) a name or a per-instance callable")
    kind = config.problem_type or (
        "regression" if config.num_labels == 1 else
        "multi_label_classification" if y.is_floating_point() else "single_label_classification")
    return LOSSES[kind]


def _honours_num_items(model: nn.Module, train: _Items) -> bool:
    """Whether the model's loss divides by the ``num_items_in_batch`` the Trainer passes it
    (asked of two instances: their loss with 1 item must then differ from their mean)."""
    x, y = zip(train[0], train[1], strict=True)
    inputs = {k: torch.stack(x)[:, j] for j, k in enumerate(train.keys)}
    inputs["labels"] = torch.stack(y)
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            mean = model(**inputs).loss
            one = model(**inputs, num_items_in_batch=torch.tensor(1)).loss
    finally:
        model.train(training)
    return not torch.allclose(mean, one)


def _recordable(args, trainer: transformers.Trainer):
    """A copy of the ``TrainingArguments`` the recorder records (the fused AdamW replaced by
    the same update unfused), or the refusal naming what a run could not replay."""
    if args.fp16 or args.bf16:
        raise ConfigError(f"TrainingArguments({'fp16' if args.fp16 else 'bf16'}=True) trains "
                          "under autocast, which a run cannot replay: train in full precision")
    if args.label_smoothing_factor:
        raise ConfigError(
            f"TrainingArguments(label_smoothing_factor={args.label_smoothing_factor}) is not "
            "recorded: set it to 0 and pass RecordingTrainer(loss=lambda o, t: F.cross_entropy("
            f"o, t, label_smoothing={args.label_smoothing_factor}, reduction='none'))")
    if trainer.compute_loss_func is not None:
        raise ConfigError("compute_loss_func is not recorded: pass RecordingTrainer(loss=) the "
                          "same loss per instance, (outputs, targets) -> (B,)")
    if args.neftune_noise_alpha is not None:
        raise ConfigError("neftune_noise_alpha adds noise through a hook removed after training, "
                          "which no replay would see: train with neftune_noise_alpha=None")
    if args.n_gpu > 1 or args.world_size > 1:
        raise ConfigError("RecordingTrainer records training on one device: run it on one "
                          "(CUDA_VISIBLE_DEVICES=0, no torchrun)")
    if args.train_sampling_strategy == "batch_rebalance":
        raise ConfigError("train_sampling_strategy='batch_rebalance' balances dynamically padded "
                          "batches, which a run cannot read: use 'random'")
    collator = trainer.data_collator
    if not (collator is transformers.default_data_collator
            or isinstance(collator, transformers.DataCollatorWithPadding)):
        name = getattr(collator, "__name__", type(collator).__name__)
        raise ConfigError(f"data_collator {name} changes the batch, which the "
                          "recorder, reading each item of train_dataset itself, would not see: "
                          "prepare the items in the dataset and use the default collator")
    if trainer.optimizer is not None or trainer.optimizer_cls_and_kwargs is not None:
        return args  # the user's own torch optimizer: the Recorder checks it
    if args.optim == OptimizerNames.ADAMW_TORCH_FUSED:
        warnings.warn("sgdinfluence: TrainingArguments(optim='adamw_torch_fused') replaced by "
                      "'adamw_torch', the same AdamW update unfused, which a run records; pass "
                      "optim='adamw_torch' to silence this", stacklevel=3)
        args = copy.copy(args)
        args.optim = OptimizerNames.ADAMW_TORCH
    elif args.optim not in (OptimizerNames.ADAMW_TORCH, OptimizerNames.SGD):
        raise ConfigError(f"TrainingArguments(optim='{args.optim.value}') is not recorded: the "
                          "sweep differentiates torch's AdamW and SGD; use optim='adamw_torch'")
    return args
