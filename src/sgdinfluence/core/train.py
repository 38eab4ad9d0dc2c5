"""Algorithm 1: mini-batch training that records its trajectory, and its exact replay.

Training, counterfactual retraining (``Run.retrain``) and the backward sweep of Algorithm 2
all use one pure function of flat parameters, :meth:`Objective.batch`, and one pure update,
:meth:`Optimizer.step` (plain SGD as in the paper, or torch's momentum SGD, Adam, AdamW), so
that they agree bit for bit.
"""

from __future__ import annotations

import bisect
import copy
import math
import numbers
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..errors import (
    ConfigError,
    DataError,
    Error,
    RunFileError,
    RunFileNotFound,
    TrainingDiverged,
)
from . import distributed, losses, runfile
from .data import Streamed, Tensors, TrainData
from .losses import LossFn
from .objective import (
    Objective,
    check_no_autocast,
    deterministic,
    mode,
    replay_rng,
    set_modes,
)
from .optimizers import LRSchedule, Optimizer
from .tensors import as_indices, as_tensors
from .trajectory import (
    DiskStore,
    ReplayStore,
    Store,
    make_store,
    read_run_file,
    store_from_state,
    write_run_file,
)


@dataclass(frozen=True)
class FitConfig:
    """How a run was made; saved with it."""

    loss: str
    epochs: int
    batch_size: int
    lr: float | str  # the constant rate, or the repr of the schedule
    weight_decay: float | tuple[float, ...] = 0.0  # one per parameter group, if several
    seed: int = 0
    store: str = "memory"
    augment: str | None = None  # repr of the augmentation
    optimizer: dict = field(default_factory=lambda: asdict(Optimizer()))


