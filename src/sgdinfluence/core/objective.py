"""The per-step objective that training, retraining, the replay store and the sweep of
Algorithm 2 all evaluate, so that they agree bit for bit (docs/design.md), and the two
context managers that make a step reproducible: the step's seeded randomness and the model's
train / eval mode."""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call

from ..errors import Error
from . import losses
from .augment import apply as apply_augment


class Objective:
    """The per-step objective ``(1/|S|) Σ_{i∈S} w_i [ℓ(z_i; θ) + (α/2)‖θ‖²]`` of flat θ (P,).

    Weight decay α is part of each instance's loss, as in the paper's code, so leaving an
    instance out (w_i = 0) removes its share of the regulariser too. In training mode the
    inputs first go through ``augment`` (drawing from the step's seeded generator, so every
    replay of step t sees the same crops). ``functional=True`` keeps buffers (batch-norm
    statistics) out of reach of in-place updates, which torch.func transforms forbid.
    """

    def __init__(self, model: nn.Module, loss_fn: losses.LossFn,
                 weight_decay: float | torch.Tensor,
                 augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 functional: bool = False):
        self.model, self.loss_fn, self.weight_decay = model, loss_fn, weight_decay
        self.augment, self.functional = augment, functional
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise Error("the model has no trainable parameters (requires_grad=True)")
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.params = [p for _, p in named]

    def flatten(self) -> torch.Tensor:
        """The model's current trainable parameters as one vector (P,)."""
        return torch.cat([p.detach().reshape(-1) for p in self.params])

    def load(self, theta: torch.Tensor) -> None:
        """Write flat θ into the model's parameters."""
        with torch.no_grad():
            for p, v in zip(self.params, theta.split(self.sizes), strict=True):
                p.copy_(v.view_as(p))

    def views(self, theta: torch.Tensor, prefix: str = "") -> dict[str, torch.Tensor]:
        """Flat θ as the model's named parameter tensors (views, no copy)."""
        return {prefix + n: v.view(s) for n, v, s in
                zip(self.names, theta.split(self.sizes), self.shapes, strict=True)}

    def outputs(self, theta: torch.Tensor, x: torch.Tensor,
                buffers: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """The model's outputs at θ: its logits where it returns more (a Hugging Face
        model's output with ``.logits``). ``buffers`` replace the model's own (batch-norm
        statistics to differentiate by)."""
        state = self.views(theta)
        if self.model.training:
            x = apply_augment(self.augment, x) if self.augment is not None else x
            if self.functional and buffers is None:  # buffer updates go to copies made here
                buffers = {n: b.clone() for n, b in self.model.named_buffers()}
        if buffers is not None:
            return logits(functional_call(self.model, (state, buffers), (x,)))
        return logits(functional_call(self.model, state, (x,)))

    def per_instance(self, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                     buffers: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """ℓ(z_i; θ) for each instance of the batch, without weight decay: (B,)."""
        return self.loss_fn(self.outputs(theta, x, buffers), y)

    def terms(self, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each instance's share of the objective, ℓ(z_i; θ) + (α/2)‖θ‖²: (B,)."""
        per = self.per_instance(theta, x, y)
        if isinstance(self.weight_decay, torch.Tensor):  # per parameter (parameter groups)
            return per + 0.5 * (self.weight_decay * theta.square()).sum()
        return per + 0.5 * self.weight_decay * theta.square().sum() if self.weight_decay else per

    def batch(self, theta: torch.Tensor, w: torch.Tensor, x: torch.Tensor,
              y: torch.Tensor) -> torch.Tensor:
        """The weighted step objective; w (B,) is 1 for instances present, 0 for left out."""
        return (w * self.terms(theta, x, y)).sum() / len(w)


def check_no_autocast(device: torch.device, where: str) -> None:
    """Refuse training under ``torch.autocast``: the run would train in a lower precision
    than its replay, retraining and sweep, which run in the model's dtype."""
    if torch.is_autocast_enabled(device.type):
        raise Error(f"{where} runs under torch.autocast, but a run replays and sweeps its "
                    "steps in the model's dtype, so they would differ from the training: "
                    "train outside autocast, or in that dtype (model.to(torch.bfloat16))")


def logits(out):
    """``out``, or its ``logits`` (a transformers ``ModelOutput``, a dict holding them)."""
    if isinstance(out, torch.Tensor):
        return out
    found = getattr(out, "logits", None)
    if found is None and isinstance(out, dict):
        found = out.get("logits")
    return out if found is None else found


@contextlib.contextmanager
def replay_rng(seed: int, device: torch.device):
    """Seed the device's default generator for one step (dropout etc.), then restore it."""
    gen = (torch.cuda.default_generators[device.index or 0] if device.type == "cuda"
           else torch.default_generator)
    saved = gen.get_state()
    gen.manual_seed(seed)
    try:
        yield
    finally:
        gen.set_state(saved)


@contextlib.contextmanager
def deterministic(device: torch.device):
    """On CUDA, run with deterministic kernels (cuDNN's, and torch's deterministic
    algorithms where a kernel has one), so that replaying a step repeats it: retraining with
    nothing left out reproduces the run, and a replay store regenerates its segments. Where a
    kernel has no deterministic version torch warns, and replays agree to rounding only.
    (cuBLAS needs CUBLAS_WORKSPACE_CONFIG=:4096:8 set before CUDA starts; without it torch
    warns.) On the CPU, kernels are deterministic already and nothing changes."""
    if device.type != "cuda":
        yield
        return
    saved = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2:]


@contextlib.contextmanager
def mode(model: nn.Module, train: bool):
    """``model.train(train)`` for the block, then every module's own flag as it was (a part
    the user had put in eval mode stays there)."""
    was = [(m, m.training) for m in model.modules()]
    model.train(train)
    try:
        yield
    finally:
        for m, flag in was:
            m.training = flag


def set_modes(model: nn.Module, in_eval: frozenset[str]) -> None:
    """Every module of ``model`` in train mode but those named in ``in_eval``."""
    for name, m in model.named_modules():
        m.training = name not in in_eval


def tracked_batch_norms(model: nn.Module) -> dict[str, nn.modules.batchnorm._BatchNorm]:
    """The batch norm layers of ``model`` that keep running statistics, by name."""
    return {name: m for name, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats}


@contextlib.contextmanager
def batch_norm_written_out(model: nn.Module, names: set[str] | None = None):
    """Eval-mode batch norm as its formula, (x − r_mean) / √(r_var + eps) · weight + bias,
    for the block (in the layers ``names``, or all): torch's kernel refuses a gradient by
    the running statistics."""
    layers = [m for n, m in tracked_batch_norms(model).items() if names is None or n in names]
    for m in layers:
        m.forward = types.MethodType(_eval_batch_norm, m)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for m in layers:
            del m.forward


def _eval_batch_norm(self, x: torch.Tensor) -> torch.Tensor:
    shape = [1, -1] + [1] * (x.ndim - 2)
    out = (x - self.running_mean.reshape(shape)) / torch.sqrt(
        self.running_var.reshape(shape) + self.eps)
    if self.affine:
        out = out * self.weight.reshape(shape) + self.bias.reshape(shape)
    return out
