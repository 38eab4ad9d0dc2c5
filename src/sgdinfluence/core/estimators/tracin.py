"""TracIn (Pruthi, Liu, Kale & Sundararajan, NeurIPS 2020), with the package's sign and scale.

TracIn follows each training instance through the steps that used it and adds up how much
each of those steps moved the query: the query's gradient is taken *at that step's
parameters*, where the no-Hessian estimator keeps the one at θ[T]:

    score_j = Σ_{t: j ∈ S_t} (η_t/|S_t|) ⟨∇Q(θ[t]), ∇ℓ_j(θ[t])⟩

(the same quantity as the other estimators: the first-order change of Q when j is left out,
if no step influenced a later one). ``every=k`` is TracInCP: every k-th step serves as a
checkpoint, and each checkpoint scores every instance, standing for the k steps that follow,
in which an instance is used k·|S|/N times on average:

    score_j = Σ_{c = 0, k, 2k, ...} (k η_c / N) ⟨∇Q(θ[c]), ∇ℓ_j(θ[c])⟩

``self_influence=True`` takes each instance as its own query (Q = ℓ_j: the terms become
‖∇ℓ_j(θ[t])‖²), which is how TracIn ranks suspected mislabelled data. With momentum or Adam,
TracIn as published ignores the optimizer: η_t is the step's rate.
"""

from __future__ import annotations

import torch
from torch.func import jacrev
from tqdm.auto import tqdm

from .. import distributed
from ..objective import mode, replay_rng
from ..queries import Query
from ..train import Run
from .sgd import StepAdjoint


def tracin(run: Run, query: Query | None, every: int = 1, progress: bool = False
           ) -> torch.Tensor:
    """TracIn scores (M, N) for the rows of ``query``; (1, N) of self-influence for None."""
    objective = run.objective(functional=True)
    adjoint = StepAdjoint(objective, hessian=False)
    scores = None  # (M, N), once the first step says M
    for t in tqdm(range(0, run.num_steps, every), desc="TracIn", disable=not progress,
                  leave=False):
        theta = run.unpack(run.store[t])[0]
        lr = run.rate(t)
        if every == 1:  # the instances of step t, each weighted η_t/|S_t|, in the forwards
            idx = run.batches[t]  # of its micro-batches
            x, y = run.train.batch(idx, run.seeds[t])
            parts = [(idx[p], (x[p], y[p]), seed) for p, seed in
                     distributed.pieces(len(idx), run.micro_at(t), run.seeds[t], 0)]
            weight = lr / len(run.batches[t])
        else:  # every instance, at the checkpoint, standing for k steps
            parts = [(idx, run.train.batch(idx), run.seeds[t]) for idx in
                     torch.arange(run.num_train).split(max(1, 2**20 // len(theta)))]
            weight = every * lr / run.num_train
        U = theta.new_zeros(0) if query is None else query.gradients(theta)
        for idx, (x, y), seed in parts:
            with mode(objective.model, train=True), replay_rng(seed, theta.device):
                run.at_step(objective, t)
                if query is None:  # self-influence: ∇ℓ_j for each j of the batch, (B, P)
                    J = jacrev(lambda th, x=x, y=y: objective.terms(th, x, y))(theta)
                    d = (weight * J * J).sum(1)[None]
                else:  # the adjoint's per-instance terms, ⟨G, ∇ℓ_j⟩/B, with G = B·weight·U
                    d = adjoint(theta, x, y, U * weight * len(x))[1]
            if scores is None:
                scores = d.new_zeros(len(d), run.num_train)
            scores.index_add_(1, idx.to(scores.device), d)
    assert scores is not None  # a run has at least one step
    return scores
