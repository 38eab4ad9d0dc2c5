"""Algorithm 1 inside the user's own training loop.

    rec = sgi.Recorder(model, optimizer, "cross_entropy", train_dataset)
    for epoch in range(epochs):
        for idx in torch.randperm(len(train_dataset)).split(64):
            loss = rec.step(idx)   # reads the batch, takes the gradient, steps the optimizer
        scheduler.step()
    run = rec.finish()             # a Run like fit's: influence, retrain, save

The user's ``torch.optim.SGD`` / ``Adam`` / ``AdamW`` (parameter groups with their own rate
and weight decay included) trains the user's model in place, as the loop would without the
recorder; the recorder computes the gradient of the step objective the sweep differentiates
and records, before each step, the mini-batch, each group's rate, the seed the step's
randomness (dropout, ``augment``) is drawn from, and the state: θ and the optimizer's
buffers. Epochs are counted by instances seen: a new one starts each time N have been.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, replace

import numpy as np
import torch
from torch import nn

from ..errors import Error
from . import distributed, losses
from .data import Streamed
from .objective import Objective, check_no_autocast, deterministic
from .optimizers import Optimizer
from .tensors import as_indices
from .train import (
    FitConfig,
    Run,
    _check_forward,
    check_clip,
    check_finite,
    loss_name,
    training_data,
)
from .trajectory import make_store

UNSUPPORTED = ("amsgrad", "maximize", "capturable", "differentiable", "fused")
SHARED = {"sgd": ("momentum", "dampening", "nesterov"), "adam": ("betas", "eps"),
          "adamw": ("betas", "eps")}


class Recorder:
    """Record a run from the user's loop; see the module's docstring. ``loss`` is a name
    (``"cross_entropy"``, ``"bce"``, ``"mse"``) or a callable ``(outputs, targets) ->
    per-instance losses``; ``train`` a pair (X, y) or a map-style Dataset (read by index);
    ``store`` as for :func:`fit`; ``seed`` seeds the steps' seeds. ``max_grad_norm`` and
    ``clip_grad_value`` clip each step's gradient with ``torch.nn.utils.clip_grad_norm_`` /
    ``clip_grad_value_`` before the optimizer's step, recorded as part of the update; a
    gradient clipped any other way (in an optimizer hook, say) is refused at that step."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 loss: str | losses.LossFn = "cross_entropy", train=None, *, store="memory",
                 augment=None, workers: int = 0, seed: int = 0,
                 max_grad_norm: float | None = None, clip_grad_value: float | None = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(loss, nn.modules.loss._WeightedLoss) and loss.weight is not None:
            raise Error(f"loss: {type(loss).__name__}(weight=...) divides a batch by the sum of "
                        "its instances' class weights, but a run's step divides it by its "
                        "size, so the recording would train another objective than your loop; "
                        "weight the instances within the step if that is what you mean (loss="
                        "lambda o, t: w[t] * F.cross_entropy(o, t, reduction='none'))")
        name, opt = _optimizer(optimizer)
        opt = replace(opt, max_grad_norm=max_grad_norm, clip_grad_value=clip_grad_value)
        loss_fn = losses.resolve(loss)
        self.model, self.optimizer = model, optimizer
        # torch adds a group's coupled decay to the gradient itself; the run's objective
        # carries it as each instance's share, for retraining and the sweep
        self.objective = Objective(model, loss_fn, 0.0, augment)
        theta0 = self.objective.flatten()
        group_of, decays = _groups(optimizer, self.objective.params, self.objective.names)
        check_clip(opt, any(decays) and name != "adamw")
        self.data = training_data(train, loss_fn, theta0, workers)
        _check_forward(self.objective, theta0, self.data)
        several = len(optimizer.param_groups) > 1
        config = FitConfig(loss=loss_name(loss), epochs=0, batch_size=0,
                           lr="recorded from the optimizer",
                           weight_decay=tuple(decays) if several else decays[0], seed=seed,
                           store="", augment=None if augment is None else repr(augment),
                           optimizer=asdict(opt))
        store = make_store(store)
        self.run = Run(model=model, initial_state=copy.deepcopy(model.state_dict()),
                       batches=[], lrs=[], seeds=[], epoch_starts=[], epoch_buffers=[],
                       losses=np.empty(0), config=replace(config, store=store.kind),
                       store=store, train=self.data, loss_fn=loss_fn, augment=augment,
                       optimizer=opt, groups=torch.cat([
                           torch.full((p.numel(),), group_of[id(p)], device=theta0.device)
                           for p in self.objective.params]) if several else None)
        store.begin(self.run, torch.cat([theta0] * (1 + opt.slots)))
        self._name, self._seeds = name, torch.Generator().manual_seed(seed)
        self._seen, self._done = 0, False
        self._after: torch.Tensor | None = None  # the state the last step left
        self._options = _options(optimizer)
        self._base = self._hypers()  # the run's own: its optimizer's and config's
        self._losses: list[float] = []

    def step(self, indices, micro_batches: int = 1) -> float:
        """One training step on the instances ``indices`` (integer indices into the training
        data, or a boolean mask); returns the mini-batch's mean loss. ``micro_batches`` > 1
        accumulates the gradient over that many contiguous parts of ``indices``, one forward
        each (their own batch-norm statistics and randomness), as a loop with gradient
        accumulation does: the recorded step is the optimizer's, its objective the mean
        over all of ``indices`` (each part's loss summed and divided by their total)."""
        if self._done:
            raise Error("the recorder is finished; start a new Recorder for another run")
        run, objective = self.run, self.objective
        check_no_autocast(self.data.device, "Recorder.step")
        idx = as_indices(indices, len(self.data), "indices", allow_empty=False)
        if (isinstance(micro_batches, bool) or not isinstance(micro_batches, int)
                or not 1 <= micro_batches <= len(idx)):
            raise Error(f"micro_batches must be an int in [1, {len(idx)}] (the step's "
                        f"instances), got {micro_batches!r}")
        distributed.check_same(idx, "the indices given to Recorder.step")
        t = run.num_steps
        new_epoch = len(run.epoch_starts) <= self._seen // len(self.data)
        buffers = {k: b.clone() for k, b in self.model.named_buffers()} if new_epoch else {}
        theta = objective.flatten()
        state = torch.cat([theta, *self._slots()])
        self._check_untouched(state)
        rates = [float(g["lr"]) for g in self.optimizer.param_groups]
        hypers = self._hypers()
        seed = int(torch.randint(0, 2**62, (), generator=self._seeds))
        part = distributed.shard(idx)  # all of it in one process
        x, y = self.data.batch(part, seed)
        if t == 0 and isinstance(self.data, Streamed):
            self.data.check_reproducible(part, seed)
        theta.requires_grad_()
        # the step runs in the modes the user's loop set (a backbone in eval mode stays so)
        in_eval = sorted(n for n, m in self.model.named_modules() if not m.training)
        with deterministic(theta.device):
            g, loss = distributed.gradient(objective, theta, torch.ones(
                len(part), dtype=theta.dtype, device=theta.device), x, y, len(idx), seed,
                micro_batches)
        value = loss.item()
        check_finite(value, t, len(run.epoch_starts) - (0 if new_epoch else 1),
                     tuple(rates) if run.groups is not None else rates[0])
        # the step is taken: record it (a step that failed above is not in the run)
        if new_epoch:  # an epoch's first step: retraining can start here
            run.epoch_starts.append(t)
            run.epoch_buffers.append(buffers)
        if micro_batches != run.micro_at(t):
            run.micro.append([t, micro_batches])  # accumulated over this many from here on
        if in_eval != (run.eval_modules[-1][1] if run.eval_modules else []):
            run.eval_modules.append([t, in_eval])  # the modes change from this step on
        if hypers != (run.hypers_at(t) or self._base):  # a scheduler changed them
            run.hypers.append([t, hypers])
        run.store.append(state)
        run.lrs.append(tuple(rates) if run.groups is not None else rates[0])
        run.seeds.append(seed)
        run.batches.append(idx)
        for p, gp in zip(objective.params, g.split(objective.sizes), strict=True):
            p.grad = gp.view_as(p).clone()
        if run.optimizer.clip_grad_value is not None:
            torch.nn.utils.clip_grad_value_(objective.params, run.optimizer.clip_grad_value)
        if run.optimizer.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(objective.params, run.optimizer.max_grad_norm)
        self.optimizer.step()
        self._after = after = torch.cat([objective.flatten(), *self._slots()])  # next start
        self._check_update(state, after, g, t)
        self._seen += len(idx)
        self._losses.append(value)
        return value

    def finish(self) -> Run:
        """The recorded run: θ[T] is a copy of the model as trained now."""
        run = self.run
        if not run.num_steps:
            raise Error("the recorder has recorded no step; call step(indices) in the loop")
        self._check_untouched(torch.cat([self.objective.flatten(), *self._slots()]))
        self._done = True
        run.model = copy.deepcopy(self.model).eval()
        run.losses = np.asarray(self._losses)
        run.config = replace(run.config, epochs=run.epochs,
                             batch_size=max(len(b) for b in run.batches))
        run.store.end(run)
        run.seal()
        return run

    def _check_untouched(self, state: torch.Tensor) -> None:
        """Refuse a model or optimizer changed between steps, outside the recorded update
        (the run would replay another training): its state must be where the last step left
        it, and the optimizer's options but the rates as they were."""
        if self._after is not None and not torch.equal(state, self._after):
            raise Error("the model's parameters or the optimizer's buffers changed between "
                        "Recorder.step calls, outside the recorded step (clipping, a manual "
                        "update, a reset?); the run could not replay it: change them only "
                        "through rec.step")
        now = _options(self.optimizer)
        for k, (before, after) in enumerate(zip(self._options, now, strict=True)):
            changed = [o for o in before if repr(before[o]) != repr(after.get(o))]
            if changed:
                raise Error(f"the optimizer's {changed[0]} of group {k} changed from "
                            f"{before[changed[0]]!r} to {after[changed[0]]!r} during the run; "
                            "a run records each step's learning rate, momentum, betas and "
                            "weight decay only: keep the other options fixed")

    def _hypers(self) -> dict:
        """The momentum (SGD) or betas (Adam) the groups have now, which a scheduler may cycle
        (OneCycleLR): one value for all groups, and SGD's momentum never to or from 0; and
        each group's weight decay."""
        key = "momentum" if self._name == "sgd" else "betas"
        values = {repr(g[key]) for g in self.optimizer.param_groups}
        value = self.optimizer.param_groups[0][key]
        if len(values) > 1:
            raise Error(f"the parameter groups' {key} differ ({', '.join(sorted(values))}); "
                        "the recorder supports groups with their own lr and weight_decay only")
        if key == "momentum" and (value > 0) != (self.run.optimizer.momentum > 0):
            raise Error(f"the optimizer's momentum changed from "
                        f"{self.run.optimizer.momentum} to {value}; a run keeps a momentum "
                        "buffer or none throughout: start with a momentum > 0")
        decays = [float(g["weight_decay"]) for g in self.optimizer.param_groups]
        check_clip(self.run.optimizer, any(decays) and self._name != "adamw")
        return {key: float(value) if key == "momentum" else tuple(float(b) for b in value),
                "weight_decay": tuple(decays) if len(decays) > 1 else decays[0]}

    def _check_update(self, state: torch.Tensor, after: torch.Tensor, g: torch.Tensor,
                      t: int) -> None:
        """Refuse a step torch's optimizer took other than the recorded update of the recorded
        gradient: a gradient clipped in an optimizer hook, say, which no replay would see."""
        run = self.run
        theta, slots = run.unpack(state)
        coupled = 0.0 if run.optimizer.name == "adamw" else run.decay_at(t)  # torch adds it
        theta, slots = run.optimizer_at(t).step(theta, slots, g + coupled * theta, run.rate(t),
                                                t, run.decoupled_at(t))
        expected = torch.cat([theta, *slots])
        if (after - expected).norm() > 1e-3 * (after - state).norm() + 1e-30:
            self._done = True
            raise Error(f"at step {t} the optimizer moved the parameters (or its buffers) "
                        "other than the recorded gradient's update does (a gradient clipped "
                        "or changed in an optimizer hook?); the run could not replay it: pass "
                        "max_grad_norm= or clip_grad_value= to the Recorder instead")

    def _slots(self) -> list[torch.Tensor]:
        """The optimizer's buffers now, flat in θ's order (zeros before the first step)."""
        keys = {"sgd": ("momentum_buffer",) if self.run.optimizer.slots else (),
                "adam": ("exp_avg", "exp_avg_sq"), "adamw": ("exp_avg", "exp_avg_sq")}
        out = []
        for key in keys[self._name]:
            out.append(torch.cat([
                (self.optimizer.state[p][key] if self.optimizer.state[p].get(key) is not None
                 else torch.zeros_like(p)).detach().reshape(-1) for p in self.objective.params]))
        return out