@dataclass
class Run:
    """A recorded run: θ[T] in ``model``, the schedule, and the trajectory ``store``.

    ``batches[t]`` (|S_t|,) are the training indices of step t, ``lrs[t]`` its learning rate,
    ``seeds[t]`` the seed its randomness (dropout) was drawn from (with parameter groups,
    ``lrs[t]`` and ``config.weight_decay`` hold one value per group, and ``groups`` the
    group of each entry of θ), ``store[t]`` the state
    before step t: θ[t] (P,) for plain SGD, θ[t] followed by the optimizer's slots (momentum
    buffer; Adam's moments) otherwise, split by :meth:`unpack`. ``epoch_starts[e]`` is the
    first step of epoch e and ``epoch_buffers[e]`` the model's buffers (e.g. batch-norm
    statistics) at that moment.
    """

    model: nn.Module
    initial_state: dict[str, torch.Tensor]
    batches: list[torch.Tensor]
    lrs: list  # floats; with parameter groups, a tuple of floats (one per group) per step
    seeds: list[int]
    epoch_starts: list[int]
    epoch_buffers: list[dict[str, torch.Tensor]]
    losses: np.ndarray
    config: FitConfig
    store: Store
    train: TrainData
    loss_fn: LossFn = field(repr=False)
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None
    optimizer: Optimizer = field(default_factory=Optimizer)
    groups: torch.Tensor | None = None  # (P,) the parameter group of each entry of θ
    eval_modules: list = field(default_factory=list)  # [first step, [names]] where it changes
    hypers: list = field(default_factory=list)  # [first step, {momentum or betas}] likewise
    micro: list = field(default_factory=list)  # [first step, micro-batches] likewise
    _entries: dict = field(default_factory=dict, repr=False, compare=False)
    _sealed: list = field(default_factory=list, init=False, repr=False, compare=False)

    def at_step(self, objective: Objective, t: int) -> None:
        """Make ``objective`` step t's: its model's modules in the modes of step t, and its
        coupled weight decay that step's (a scheduler may change it: ``hypers``)."""
        self.step_modes(objective.model, t)
        if any("weight_decay" in h for _, h in self.hypers):
            objective.weight_decay = 0.0 if self.optimizer.name == "adamw" else self.decay_at(t)

    def step_modes(self, model: nn.Module, t: int) -> None:
        """Put ``model``'s modules in the modes of step t: train mode, but for the modules
        the run had in eval mode then (``eval_modules``: from each listed step on, the
        modules named). Nothing to do for a run with none."""
        if self.eval_modules:
            starts = [s for s, _ in self.eval_modules]
            set_modes(model, frozenset(self.eval_modules[bisect.bisect_right(starts, t) - 1][1]))

    def first_in_train_mode(self, name: str) -> int:
        """The first step at which module ``name`` trains in train mode (num_steps: never)."""
        changes = self.eval_modules if self.eval_modules and self.eval_modules[0][0] == 0 \
            else [[0, []], *self.eval_modules]
        return next((start for start, in_eval in changes if name not in in_eval),
                    self.num_steps)

    def hypers_at(self, t: int) -> dict:
        """The momentum, betas or weight decay a scheduler had set for step t, where they
        differ from the run's (``hypers``: from each listed step on)."""
        k = bisect.bisect_right([s for s, _ in self.hypers], t) - 1
        return {} if k < 0 else self.hypers[k][1]

    def optimizer_at(self, t: int) -> Optimizer:
        """The update rule of step t: ``optimizer`` with the momentum or betas a scheduler
        (OneCycleLR's cycle_momentum) had set for it."""
        found = {k: v for k, v in self.hypers_at(t).items() if k != "weight_decay"}
        if not found:
            return self.optimizer
        key = ("optimizer", repr(found))
        if key not in self._entries:
            self._entries[key] = replace(self.optimizer, **found)
        return self._entries[key]

    def decay_value(self, t: int):
        """Step t's weight decay as the optimizer holds it: a number, or one per group."""
        return self.hypers_at(t).get("weight_decay", self.config.weight_decay)

    def decay_at(self, t: int) -> float | torch.Tensor:
        """Step t's weight decay α: a number, or (P,) per entry of θ."""
        return self._per_entry(self.decay_value(t))

    def decoupled_at(self, t: int) -> float | torch.Tensor:
        """The decoupled decay step t's update applies (AdamW's), else 0."""
        return self.decay_at(t) if self.optimizer.name == "adamw" else 0.0

    def micro_at(self, t: int) -> int:
        """The micro-batches step t's gradient was accumulated over (1: none)."""
        k = bisect.bisect_right([s for s, _ in self.micro], t) - 1
        return 1 if k < 0 else self.micro[k][1]

    @property
    def num_steps(self) -> int:
        return len(self.batches)

    @property
    def epochs(self) -> int:
        return len(self.epoch_starts)

    @property
    def num_train(self) -> int:
        return len(self.train)

    def objective(self, model: nn.Module | None = None, functional: bool = False) -> Objective:
        """The step objective on ``model`` (default: a private copy of ``self.model``);
        ``functional=True`` for use inside torch.func transforms."""
        model = copy.deepcopy(self.model) if model is None else model
        coupled = 0.0 if self.optimizer.name == "adamw" else self.decay
        return Objective(model, self.loss_fn, coupled, self.augment, functional)

    def rate(self, t: int) -> float | torch.Tensor:
        """η_t: a number, or (P,) per entry of θ where parameter groups have their own."""
        return self._per_entry(self.lrs[t])

    @property
    def decay(self) -> float | torch.Tensor:
        """The weight decay α: a number, or (P,) per entry of θ."""
        return self._per_entry(self.config.weight_decay)

    def _per_entry(self, value):
        """``value`` as it is, or (P,) per entry of θ from one value per parameter group
        (made once per distinct tuple of values: the sweep asks at every step)."""
        if self.groups is None:
            return value
        if value not in self._entries:
            p = next(self.model.parameters())
            self._entries[value] = torch.as_tensor(value, dtype=p.dtype,
                                                   device=p.device)[self.groups]
        return self._entries[value]

    def unpack(self, state: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """θ (P,) and the optimizer's slots from a stored state row."""
        parts = state.chunk(1 + self.optimizer.slots)
        return parts[0], tuple(parts[1:])

    def retrain(self, exclude: Iterable[int] | np.ndarray | torch.Tensor = (),
                from_epoch: int = 0) -> nn.Module:
        """Counterfactual training: the identical schedule with the ``exclude``d instances'
        weights set to 0 (the divisor stays |S_t|), from the recorded state (parameters and
        optimizer state) at the start of epoch ``from_epoch``. ``exclude`` is integer indices
        (repeats allowed) or a boolean mask of length N. ``exclude=[]`` reproduces
        ``self.model`` bit for bit for a run of ``fit`` (to rounding for a recorder's, whose
        steps torch's optimizer took)."""
        if not isinstance(from_epoch, (int, np.integer)) or isinstance(from_epoch, bool):
            raise TypeError(f"from_epoch must be an int, got {from_epoch!r}")
        if not 0 <= from_epoch < self.epochs:
            raise Error(f"from_epoch must be in [0, {self.epochs}), got {from_epoch}")
        self.check()
        weights = self.weights(exclude)
        objective = self.objective()
        model = objective.model
        start = self.epoch_starts[from_epoch]
        model.load_state_dict(self.epoch_buffers[from_epoch], strict=False)
        state, _ = train_steps(objective, self.store[start], self, range(start, self.num_steps),
                               weights)
        objective.load(self.unpack(state)[0])
        return model.eval()

    def weights(self, exclude: Iterable[int] | np.ndarray | torch.Tensor = ()) -> torch.Tensor:
        """Instance weights w (N,): 1, and 0 for the excluded instances (checked: integer
        indices, repeats allowed, or a boolean mask of length N)."""
        idx = as_indices(exclude, self.num_train, "exclude")
        p = next(self.model.parameters())
        w = torch.ones(self.num_train, dtype=p.dtype, device=p.device)
        w[idx.to(w.device)] = 0
        return w

    def replay(self, state: torch.Tensor, steps: range) -> list[torch.Tensor]:
        """Regenerate the states of the consecutive ``steps`` from the state of steps[0] by
        re-running the recorded training: bit-exact on CPU (a ReplayStore relies on this)."""
        record: list[torch.Tensor] = []
        train_steps(self.objective(), state, self, steps, self.weights(), record=record)
        return record

    def payload(self) -> dict:
        """Everything a run file holds, as tensors and plain data (:mod:`.runfile`): model,
        schedule, trajectory store, training data."""
        return {
            "model": runfile.model_part(self.model), "initial_state": self.initial_state,
            "batches": self.batches, "lrs": self.lrs, "seeds": self.seeds,
            "epoch_starts": self.epoch_starts, "epoch_buffers": self.epoch_buffers,
            "losses": torch.as_tensor(self.losses), "config": asdict(self.config),
            "store": self.store.state(), "train": runfile.train_part(self.train),
            "loss": runfile.loss_part(self.loss_fn),
            "augment": runfile.augment_part(self.augment),
            "optimizer": asdict(self.optimizer), "groups": self.groups,
            "eval_modules": self.eval_modules, "hypers": self.hypers, "micro": self.micro,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the run to one file, atomically. (A DiskStore run is already saved in its
        directory; a file saved from it refers to that directory for the trajectory.)"""
        self.check()
        write_run_file(path, self.payload())

    def seal(self) -> None:
        """Note θ[T] and the buffers as trained, for :meth:`check`."""
        self._sealed = [t.detach().clone() for t in self.model.state_dict().values()]

    def check(self) -> None:
        """Refuse a run whose model was changed since it was trained: its scores, retraining
        and files would describe another model."""
        if not self._sealed:  # a Run put together by hand
            return
        now = list(self.model.state_dict().values())
        if len(now) != len(self._sealed) or not all(
                a.shape == b.shape and torch.equal(a, b.to(a.device))
                for a, b in zip(now, self._sealed, strict=False)):
            raise Error("run.model was changed after training (its parameters or buffers are "
                        "no longer θ[T]); the run describes the model as trained: experiment "
                        "on copy.deepcopy(run.model), or record the new training")


def load_run(path: str | os.PathLike, map_location=None, *, model: nn.Module | None = None,
             loss: str | LossFn | None = None, train: Dataset | None = None,
             augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Run:
    """Read a run written by :meth:`Run.save`, or a DiskStore run's directory.

    A run file holds tensors and plain data only; reading it runs no code from it
    (:mod:`sgdinfluence.core.runfile`). A model made of torch.nn's layers and sgdinfluence's
    is rebuilt from the file; any other ``model`` is given again, built as for ``fit`` (the
    file's state is loaded into a copy of it), and so are a ``loss`` or ``augment`` callable
    and a Dataset as ``train``. What is given is checked against the run: step 0's loss
    must come out as recorded.

    Refuses (:class:`RunFileError`) missing, truncated, foreign or corrupt files, files that
    hold objects, unknown format versions and interrupted disk runs."""
    if model is not None and not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if train is not None and not isinstance(train, Dataset):
        raise TypeError(f"train must be the run's torch Dataset, got {type(train).__name__}")
    if augment is not None and not callable(augment):
        raise TypeError(f"augment must be callable, got {type(augment).__name__}")
    if loss is not None:
        losses.resolve(loss)
    p = read_run_file(path, map_location)
    runfile.check_parts(p, path)
    try:
        trained = runfile.rebuild_model(p["model"], model, map_location, path)
        loss_fn = runfile.rebuild_loss(p["loss"], loss, path)
        params = [v for v in trained.parameters() if v.requires_grad]
        data = runfile.rebuild_train(p["train"], train, loss_fn, params[0].dtype, path)
        runfile.check_schedule(p, len(data), path)
        run = Run(
            model=trained.eval(), initial_state=p["initial_state"], batches=p["batches"],
            lrs=p["lrs"], seeds=p["seeds"], epoch_starts=p["epoch_starts"],
            epoch_buffers=p["epoch_buffers"], losses=p["losses"].numpy(),
            config=FitConfig(**p["config"]), store=_store(p["store"], path),
            train=data, loss_fn=loss_fn,
            augment=runfile.rebuild_augment(p["augment"], augment, path),
            optimizer=Optimizer(**p["optimizer"]), groups=p["groups"],
            eval_modules=p["eval_modules"], hypers=p["hypers"], micro=p["micro"],
        )
        for k in range(len(run.hypers)):  # each step's update rule is one
            run.optimizer_at(run.hypers[k][0])
        P = sum(v.numel() for v in params)
        width = run.store[0].numel() if len(run.store) else 0
        if len(run.store) != run.num_steps or width != P * (1 + run.optimizer.slots):
            raise RunFileError(f"the run {path} is corrupt: {len(run.store)} states of "
                               f"{width} numbers for {run.num_steps} steps of a model of {P} "
                               f"parameters ({run.optimizer.slots} optimizer slots)")
        if run.groups is not None and (len(run.groups) != P or run.groups.min() < 0 or any(
                len(r) != int(run.groups.max()) + 1 for r in run.lrs)):
            raise RunFileError(f"the run {path} is corrupt: its parameter groups do not match "
                               "its model or its rates")
        run.store.bind(run)
        run.train.to(params[0].device)  # where map_location put the model
        if isinstance(run.train, Streamed):
            _check_forward(run.objective(), run.unpack(run.store[0])[0], run.train)
        _check_step0(run, path)
    except (RunFileError, DataError):
        raise
    except Exception as e:  # a hand-edited file: keys, types or values that do not fit
        raise RunFileError(f"{path} is corrupt or lacks part of a run ({type(e).__name__}: "
                           f"{e}); re-record it with sgi.fit").with_traceback(None) from e
    run.seal()
    return run


def _store(state: dict, path) -> Store:
    try:
        return store_from_state(state)
    except RunFileError as e:
        if isinstance(e, RunFileNotFound):
            raise
        raise RunFileError(f"the run {path} is corrupt: {e}; re-record it with sgi.fit") from e


def _check_step0(run: Run, path) -> None:
    """Recompute step 0's loss with the run's parts; it must be the recorded one (a model,
    loss, augmentation or Dataset given to load_run that is not the run's fails here)."""
    objective = run.objective()
    theta = run.unpack(run.store[0])[0]
    objective.model.load_state_dict(run.epoch_buffers[0], strict=False)
    x, y = run.train.batch(run.batches[0], run.seeds[0])
    values = []
    for term in (objective.terms, objective.per_instance):  # fit's record, a recorder's
        value = 0.0
        for part, seed in distributed.pieces(len(y), run.micro_at(0), run.seeds[0], 0):
            with torch.no_grad(), mode(objective.model, train=True), \
                    replay_rng(seed, theta.device):
                run.at_step(objective, 0)
                value += term(theta, x[part], y[part]).sum().item() / len(y)
        values.append(value)
    recorded = float(run.losses[0])
    if not any(math.isclose(v, recorded, rel_tol=1e-4, abs_tol=1e-6) for v in values):
        raise RunFileError(f"step 0 of the run {path} recorded the loss {recorded:.6g}, but "
                           f"its model, loss, augmentation and data as loaded give "
                           f"{values[0]:.6g}: pass load_run the parts the run was trained with")


# --- Algorithm 1 -------------------------------------------------------------------------

def train_steps(objective: Objective, state: torch.Tensor, run: Run, steps: Sequence[int],
                weights: torch.Tensor, record: Store | list | None = None,
                bar: tqdm | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """Run the ``steps`` of the recorded schedule from ``state``: each step takes the gradient
    g = ∇_θ (1/|S_t|) Σ_{i∈S_t} w_i ℓ_i(θ[t]) and updates θ (and the optimizer's slots) by
    the run's optimizer; plain SGD is the paper's θ[t+1] = θ[t] - η_t g.

    ``run`` supplies the schedule (``batches``, ``lrs``, ``seeds``), the data (``train``) and
    the optimizer. Records each step's state before the step in ``record``. Returns the state
    at the end and the step losses.
    """
    step_losses = torch.empty(len(steps), dtype=torch.float64)
    local = [distributed.shard(run.batches[t]) for t in steps]  # all of S_t in one process
    data = run.train.batches(local, [run.seeds[t] for t in steps])
    with mode(objective.model, train=True), deterministic(state.device):
        for k, (t, part, (x, y)) in enumerate(zip(steps, local, data, strict=True)):
            if record is not None:
                record.append(state)
            theta, slots = run.unpack(state.detach())
            theta.requires_grad_()
            run.at_step(objective, t)
            g, loss = distributed.gradient(objective, theta, weights[part], x, y,
                                           len(run.batches[t]), run.seeds[t], run.micro_at(t))
            value = loss.item()
            check_finite(value, t, int(np.searchsorted(run.epoch_starts, t, side="right")) - 1,
                         run.lrs[t])
            step_losses[k] = value
            theta, slots = run.optimizer_at(t).step(theta.detach(), slots, g, run.rate(t), t,
                                                    run.decoupled_at(t))
            state = torch.cat([theta, *slots]) if slots else theta
            if bar is not None:
                bar.update()
    return state, step_losses.numpy()


def check_clip(optimizer: Optimizer, coupled_decay: bool) -> None:
    """Clipping is exact with decoupled or no weight decay; torch clips before it adds a
    coupled decay to the gradient, which the run's objective (the decay in each instance's
    loss) cannot separate: refused."""
    if optimizer.clips and coupled_decay:
        raise ConfigError("gradient clipping with a coupled weight decay (sgd or adam with "
                          "weight_decay > 0) is not supported: torch clips the gradient "
                          "before it adds the decay; use adamw (decoupled decay) or "
                          "weight_decay=0")


def check_finite(value: float, step: int, epoch: int, lr) -> None:
    """Refuse a step whose training loss is NaN or infinite, naming where it happened."""
    if not math.isfinite(value):
        raise TrainingDiverged(
            f"training diverged: the loss became {value} at step {step} (epoch {epoch}), whose "
            f"learning rate is {lr}; lower the learning rate (lr) or check the data for extreme "
            "values", step=step, epoch=epoch, lr=lr)


def loss_name(loss: str | LossFn) -> str:
    """How a run file and a report name the loss."""
    return loss if isinstance(loss, str) else getattr(loss, "__name__", "custom")


def schedule(n: int, epochs: int, batch_size: int, lr, seed: int):
    """The seeded schedule: shuffled mini-batches per epoch, learning rates and step seeds."""
    gen = torch.Generator().manual_seed(seed)
    batches: list[torch.Tensor] = []
    epoch_starts = []
    for _ in range(epochs):
        epoch_starts.append(len(batches))
        batches.extend(torch.randperm(n, generator=gen).split(batch_size))
    seeds = torch.randint(0, 2**62, (len(batches),), generator=gen).tolist()
    if isinstance(lr, LRSchedule):
        lrs = lr.rates(len(batches), epoch_starts)
    elif callable(lr):
        lrs = [_rate(lr, t) for t in range(len(batches))]
    else:
        lrs = [float(lr)] * len(batches)
    bad = [t for t, r in enumerate(lrs) if not (math.isfinite(r) and r >= 0)]
    if bad:
        raise Error(f"lr must be finite and >= 0; step {bad[0]} has lr={lrs[bad[0]]}")
    return batches, lrs, seeds, epoch_starts


def _rate(lr: Callable[[int], float], t: int) -> float:
    value = lr(t)
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"lr, a callable, must return a number for each step; lr({t}) returned "
                        f"{type(value).__name__} {value!r}") from e


def fit(model: nn.Module, train, loss: str | losses.LossFn = "cross_entropy", *,
        epochs: int, batch_size: int, lr: float | Callable[[int], float] | LRSchedule,
        weight_decay: float = 0.0, seed: int = 0, store="memory",
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        optimizer: str = "sgd", momentum: float = 0.0, dampening: float = 0.0,
        nesterov: bool = False, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
        max_grad_norm: float | None = None, clip_grad_value: float | None = None,
        workers: int = 0, progress: bool = False) -> Run:
    """Algorithm 1: train a copy of ``model`` by mini-batch SGD (or momentum SGD, Adam, AdamW)
    and record the trajectory.

    ``train`` is ``(X, y)`` (tensors or arrays, X (N, ...), y (N,)), or a map-style Dataset
    of (x, y), which is read batch by batch by index and never materialised (``workers``:
    DataLoader worker processes reading ahead; the Dataset must give the same item for an
    index every time).
    ``lr`` is a float, a callable ``step -> float`` or an :class:`LRSchedule` (a torch
    scheduler's rates). ``optimizer`` is ``"sgd"`` (with ``momentum``, ``dampening``,
    ``nesterov``), ``"adam"`` or ``"adamw"`` (with ``betas``, ``eps``), updating exactly as
    ``torch.optim.SGD`` / ``Adam`` / ``AdamW``. ``weight_decay`` α is each instance's
    (α/2)‖θ‖² for ``"sgd"`` and ``"adam"`` (torch's coupled ``weight_decay`` when every
    instance is present), and torch's decoupled decay for ``"adamw"``. ``augment`` transforms
    one input (a torchvision transform, say), applied to each input of a step's batch, or a
    whole batch if it is marked ``batched = True`` (:class:`RandomCrop`); it draws from
    torch's default generator, seeded per step, so retraining and the sweep replay it.
    ``clip_grad_value`` and ``max_grad_norm`` clip each step's gradient as
    ``torch.nn.utils.clip_grad_value_`` and ``clip_grad_norm_`` do (in that order), as part
    of the update the sweep reverses. ``model`` itself is left untouched (it is θ[0]); the
    trained copy is ``run.model``. Training runs in the model's dtype and on its device, in
    train mode, but for the parts of a model in train mode that the user put in eval mode (a
    frozen backbone's batch norm, say), which stay so (recorded, and replayed).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for name, v in (("epochs", epochs), ("batch_size", batch_size), ("seed", seed)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            raise TypeError(f"{name} must be an int, got {v!r}")
    if epochs < 1:
        raise Error(f"epochs must be >= 1, got {epochs}")
    if not 0 <= seed < 2**63:
        raise Error(f"seed must be in [0, 2**63), got {seed}")
    if not callable(lr) and not isinstance(lr, LRSchedule):
        _check_real("lr", lr, "a number, a callable step -> learning rate or an LRSchedule")
        if not (math.isfinite(lr) and lr >= 0):
            raise Error(f"lr must be finite and >= 0, got {lr}")
    _check_real("weight_decay", weight_decay, "a number")
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise Error(f"weight_decay must be finite and >= 0, got {weight_decay}")
    loss_fn = losses.resolve(loss)
    opt = Optimizer(optimizer, momentum=momentum, dampening=dampening, nesterov=nesterov,
                    betas=betas, eps=eps, max_grad_norm=max_grad_norm,
                    clip_grad_value=clip_grad_value)
    check_clip(opt, bool(weight_decay) and opt.name != "adamw")
    store = make_store(store)
    model = copy.deepcopy(model)
    if augment is not None and not callable(augment):
        raise TypeError(f"augment must be callable, got {type(augment).__name__}")
    objective = Objective(model, loss_fn, 0.0, augment)  # the run's objective, once it exists
    theta0 = objective.flatten()
    data = training_data(train, loss_fn, theta0, workers)
    check_no_autocast(theta0.device, "fit")
    if not 1 <= batch_size <= len(data):
        raise Error(f"batch_size must be in [1, {len(data)}] (the training set size), "
                    f"got {batch_size}")

    _check_size(len(data), epochs, batch_size, theta0, opt.slots, store)
    batches, lrs, seeds, epoch_starts = schedule(len(data), epochs, batch_size, lr, seed)
    config = FitConfig(loss=loss_name(loss),
                       epochs=int(epochs), batch_size=int(batch_size),
                       lr=float(lr) if isinstance(lr, numbers.Real) else repr(lr),
                       weight_decay=float(weight_decay), seed=int(seed),
                       store=store.kind, augment=None if augment is None else repr(augment),
                       optimizer=asdict(opt))
    run = Run(model=model, initial_state=copy.deepcopy(model.state_dict()), batches=batches,
              lrs=lrs, seeds=seeds, epoch_starts=epoch_starts, epoch_buffers=[],
              losses=np.empty(0), config=config, store=store, train=data,
              loss_fn=loss_fn, augment=augment, optimizer=opt, eval_modules=_in_eval(model))
    objective = run.objective(model)  # with the weight decay the run assigns to instances
    _check_forward(objective, theta0, data)
    if isinstance(data, Streamed):  # its augmentation, if any, must replay
        data.check_reproducible(distributed.shard(batches[0]), seeds[0])
    state = torch.cat([theta0] + [torch.zeros_like(theta0)] * opt.slots)
    run.store.begin(run, state)
    weights = torch.ones(len(data), dtype=theta0.dtype, device=theta0.device)
    step_losses = []
    bar = tqdm(total=len(batches), desc="training", disable=not progress, leave=False)
    for e in range(epochs):  # epoch by epoch, to snapshot buffers where retraining can start
        run.epoch_buffers.append({k: b.clone() for k, b in model.named_buffers()})
        stop = epoch_starts[e + 1] if e + 1 < epochs else len(batches)
        state, ls = train_steps(objective, state, run, range(epoch_starts[e], stop), weights,
                                record=run.store, bar=bar)
        step_losses.append(ls)
    bar.close()
    objective.load(run.unpack(state)[0])
    run.losses = np.concatenate(step_losses)
    model.eval()
    run.store.end(run)
    run.seal()
    return run


def _check_size(n: int, epochs: int, batch_size: int, theta0: torch.Tensor, slots: int,
                store: Store) -> None:
    """Refuse, before training, a run whose schedule and trajectory cannot fit: the
    schedule (~100 bytes a step and 8 an index) and a memory store's T states in memory, a
    disk store's on its disk."""
    steps = epochs * -(-n // batch_size)
    state = theta0.numel() * theta0.element_size() * (1 + slots)
    memory = schedule_bytes = steps * 100 + epochs * n * 8
    disk = free = 0
    if isinstance(store, DiskStore):
        disk, free = steps * state, shutil.disk_usage(_existing(store.path)).free
    elif isinstance(store, ReplayStore):
        memory += math.isqrt(steps) * 2 * state
    else:
        memory += steps * state
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if memory > total or disk > free:
        where = (f"{disk / 1e9:.3g} GB on disk, {free / 1e9:.3g} GB free" if disk > free else
                 f"{memory / 1e9:.3g} GB of memory, {total / 1e9:.3g} GB here")
        other = store.kind == "memory" and schedule_bytes < total
        raise ConfigError(f"epochs={epochs} of {n} instances in batches of {batch_size} is "
                          f"{steps:,} steps of {theta0.numel():,} parameters: the run would "
                          f"need {where}; train for fewer epochs" +
                          (", or keep the trajectory with store=sgi.DiskStore(path) or "
                           "'replay'" if other else ""))


def _existing(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def _in_eval(model: nn.Module) -> list:
    """The modes fit trains in: all in train mode, but the parts the user put in eval mode in
    a model otherwise in train mode (a frozen backbone). A model wholly in eval mode trains
    wholly in train mode."""
    in_eval = sorted(n for n, m in model.named_modules() if not m.training)
    return [[0, in_eval]] if in_eval and model.training else []


def training_data(train, loss_fn: LossFn, theta0: torch.Tensor, workers: int = 0
                  ) -> TrainData:
    """``train`` as the run reads it: a pair (X, y) as tensors in the model's dtype and on
    its device; a map-style Dataset streamed batch by batch (``workers``: DataLoader
    processes), never read whole."""
    if isinstance(train, Dataset):
        return Streamed(train, loss_fn, theta0.dtype, theta0.device, workers)
    X, y = as_tensors(train, "train")
    # copies, never the caller's arrays: editing those after fit must not change the run
    X = X.to(theta0.device, theta0.dtype if X.is_floating_point() else X.dtype, copy=True)
    y = losses.prepare_targets(loss_fn, y.clone(), theta0.dtype, "train").to(theta0.device)
    return Tensors(X, y)


def _check_forward(objective: Objective, theta, data: TrainData) -> None:
    """Fail early, and readably, when the data does not fit the model or the loss: one
    forward pass on 2 instances gives the output width against which the labels are checked
    (all at once in memory; batch by batch as a streamed dataset is read)."""
    x, y2 = data.batch(torch.arange(min(2, len(data))))
    theta = theta.detach().requires_grad_()
    try:
        with mode(objective.model, train=False):
            out = objective.outputs(theta, x)
            if isinstance(data, Tensors):
                losses.check_targets(objective.loss_fn, data.y, out, "train")
            elif isinstance(data, Streamed):  # then each batch, as it is read
                data.outputs = out[:1].detach()
            per = objective.loss_fn(out, y2)
    except Error:
        raise
    except (RuntimeError, ValueError, IndexError, TypeError) as e:
        raise DataError(f"the model and loss cannot process the training data (x of shape "
                        f"{data.x_shape} per instance, y of shape {data.y_shape}): "
                        f"{e}") from e
    if per.shape != (len(x),):
        raise Error(f"the loss must return one value per instance, shape ({len(x)},); "
                    f"got {tuple(per.shape)}")
    if not per.requires_grad:
        raise Error("the loss is not differentiable in the model's outputs (no gradient flows "
                    "through it: argmax, a comparison or .detach() inside?); SGD and the sweep "
                    "need its gradient: use a differentiable loss such as 'cross_entropy'")


def _check_real(name: str, value, expected: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
