"""The exact oracle of docs/design.md, written independently of the package.

Give every training instance a weight w_i and train with the per-step objective
(1/|S_t|) Σ_{i∈S_t} w_i [ℓ_i(θ) + (α/2)‖θ‖²], keeping the autograd graph over all steps.
Then -∂ Q(θ[T](w)) / ∂w at w = 1 is exactly what Algorithm 2 computes.

``unrolled_optimizer`` does the same for momentum SGD, Nesterov, Adam and AdamW, each step
written out as torch.optim's single-tensor (foreach=False) implementation computes it, so that
the oracle's training is torch's training and the graph carries the optimizer's state.
"""

import copy
import numbers

import torch
from torch.func import functional_call

OPTIMIZERS = ("sgd", "adam", "adamw")


def unrolled(model, X, y, loss, batches, lrs, weight_decay, query, from_step=0,
             inputs=None):
    """Scores (N,) and final parameters of the unrolled training from ``model``'s parameters.

    ``query(forward)`` returns the scalar Q given ``forward: x -> outputs`` at θ[T]. Steps
    before ``from_step`` use fixed weights 1, so only later steps carry a gradient.
    ``inputs(t, x)``, if given, returns the (augmented) inputs step t trains on.
    """
    return unrolled_optimizer(model, X, y, loss, batches, lrs, query, optimizer="sgd",
                              weight_decay=weight_decay, from_step=from_step, inputs=inputs)