def _optimizer(optimizer) -> tuple[str, Optimizer]:
    """The update rule of a supported torch optimizer, or a refusal naming what is not."""
    if type(optimizer) is torch.optim.SGD:
        name = "sgd"
    elif type(optimizer) in (torch.optim.Adam, torch.optim.AdamW):
        decoupled = optimizer.defaults.get("decoupled_weight_decay", False)
        name = "adamw" if type(optimizer) is torch.optim.AdamW or decoupled else "adam"
    else:
        inner = getattr(optimizer, "optimizer", None)  # accelerate's, Lightning's wrappers
        hint = (f": it wraps a {type(inner).__name__}, pass its .optimizer"
                if isinstance(inner, torch.optim.Optimizer) and inner is not optimizer else "")
        raise Error(f"the recorder supports torch.optim.SGD, Adam and AdamW, whose updates the "
                    f"sweep differentiates exactly; got {type(optimizer).__name__}{hint}")
    if optimizer.state:
        raise Error("the optimizer has already taken steps; give the recorder a new optimizer, "
                    "before the first step of training")
    groups = optimizer.param_groups
    for option in UNSUPPORTED:
        if any(g.get(option) for g in groups):
            hint = (" (with the Hugging Face Trainer: TrainingArguments(optim='adamw_torch'))"
                    if option == "fused" else "")
            raise Error(f"{type(optimizer).__name__}({option}=True) is not supported: the sweep "
                        f"differentiates the plain update only; train without {option}{hint}")
    for option in SHARED[name]:
        if len({repr(g[option]) for g in groups}) > 1:
            raise Error(f"the parameter groups differ in {option}; the recorder supports groups "
                        "with their own lr and weight_decay only")
    g = groups[0]
    if name == "sgd":
        return name, Optimizer("sgd", momentum=g["momentum"], dampening=g["dampening"],
                               nesterov=g["nesterov"])
    return name, Optimizer(name, betas=tuple(g["betas"]), eps=g["eps"])


