"""The exact oracle of docs/design.md, written independently of the package.

Give every training instance a weight w_i and train with the per-step objective
(1/|S_t|) Σ_{i∈S_t} w_i [ℓ_i(θ) + (α/2)‖θ‖²], keeping the autograd graph over all steps.
Then -∂ Q(θ[T](w)) / ∂w at w = 1 is exactly what Algorithm 2 computes.
"""

import torch
from torch.func import functional_call


def unrolled(model, X, y, loss, batches, lrs, weight_decay, query, from_step=0,
             inputs=None):
    """Scores (N,) and final parameters of the unrolled training from ``model``'s parameters.

    ``query(forward)`` returns the scalar Q given ``forward: x -> outputs`` at θ[T]. Steps
    before ``from_step`` use fixed weights 1, so only later steps carry a gradient.
    ``inputs(t, x)``, if given, returns the (augmented) inputs step t trains on.
    """
    names = [n for n, _ in model.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in model.parameters()]
    w = torch.ones(len(X), dtype=params[0].dtype, requires_grad=True)

    def forward(x):
        return functional_call(model, dict(zip(names, params, strict=True)), (x,))

    model.train()
    for t, (idx, lr) in enumerate(zip(batches, lrs, strict=True)):
        wt = w[idx] if t >= from_step else torch.ones(len(idx), dtype=w.dtype)
        x = X[idx] if inputs is None else inputs(t, X[idx])
        per = loss(forward(x), y[idx])
        per = per + 0.5 * weight_decay * sum(p.square().sum() for p in params)
        grads = torch.autograd.grad((wt * per).sum() / len(idx), params, create_graph=True)
        params = [p - lr * g for p, g in zip(params, grads, strict=True)]
    model.eval()
    (dw,) = torch.autograd.grad(query(forward), w)
    return -dw, [p.detach() for p in params]