def unrolled_optimizer(model, X, y, loss, batches, lrs, query, *, optimizer="sgd",
                       momentum=0.0, dampening=0.0, nesterov=False, betas=(0.9, 0.999),
                       eps=1e-8, weight_decay=0.0, seeds=None, from_step=0, inputs=None,
                       max_grad_norm=None, clip_grad_value=None, eval_modules=None,
                       hypers=None, micro=1, damping=0.0):
    """Scores (N,) = -dQ(θ[T](w))/dw at w = 1, and the final parameters, of training
    ``model`` (from its current parameters) as ``torch.optim.SGD`` / ``Adam`` / ``AdamW`` do.

    Step t trains on the mini-batch ``batches[t]`` (indices into X, y) at rate ``lrs[t]``
    with g_t = ∇_θ L_t(θ, w),

        L_t(θ, w) = (1/|S_t|) Σ_{i∈S_t} w_i [ℓ_i(θ) + c Σ_p (α_p/2)‖θ_p‖²],

    with c = 1 for "sgd" and "adam" (coupled decay, each instance's share of an L2 term: with
    all w = 1 it is torch's ``weight_decay=α`` for SGD and Adam) and c = 0 for "adamw" (the
    decay θ_p ← θ_p(1 − η_{t,p} α_p) is applied to the parameters before the Adam step and
    does not depend on w).

    Parameter groups: p runs over the parameter tensors θ_p of ``model.parameters()``, in that
    order. ``weight_decay`` is one number α for all of them (α_p = α), or a sequence with one
    α_p per tensor; ``lrs[t]`` likewise is one number η_t (η_{t,p} = η_t) or a sequence with
    one η_{t,p} per tensor. A torch optimizer built from parameter groups, each with its own
    ``lr`` and ``weight_decay``, and any scheduler that sets the groups' rates, is this with
    η_{t,p} = the ``lr`` of θ_p's group in ``optimizer.param_groups`` when step t is taken,
    and α_p = that group's ``weight_decay``. Every update below acts on each tensor on its own,
    with that tensor's η_{t,p} for η_t and α_p for α. A single number (and a 0-d tensor) takes
    exactly the arithmetic it took before sequences were allowed, bit for bit; a sequence of
    equal values gives the same bits for ``lrs``, and the same values up to rounding for
    ``weight_decay`` (whose L2 term is then summed per tensor). The updates, with k = t + 1
    counted from the first step of training:

    - "sgd", ``momentum`` μ = 0: θ ← θ − η_t g (the same expression as ``unrolled``, bit for
      bit). μ ≠ 0: b = g at t = 0, else b = μ b + (1 − ``dampening``) g; d = g + μ b with
      ``nesterov``, else d = b; θ ← θ − η_t d.
    - "adam" / "adamw": m = lerp(m, g, 1 − β1), v = β2 v + (1 − β2) g², from m = v = 0;
      θ ← θ − (η_t / (1 − β1^k)) · m / (√v / √(1 − β2^k) + ``eps``).

    Each of these is computed with the very torch operations (add with alpha, lerp, addcmul,
    addcdiv) that torch.optim's single-tensor code applies in place, so the trajectory is
    torch's up to the rounding of the coupled decay's gradient (autodiff of the L2 term here,
    ``grad.add(param, alpha=α)`` in torch).

    √v at v = 0: an entry of v is 0 only while that parameter's gradient has been exactly 0
    at every step so far (a dead ReLU unit, say). The forward value √0 = 0 is torch's, but
    autodiff through sqrt there gives ∞ · 0 = NaN. Here the derivative of √v is taken as 0
    where v = 0. That is exact when the gradient entry is 0 on a neighbourhood of w = 1 (a
    dead unit stays dead under small changes of w, so v and m stay 0 and the entry does not
    move). If instead the entry merely crosses 0 at w = 1, √v = √(1−β2)·|g| has a kink and no
    derivative exists; 0 is then the mean of the two one-sided derivatives, which is what a
    central finite difference sees.

    ``seeds``: if given, ``torch.manual_seed(seeds[t])`` before step t's inputs and forward,
    so dropout (and ``inputs``' augmentation) draws what the package draws; torch's default
    generator is restored afterwards. ``inputs(t, x)``, if given, returns the inputs step t
    trains on. The model is in train mode for the steps, in eval mode for ``query(forward)``,
    which returns the scalar Q given ``forward: x -> outputs`` at θ[T]. Steps before
    ``from_step`` use fixed weights 1 (no gradient to w), as in the last-epoch approximation;
    the optimizer state they build enters the later steps as a constant.

    ``clip_grad_value`` c_v and ``max_grad_norm`` c_n clip g before the update, as
    ``torch.nn.utils.clip_grad_value_`` then ``clip_grad_norm_`` do on the parameter tensors:
    each entry clamped to [−c_v, c_v]; then every tensor multiplied by
    min(1, c_n / (‖(‖g_p‖)_p‖ + 1e-6)), the norm of the tensors' norms (torch's arithmetic).
    Only without coupled decay, whose gradient torch adds after clipping.

    ``eval_modules(t)``, if given, names the modules (as ``named_modules`` does) that are in
    eval mode at step t, the others in train mode. ``hypers(t)``, if given, is a dict whose
    ``momentum``, ``betas`` or ``weight_decay`` replace the fixed ones at step t (a scheduler
    that changes them).
    ``micro`` > 1: each step's gradient is accumulated over that many contiguous parts of its
    batch, one forward each, the losses summed and divided by |S_t| (no ``seeds`` then).
    ``damping`` λ: g_t gains λ(θ − θ̄), θ̄ = θ held constant: zero in value (the trajectory
    is the one trained), λI in g_t's derivative by θ: the run's linearisation with an extra
    λ/2‖θ‖² that belongs to no instance (the sweep's ``damping``).
    """
    w = torch.ones(len(X), dtype=next(model.parameters()).dtype, device=X.device,
                   requires_grad=True)
    params, _, forward = unroll(model, X, y, loss, batches, lrs, w, optimizer=optimizer,
                                momentum=momentum, dampening=dampening, nesterov=nesterov,
                                betas=betas, eps=eps, weight_decay=weight_decay, seeds=seeds,
                                from_step=from_step, inputs=inputs, max_grad_norm=max_grad_norm,
                                clip_grad_value=clip_grad_value, eval_modules=eval_modules,
                                hypers=hypers, micro=micro, damping=damping)
    (dw,) = torch.autograd.grad(query(forward), w)
    return -dw, [p.detach() for p in params]


def sqrt0(v):
    """√v whose derivative at v = 0 is 0 instead of ∞; the same values as ``v.sqrt()``."""
    positive = v > 0
    return torch.where(positive, torch.where(positive, v, torch.ones_like(v)).sqrt(),
                       torch.zeros_like(v))


