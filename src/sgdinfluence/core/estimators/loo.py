"""Ground truth: leave-one-out retraining on the identical schedule, many runs at once."""

from __future__ import annotations

import torch
from torch.func import grad, vmap
from tqdm.auto import tqdm

from ...errors import ConfigError
from .. import distributed
from ..objective import deterministic, mode, replay_rng, tracked_batch_norms
from ..queries import Query
from ..train import Run


def leave_one_out(run: Run, query: Query, indices: torch.Tensor, chunk: int | None = None,
                  progress: bool = False) -> torch.Tensor:
    """The true change ``Q(θ_{-j}[T]) - Q(θ[T])`` (M, len(indices)) for each j in ``indices``:
    :func:`leave_out` of each one alone."""
    return leave_out(run, query, list(indices.reshape(-1, 1)), chunk, progress)


def leave_out(run: Run, query: Query, removed: list[torch.Tensor], chunk: int | None = None,
              progress: bool = False) -> torch.Tensor:
    """The true change ``Q(θ_{-R}[T]) - Q(θ[T])`` (M, K) for each set R = ``removed[k]`` of
    training indices left out, on the identical schedule.

    Counterfactual training for ``chunk`` sets runs at once: their states are stacked (C, ·)
    and each step's gradient is vmapped over them, with instance weights W (C, N) that are 1
    except W[c, R_c] = 0 (the divisor stays |S_t|), as in ``Run.retrain``; the optimizer's
    update is elementwise, so it takes the stacked states as they are. ``chunk`` defaults to
    about 2M stacked parameters (all 200 runs of a logistic regression). In a process group
    each rank retrains its share of the sets alone, and one all-reduce gathers the columns.
    """
    if _tracks_statistics(run):
        return _one_by_one(run, query, removed, progress)
    objective = run.objective(functional=True)
    state0 = run.store[0]
    base = query.values(objective.flatten())
    step_grad = vmap(grad(objective.batch), in_dims=(0, 0, None, None), randomness="same")
    chunk = chunk or max(1, 2**21 // len(state0))
    if not (isinstance(chunk, int) and chunk >= 1):
        raise ConfigError(f"chunk must be an int >= 1, got {chunk!r}")
    rank, size = distributed.world()
    mine = torch.arange(len(removed)).tensor_split(size)[rank]
    out = [base.new_zeros(len(base), 0)]
    chunks = mine.split(chunk)
    for J in tqdm(chunks, desc="leave-out retraining", disable=not progress, leave=False):
        W = torch.ones(len(J), run.num_train, dtype=state0.dtype, device=state0.device)
        for c, k in enumerate(J.tolist()):  # a loop over the sets, not over instances
            W[c, removed[k].to(W.device)] = 0
        Theta, *rest = state0.expand(len(J), -1).clone().chunk(1 + run.optimizer.slots, dim=1)
        slots = tuple(rest)
        with mode(objective.model, train=True), deterministic(state0.device):
            data = run.train.batches(run.batches, run.seeds)
            for t, (x, y) in enumerate(data):
                run.at_step(objective, t)
                G = _step_gradient(step_grad, run, t, Theta, W, x, y)
                Theta, slots = run.optimizer_at(t).step(Theta, slots, G, run.rate(t), t,
                                                  run.decoupled_at(t))
        values = _values(query, Theta)
        out.append((values - base).T)
    if size == 1:
        return torch.cat(out, dim=1)
    full = base.new_zeros(len(base), len(removed))
    full[:, mine.to(full.device)] = torch.cat(out, dim=1)
    return distributed.all_reduce(full)


def _tracks_statistics(run: Run) -> bool:
    """Does the run update batch norm's running statistics (a layer with them, in train mode
    at some step)? Each counterfactual run then has statistics of its own."""
    return any(run.first_in_train_mode(n) < run.num_steps
               for n in tracked_batch_norms(run.model))


def _one_by_one(run: Run, query: Query, removed: list[torch.Tensor], progress: bool
                ) -> torch.Tensor:
    """The truth for a model whose batch norm updates its running statistics: each set's
    counterfactual training (``Run.retrain``), its statistics included, one at a time (torch
    cannot stack runs that update buffers in place)."""
    base = query.values(query.objective.flatten())
    rank, size = distributed.world()
    mine = torch.arange(len(removed)).tensor_split(size)[rank].tolist()
    full = base.new_zeros(len(base), len(removed))
    for k in tqdm(mine, desc="leave-out retraining", disable=not progress, leave=False):
        model = run.retrain(removed[k])
        theta = torch.cat([p.detach().reshape(-1) for p in model.parameters() if p.requires_grad])
        full[:, k] = query.values(theta, dict(model.named_buffers())) - base
    return distributed.all_reduce(full) if size > 1 else full


def _step_gradient(step_grad, run: Run, t: int, Theta, W, x, y) -> torch.Tensor:
    """Step t's gradient for every stacked state, computed as training computed it: the whole
    batch in one process; in a process group of size K, the K ranks' shares, each with its
    own randomness and scaled by |share| / |S_t|, summed (here, in this one process); each
    share micro-batch by micro-batch where the step accumulated its gradient."""
    idx, micro = run.batches[t], run.micro_at(t)
    parts = distributed.shares(idx)
    if len(parts) == 1 and micro == 1:
        with replay_rng(run.seeds[t], Theta.device):
            return step_grad(Theta, W[:, idx], x, y)
    G = torch.zeros_like(Theta)
    for rank, (part, xr, yr) in enumerate(zip(parts, x.tensor_split(len(parts)),
                                              y.tensor_split(len(parts)), strict=True)):
        for piece, seed in distributed.pieces(len(part), micro, run.seeds[t], rank):
            n = piece.stop - piece.start
            if n:
                with replay_rng(seed, Theta.device):
                    G += step_grad(Theta, W[:, part[piece]], xr[piece], yr[piece]) * (
                        n / len(idx))
    return G


def _values(query: Query, Theta: torch.Tensor) -> torch.Tensor:
    """Q at each parameter set (C, M): vmapped for data queries, a loop for callables."""
    if any(kind == "call" for kind, *_ in query.parts):
        return torch.stack([query.values(th) for th in Theta])
    return vmap(query.values)(Theta)
