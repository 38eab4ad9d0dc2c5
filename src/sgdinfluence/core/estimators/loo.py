"""Ground truth: leave-one-out retraining on the identical schedule, many runs at once."""

from __future__ import annotations

import torch
from torch.func import grad, vmap
from tqdm.auto import tqdm

from ...errors import ConfigError
from ..objective import deterministic, mode, replay_rng
from ..queries import Query
from ..train import Run


def leave_one_out(run: Run, query: Query, indices: torch.Tensor, chunk: int | None = None,
                  progress: bool = False) -> torch.Tensor:
    """The true change ``Q(θ_{-j}[T]) - Q(θ[T])`` (M, len(indices)) for each j in ``indices``.

    Counterfactual training for ``chunk`` left-out instances runs at once: their states are
    stacked (C, ·) and each step's gradient is vmapped over them, with instance weights
    W (C, N) that are 1 except W[c, j_c] = 0 (the divisor stays |S_t|), as in ``Run.retrain``;
    the optimizer's update is elementwise, so it takes the stacked states as they are.
    ``chunk`` defaults to about 2M stacked parameters (all 200 runs of a logistic regression).
    """
    objective = run.objective(functional=True)
    state0 = run.store[0]
    base = query.values(objective.flatten())
    step_grad = vmap(grad(objective.batch), in_dims=(0, 0, None, None), randomness="same")
    chunk = chunk or max(1, 2**21 // len(state0))
    if not (isinstance(chunk, int) and chunk >= 1):
        raise ConfigError(f"chunk must be an int >= 1, got {chunk!r}")
    out = []
    chunks = indices.split(chunk)
    for J in tqdm(chunks, desc="leave-one-out", disable=not progress, leave=False):
        W = torch.ones(len(J), run.num_train, dtype=state0.dtype, device=state0.device)
        W[torch.arange(len(J)), J] = 0
        Theta, *rest = state0.expand(len(J), -1).clone().chunk(1 + run.optimizer.slots, dim=1)
        slots = tuple(rest)
        with mode(objective.model, train=True), deterministic(state0.device):
            data = run.train.batches(run.batches)
            for t, (x, y) in enumerate(data):
                idx = run.batches[t]
                with replay_rng(run.seeds[t], state0.device):
                    G = step_grad(Theta, W[:, idx], x, y)
                Theta, slots = run.optimizer.step(Theta, slots, G, run.rate(t), t,
                                                  run.decoupled())
        values = _values(query, Theta)
        out.append((values - base).T)
    return torch.cat(out, dim=1)


def _values(query: Query, Theta: torch.Tensor) -> torch.Tensor:
    """Q at each parameter set (C, M): vmapped for data queries, a loop for callables."""
    if any(kind == "call" for kind, *_ in query.parts):
        return torch.stack([query.values(th) for th in Theta])
    return vmap(query.values)(Theta)