def unroll(model, X, y, loss, batches, lrs, w, *, optimizer="sgd", momentum=0.0,
           dampening=0.0, nesterov=False, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
           seeds=None, from_step=0, inputs=None, create_graph=True, max_grad_norm=None,
           clip_grad_value=None, eval_modules=None, hypers=None, micro=1, damping=0.0):
    """The training of ``unrolled_optimizer`` with instance weights ``w`` (N,).

    Returns the final parameters, the final optimizer state (per parameter: the momentum
    buffer, None for plain SGD; or the pair (m, v)) and ``forward: x -> outputs`` at the final
    parameters. ``create_graph=False`` detaches after every step (for finite differences).
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if optimizer == "sgd" and nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("Nesterov momentum requires a momentum and zero dampening (as torch)")
    if optimizer != "sgd" and (momentum or dampening or nesterov):
        raise ValueError("momentum, dampening and nesterov are options of optimizer='sgd'")
    if (max_grad_norm or clip_grad_value) and weight_decay and optimizer != "adamw":
        raise ValueError("torch clips before adding a coupled decay: not written out here")
    model = with_differentiable_statistics(model)
    names = [n for n, _ in model.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in model.parameters()]
    decay = _per_tensor(weight_decay, len(params), "weight_decay")
    coupled = optimizer != "adamw"
    if optimizer == "sgd":
        state = [None] * len(params)
    else:
        state = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]

    def forward(x):
        return functional_call(model, dict(zip(names, params, strict=True)), (x,))

    saved = torch.random.get_rng_state() if seeds is not None else None
    model.train()
    try:
        for t, (idx, lr) in enumerate(zip(batches, lrs, strict=True)):
            lr = _per_tensor(lr, len(params), f"lrs[{t}]")
            h = hypers(t) if hypers is not None else {}
            wd = h.get("weight_decay", weight_decay)  # a scheduler's, at this step
            decay = _per_tensor(wd, len(params), "weight_decay")
            if eval_modules is not None:
                for name, m in model.named_modules():
                    m.training = name not in eval_modules(t)
            wt = w[idx] if t >= from_step else torch.ones(len(idx), dtype=w.dtype,
                                                           device=w.device)
            if seeds is not None:
                torch.manual_seed(int(seeds[t]))
            x = X[idx] if inputs is None else inputs(t, X[idx])
            if micro > 1:  # one forward per part: its own batch-norm statistics
                per = torch.cat([loss(forward(xc), yc) for xc, yc in
                                 zip(x.tensor_split(micro), y[idx].tensor_split(micro),
                                     strict=True)])
            else:
                per = loss(forward(x), y[idx])
            if coupled and _is_number(wd):  # the arithmetic from before groups
                per = per + 0.5 * wd * sum(p.square().sum() for p in params)
            elif coupled:
                per = per + 0.5 * sum(a * p.square().sum()
                                      for a, p in zip(decay, params, strict=True) if a != 0)
            grads = torch.autograd.grad((wt * per).sum() / len(idx), params,
                                        create_graph=create_graph)
            if clip_grad_value is not None:
                grads = [g.clamp(-clip_grad_value, clip_grad_value) for g in grads]
            if max_grad_norm is not None:
                total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g)
                                                              for g in grads]))
                coef = torch.clamp(max_grad_norm / (total + 1e-6), max=1.0)
                grads = [g * coef for g in grads]
            if damping:  # value 0, derivative λI: damping in the linearisation only
                grads = [g + damping * (p - p.detach()) for g, p in zip(grads, params, strict=True)]
            if optimizer == "sgd":
                params, state = _sgd(params, grads, state, lr, h.get("momentum", momentum),
                                     dampening, nesterov)
            else:
                params, state = _adam(params, grads, state, lr, t + 1, h.get("betas", betas), eps,
                                      decay if optimizer == "adamw" else [0.0] * len(params))
            if not create_graph:
                params = [p.detach().requires_grad_() for p in params]
                state = [_detach(s) for s in state]
    finally:
        if saved is not None:
            torch.random.set_rng_state(saved)
    model.eval()
    return params, state, forward


class DifferentiableBatchNorm(torch.nn.Module):
    """torch's batch norm, written out, with running statistics that carry autograd's graph:
    in train mode it normalises by the batch's mean and biased variance and moves the running
    mean and (unbiased) variance by ``momentum`` towards the batch's; in eval mode it
    normalises by the running statistics, which so depend on every step before."""

    def __init__(self, bn):
        super().__init__()
        self.weight = torch.nn.Parameter(bn.weight.detach().clone())
        self.bias = torch.nn.Parameter(bn.bias.detach().clone())
        self.running_mean = bn.running_mean.detach().clone()  # attributes, not buffers
        self.running_var = bn.running_var.detach().clone()
        self.momentum, self.eps = bn.momentum, bn.eps
        self.training = bn.training

    def forward(self, h):
        dims = [d for d in range(h.ndim) if d != 1]
        shape = [1, h.shape[1]] + [1] * (h.ndim - 2)
        if self.training:
            mean, var = h.mean(dims), h.var(dims, correction=0)
            m = self.momentum
            self.running_mean = (1 - m) * self.running_mean + m * mean
            self.running_var = (1 - m) * self.running_var + m * h.var(dims, correction=1)
        else:
            mean, var = self.running_mean, self.running_var
        return ((h - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + self.eps)
                * self.weight.reshape(shape) + self.bias.reshape(shape))


def with_differentiable_statistics(model):
    """A copy of ``model`` whose batch norm layers are :class:`DifferentiableBatchNorm`."""
    model = copy.deepcopy(model)
    for name, m in list(model.named_modules()):
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            if m.momentum is None or not m.affine:
                raise ValueError("the oracle writes out batch norm with a momentum and affine")
            parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
            setattr(parent, name.rpartition(".")[2], DifferentiableBatchNorm(m))
    return model


def _is_number(value):
    return isinstance(value, numbers.Number) or getattr(value, "ndim", None) == 0


def _per_tensor(value, n, name):
    """One value per parameter tensor: a number (or 0-d tensor) n times, or a sequence of n."""
    if _is_number(value):
        return [value] * n
    values = list(value)
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} values, the model {n} parameter tensors")
    return values


def _detach(s):
    if s is None:
        return None
    return s.detach() if isinstance(s, torch.Tensor) else tuple(a.detach() for a in s)


def _sgd(params, grads, bufs, lrs, momentum, dampening, nesterov):
    """torch.optim.SGD's single-tensor step, rate ``lrs[p]`` for tensor p (coupled decay is
    already in the gradient)."""
    if momentum == 0:
        return [p - lr * g for p, g, lr in zip(params, grads, lrs, strict=True)], bufs
    new_params, new_bufs = [], []
    for p, g, buf, lr in zip(params, grads, bufs, lrs, strict=True):
        # torch: buf = grad.detach().clone() at the first step; here the graph is kept
        buf = g if buf is None else buf.mul(momentum).add(g, alpha=1 - dampening)
        d = g.add(buf, alpha=momentum) if nesterov else buf
        new_params.append(p.add(d, alpha=-lr))
        new_bufs.append(buf)
    return new_params, new_bufs


def _adam(params, grads, state, lrs, step, betas, eps, decoupled):
    """torch.optim.Adam's single-tensor step, non-capturable branch, rate ``lrs[p]`` for
    tensor p; ``decoupled[p]`` is AdamW's weight decay (Adam's coupled decay is already in
    the gradient)."""
    beta1, beta2 = betas
    step = float(step)  # torch: state "step" is a tensor, read with .item()
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    bias_correction2_sqrt = bias_correction2**0.5
    new_params, new_state = [], []
    for p, g, (m, v), lr, decay in zip(params, grads, state, lrs, decoupled, strict=True):
        lr = float(lr)
        step_size = lr / bias_correction1
        if decay != 0:
            p = p.mul(1 - lr * decay)
        m = torch.lerp(m, g, 1 - beta1)
        v = v.mul(beta2).addcmul(g, g, value=1 - beta2)
        denom = (sqrt0(v) / bias_correction2_sqrt).add(eps)
        new_params.append(p.addcdiv(m, denom, value=-step_size))
        new_state.append((m, v))
    return new_params, new_state
