"""Algorithm 2: SGD-influence of every training instance in one backward sweep."""

from __future__ import annotations

import torch
from torch.func import vmap
from tqdm.auto import tqdm

from ..train import Objective, Run, mode, replay_rng

ROW_BUDGET = 2**20  # query rows x batch size x parameters handled by one batched reverse pass


def sgd_influence(run: Run, U: torch.Tensor, epochs: int | None = None, hessian: bool = True,
                  progress: bool = False) -> torch.Tensor:
    """Estimate ``⟨u, θ_{-j}[T] - θ[T]⟩`` for every query row u of U (M, P) and every
    training index j: returns (M, N). ``epochs=k`` sweeps over the last k epochs only
    (``epochs=1`` is the paper's last-epoch approximation). ``hessian=False`` keeps u fixed
    (the estimator without the Hessian term: TracIn).
    """
    adjoint = StepAdjoint(run.objective(functional=True), hessian)
    X, Y = run.train
    start = 0 if epochs is None else run.epoch_starts[run.epochs - epochs]
    scores = torch.zeros(len(U), run.num_train, dtype=U.dtype, device=U.device)
    with mode(adjoint.objective.model, train=True):
        for t in tqdm(range(run.num_steps - 1, start - 1, -1), desc="influence sweep",
                      disable=not progress, leave=False):      # t = T-1, ..., start
            idx, lr = run.batches[t], run.lrs[t]
            with replay_rng(run.seeds[t], U.device):           # the same dropout and crops
                HU, dW = adjoint(run.store[t], X[idx], Y[idx], U)
            scores.index_add_(1, idx, lr * dW)                 # score[j] += η_t/|S_t| ⟨u, ∇ℓ_j⟩
            if hessian:
                U = U - lr * HU                                # u ← (I - η_t H_t) u
    return scores


class StepAdjoint:
    """The adjoint of one SGD step: at θ (P,) on a batch (x, y) of size B, for the rows u of
    U (M, P), returns ``H U`` (M, P) (None if not ``hessian``) and ``⟨u, ∇ℓ_i(θ)⟩ / B`` (M, B).

    Both are derivatives of one scalar, the oracle's (DESIGN.md): with instance weights
    w (B,) = 1 and g(θ, w) = ∇_θ (1/B) Σ_i w_i ℓ_i(θ), ⟨u, g⟩ has gradient H u in θ and
    ⟨u, ∇ℓ_i⟩/B in w_i. So one forward, one reverse pass that keeps its graph, then one
    reverse pass through that graph per query row give all of it; the forward and the first
    reverse are shared by all rows. Plain autograd rather than torch.func transforms, whose
    per-call overhead was most of the sweep on small models; reverse-over-reverse is exact
    through batch norm too. Several rows go through one vmapped pass, as many as fit
    ``ROW_BUDGET`` (one at a time on models the size of the MNIST CNN, where batching them
    only costs memory); rows run one by one when a backward formula cannot be vmapped.
    """

    def __init__(self, objective: Objective, hessian: bool = True):
        self.objective, self.hessian = objective, hessian
        self.batched = True  # until a backward formula turns out not to support vmap

    def __call__(self, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                 U: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        theta = theta.detach().requires_grad_()
        w = torch.ones(len(x), dtype=theta.dtype, device=theta.device, requires_grad=True)
        (g,) = torch.autograd.grad(self.objective.batch(theta, w, x, y), theta,
                                   create_graph=True)
        wrt = (theta, w) if self.hessian else (w,)

        def pullback(u, retain=True):  # the gradients of ⟨u, g⟩ in wrt
            # (allow_unused: with a loss linear in θ, H = 0 and g has no path back to θ)
            return torch.autograd.grad(g, wrt, u, retain_graph=retain, allow_unused=True,
                                       materialize_grads=True)

        if len(U) == 1:
            return self._split([o[None] for o in pullback(U[0], retain=False)])
        rows = min(len(U), ROW_BUDGET // (len(x) * len(theta)))
        if rows > 1 and self.batched:
            try:
                parts = [vmap(pullback)(block) for block in U.split(rows)]
                return self._split([torch.cat(o) for o in zip(*parts, strict=True)])
            except RuntimeError as e:  # e.g. convolutions of channels-last (cropped) images
                if "vmap" not in str(e):
                    raise
                self.batched = False  # and go on with the same graph, row by row
        parts = [pullback(u) for u in U]
        return self._split([torch.stack(o) for o in zip(*parts, strict=True)])

    def _split(self, outs: list[torch.Tensor]) -> tuple[torch.Tensor | None, torch.Tensor]:
        return (outs[0], outs[1]) if self.hessian else (None, outs[0])