def _options(optimizer) -> list[dict]:
    """Each group's options but those recorded per step (its learning rate, momentum, betas
    and weight decay) and its parameters."""
    return [{k: v for k, v in g.items()
             if k not in ("params", "lr", "initial_lr", "momentum", "betas", "weight_decay")}
            for g in optimizer.param_groups]


def _groups(optimizer, params: list[nn.Parameter], names: list[str]
            ) -> tuple[dict[int, int], list[float]]:
    """The group of each of the model's trainable parameters, and each group's decay;
    refused unless the optimizer updates exactly those parameters."""
    group_of: dict[int, int] = {}
    for k, group in enumerate(optimizer.param_groups):
        for p in group["params"]:
            if id(p) in group_of:
                raise Error("a parameter appears twice in the optimizer's groups")
            group_of[id(p)] = k
    model_ids = {id(p) for p in params}
    names_of = list(zip(names, params, strict=True))
    if set(group_of) - model_ids:
        raise Error(f"the optimizer updates {len(set(group_of) - model_ids)} tensors that are "
                    "not the model's trainable parameters; build the optimizer from the "
                    "model's parameters")
    if model_ids - set(group_of):
        names = [n for n, p in names_of if id(p) not in group_of]
        raise Error(f"{len(names)} of the model's trainable parameters ({', '.join(names[:3])}"
                    f"{', ...' if len(names) > 3 else ''}) have requires_grad=True but no "
                    "optimizer group: freeze them (requires_grad_(False)) if they are not "
                    "trained, or give them to the optimizer")
    return group_of, [float(g["weight_decay"]) for g in optimizer.param_groups]
