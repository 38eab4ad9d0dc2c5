"""The optimizers ``fit`` trains with, as pure functions of flat tensors: the update rules of
``torch.optim.SGD`` (momentum, dampening, Nesterov), ``torch.optim.Adam`` and
``torch.optim.AdamW``, in the order of operations of their single-tensor implementations.

An optimizer's state at step t is θ[t] (P,) and its ``slots`` state vectors (P,) each (the
momentum buffer; Adam's first and second moments); a run stores them concatenated, one row
(P·(1 + slots),) per step. ``step(θ, slots, g, lr, t, decay)`` is one update given the
gradient g of the step objective; the rate (and AdamW's decay) is a number, or a (P,)
tensor where parameter groups have their own. Being pure, it is differentiated by
``torch.func.vjp`` in the backward sweep (the adjoint of the optimizer state) and applied
to stacked states in leave-one-out retraining.

Weight decay: for ``"sgd"`` and ``"adam"`` the coupled decay α is part of each instance's loss
(α/2)‖θ‖² in the step objective, which with every instance present is torch's
``weight_decay=α``; for ``"adamw"`` it is torch's decoupled decay θ ← θ(1 − ηα), the
``decay`` of ``step``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import ConfigError

NAMES = ("sgd", "adam", "adamw")


@dataclass(frozen=True)
class Optimizer:
    """An optimizer's update rule and hyper-parameters (torch's defaults); the learning rate
    and weight decay belong to the run (they may differ per step and per parameter group).

    ``clip_grad_value`` and ``max_grad_norm`` clip the step's gradient first, as
    ``torch.nn.utils.clip_grad_value_`` then ``clip_grad_norm_`` (over all of θ) would
    before ``optimizer.step()``: part of the update, so the sweep reverses it exactly.
    """

    name: str = "sgd"
    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    max_grad_norm: float | None = None
    clip_grad_value: float | None = None

    def __post_init__(self) -> None:
        if self.name not in NAMES:
            raise ConfigError(f"unknown optimizer {self.name!r}; use one of {list(NAMES)}")
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        for what in ("momentum", "dampening", "eps"):
            object.__setattr__(self, what, float(getattr(self, what)))
        values = {"momentum": [self.momentum], "dampening": [self.dampening],
                  "betas": list(self.betas), "eps": [self.eps]}
        ranges = {"momentum": self.momentum >= 0, "dampening": 0 <= self.dampening <= 1,
                  "betas": len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
                  "eps": self.eps > 0}
        for what, ok in ranges.items():
            if not ok or not all(math.isfinite(v) for v in values[what]):
                raise ConfigError(f"{what} is out of range for {self.name}: "
                                  f"{getattr(self, what)!r}")
        for what in ("max_grad_norm", "clip_grad_value"):
            value = getattr(self, what)
            if value is not None and (isinstance(value, bool) or not isinstance(
                    value, (int, float)) or not (math.isfinite(value) and value > 0)):
                raise ConfigError(f"{what} must be None or a finite number > 0, got {value!r}")
            if value is not None:
                object.__setattr__(self, what, float(value))
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ConfigError("nesterov needs momentum > 0 and dampening 0 (as torch.optim.SGD)")
        if self.name != "sgd" and (self.momentum or self.dampening or self.nesterov):
            raise ConfigError(f"momentum, dampening and nesterov are options of sgd, not of "
                              f"{self.name} (its momentum is betas)")

    @property
    def slots(self) -> int:
        """State vectors kept besides θ: 0 for plain SGD, 1 with momentum, 2 for Adam(W)."""
        return 2 if self.name != "sgd" else int(self.momentum > 0)

    @property
    def clips(self) -> bool:
        return self.max_grad_norm is not None or self.clip_grad_value is not None

    def clip(self, g: torch.Tensor) -> torch.Tensor:
        """g (..., P) clipped as torch.nn.utils does: each entry to ±clip_grad_value, then
        the whole by max_grad_norm / (‖g‖ + 1e-6) where that is below 1 (torch's formula)."""
        if self.clip_grad_value is not None:
            g = g.clamp(-self.clip_grad_value, self.clip_grad_value)
        if self.max_grad_norm is not None:
            norm = torch.linalg.vector_norm(g, dim=-1, keepdim=True)
            g = g * torch.clamp(self.max_grad_norm / (norm + 1e-6), max=1.0)
        return g

    def step(self, theta: torch.Tensor, slots: tuple[torch.Tensor, ...], g: torch.Tensor,
             lr: float | torch.Tensor, t: int, decay: float | torch.Tensor = 0.0
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """One update of θ (P,) and the slots from the gradient g (P,) at step t (from 0);
        ``decay`` is AdamW's decoupled weight decay."""
        if self.clips:
            g = self.clip(g)
        if self.name == "sgd":                              # torch.optim.SGD, op for op
            if not self.momentum:
                return theta - lr * g, ()
            (buf,) = slots
            buf = g if t == 0 else buf.mul(self.momentum).add(g, alpha=1 - self.dampening)
            d = g.add(buf, alpha=self.momentum) if self.nesterov else buf
            if isinstance(lr, torch.Tensor):  # a rate per entry (parameter groups)
                return theta - lr * d, (buf,)
            return theta.add(d, alpha=-lr), (buf,)
        m, v = slots                                        # torch.optim.Adam(W), op for op
        beta1, beta2 = self.betas
        if self.name == "adamw":
            theta = theta.mul(1 - lr * decay)
        m = m.lerp(g, 1 - beta1)
        v = v.mul(beta2).addcmul(g, g, value=1 - beta2)
        k = float(t + 1)
        step_size = lr / (1 - beta1**k)
        denom = (_sqrt(v) / (1 - beta2**k) ** 0.5).add(self.eps)
        if isinstance(step_size, torch.Tensor):
            return theta - step_size * m / denom, (m, v)
        return theta.addcdiv(m, denom, value=-step_size), (m, v)


@dataclass(frozen=True)
class LRSchedule:
    """A torch learning-rate scheduler, recorded as the rate it sets at every step.

    ``factory`` builds the scheduler from an optimizer whose initial rate is ``lr``, e.g.
    ``LRSchedule(0.1, lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=500))``;
    it is stepped after every training step (``every="step"``) or every epoch (``"epoch"``).
    """

    lr: float
    factory: Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]
    every: str = "step"

    def __post_init__(self) -> None:
        if self.every not in ("step", "epoch"):
            raise ConfigError(f"every must be 'step' or 'epoch', got {self.every!r}")
        if not callable(self.factory):
            raise TypeError("factory must be a callable optimizer -> torch LRScheduler")

    def rates(self, steps: int, epoch_starts: list[int]) -> list[float]:
        """The rate of each of ``steps`` training steps."""
        param = torch.zeros(1, requires_grad=True)
        optimizer = torch.optim.SGD([param], lr=self.lr)
        scheduler = self.factory(optimizer)
        if not isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler):
            raise TypeError(f"LRSchedule.factory must return a torch LRScheduler, got "
                            f"{type(scheduler).__name__}")
        epoch_ends = set(epoch_starts[1:])
        rates = []
        for t in range(steps):
            rates.append(float(optimizer.param_groups[0]["lr"]))
            optimizer.step()  # no gradient: nothing moves; keeps torch's order of calls
            if self.every == "step" or t + 1 in epoch_ends:
                scheduler.step()
        return rates


def _sqrt(v: torch.Tensor) -> torch.Tensor:
    """√v with derivative 0 where v = 0. There v = 0 because every gradient of that entry so
    far was 0; perturbing the training moves v only to second order while √v would move to
    first, and the update's true derivative through v is 0 (its first order goes through
    the first moment, divided by eps). Plain sqrt would give 0·∞ = NaN in the sweep."""
    positive = v > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, v, 1)), 0)
