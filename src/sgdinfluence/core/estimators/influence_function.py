"""Influence functions (Koh & Liang 2017): the classical estimate at the trained model.

Leaving j out of the mean training objective F(θ) = (1/N) Σ_i [ℓ_i(θ) + (α/2)‖θ‖²] moves
its minimiser by about (1/N) (H + λI)^{-1} ∇ℓ_j, H = ∇²F(θ[T]); so the score of j is
``(1/N) ⟨u, (H + λI)^{-1} ∇ℓ_j(θ[T])⟩``, the same quantity SGD-influence estimates.
Solve s = (H + λI)^{-1} u once per query (H symmetric), then score_j = ⟨s, ∇ℓ_j⟩ / N
for all j by forward-mode products, never materialising per-instance gradients.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse.linalg as spla
import torch
from torch.func import grad, hessian, jvp, vjp, vmap

from ...errors import ConfigError
from ..objective import Objective, mode
from ..train import Run

SOLVERS = ("exact", "cg", "lissa")


def influence_function(run: Run, U: torch.Tensor, solver: str = "exact", damping: float = 0.0,
                       cg_rtol: float = 1e-10, lissa_depth: int = 1000,
                       lissa_scale: float | None = None) -> torch.Tensor:
    """Scores (M, N) for query gradients U (M, P) at θ[T]."""
    if solver not in SOLVERS:
        raise ConfigError(f"unknown solver {solver!r}; use one of {list(SOLVERS)}")
    if not damping >= 0:
        raise ConfigError(f"damping must be >= 0, got {damping}")
    objective = run.objective()
    theta = objective.flatten()
    with mode(objective.model, train=False):
        hvp = _hvp(objective, theta, run.train, damping)
        if solver == "exact":
            H = _hessian(objective, theta, run.train) + damping * torch.eye(
                len(theta), dtype=theta.dtype, device=theta.device)
            S = torch.linalg.solve(H, U.T).T
        elif solver == "cg":
            S = torch.stack([_cg(hvp, u, cg_rtol) for u in U])
        else:
            S = torch.stack([_lissa(hvp, u, lissa_depth, lissa_scale) for u in U])
        return _directional(objective, theta, run.train, S) / run.num_train


def _mean_objective(objective: Objective, n: int):
    return lambda th, x, y: objective.terms(th, x, y).sum() / n


def _hessian(objective: Objective, theta, train) -> torch.Tensor:
    """The explicit (P, P) Hessian of F, summed over chunks of the training data."""
    F = _mean_objective(objective, len(train))
    return sum(hessian(F)(theta, x, y) for x, y in train.chunks())


def _hvp(objective: Objective, theta, train, damping: float):
    """v -> (H + λI) v by reverse-over-reverse products, over chunks of the training data."""
    g = grad(_mean_objective(objective, len(train)))

    def hvp(v: torch.Tensor) -> torch.Tensor:
        total = damping * v
        for x, y in train.chunks():
            pullback = vjp(lambda th, x=x, y=y: g(th, x, y), theta)[1]
            total = total + pullback(v)[0]
        return total

    return hvp


def _cg(hvp, u: torch.Tensor, rtol: float) -> torch.Tensor:
    """(H + λI)^{-1} u by scipy's conjugate gradients (H + λI must be positive definite)."""
    P = len(u)

    def matvec(v: np.ndarray) -> np.ndarray:
        return hvp(torch.as_tensor(v, dtype=u.dtype, device=u.device)).cpu().numpy()

    op = spla.LinearOperator((P, P), matvec=matvec, dtype=np.dtype(str(u.dtype)[6:]))
    x, info = spla.cg(op, u.cpu().numpy(), rtol=rtol, atol=0.0, maxiter=10 * P)
    if info != 0:
        raise RuntimeError(f"conjugate gradients did not converge in {info} iterations; "
                           "is H + damping·I positive definite? raise the damping")
    return torch.as_tensor(x, dtype=u.dtype, device=u.device)


def _lissa(hvp, u: torch.Tensor, depth: int, scale: float | None) -> torch.Tensor:
    """(H + λI)^{-1} u by the LiSSA recursion v ← u + v - (H + λI) v / scale, v / scale,
    a truncated Neumann series; it converges when scale exceeds the largest eigenvalue
    (estimated by power iteration when not given)."""
    if scale is None:
        v = torch.randn(len(u), generator=torch.Generator().manual_seed(0), dtype=u.dtype)
        v = v.to(u.device)  # drawn on the CPU so that the start is the same on every device
        for _ in range(50):
            v = hvp(v / v.norm())
        scale = 1.5 * float(v.norm())
    v = u.clone()
    for _ in range(depth):
        v = u + v - hvp(v) / scale
    return v / scale


def _directional(objective: Objective, theta, train, S: torch.Tensor) -> torch.Tensor:
    """⟨s, ∇ℓ_j(θ)⟩ (M, N) for every row s of S and training instance j."""
    def along(s):
        return torch.cat([jvp(lambda th, x=x, y=y: objective.terms(th, x, y), (theta,), (s,))[1]
                          for x, y in train.chunks()])
    return vmap(along)(S)
