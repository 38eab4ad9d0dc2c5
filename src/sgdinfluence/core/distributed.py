"""Running inside a ``torch.distributed`` process group (``torchrun``, any backend).

Every rank holds the same recorded schedule and the same state; each step's mini-batch S_t is
split into contiguous shards, one per rank, the way ``DistributedDataParallel`` splits a
batch. A rank computes its shard's share of the step, scaled by |shard| / |S_t| so that the
shares add up to the step's mean, and one all-reduce (sum) per step combines them: the
gradient (and the loss) in training, H_t G in the sweep. Outside a process group, or in a
group of one, nothing changes. Randomness (dropout, augmentation) is drawn per rank from the
step's seed plus the rank, so a run with randomness replays in the same world size.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(this process's rank, the number of processes): (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shares(idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Every rank's contiguous part of a step's mini-batch, in rank order (some may be empty):
    ``(idx,)`` in one process."""
    size = world()[1]
    return (idx,) if size == 1 else idx.tensor_split(size)


def shard(idx: torch.Tensor) -> torch.Tensor:
    """This rank's part of a step's mini-batch."""
    return shares(idx)[world()[0]]


def seed(step_seed: int, rank: int | None = None) -> int:
    """The seed of a rank's randomness at a step (this rank's by default): the step's own on
    rank 0."""
    return (step_seed + (world()[0] if rank is None else rank)) % 2**63


def pieces(n: int, micro: int, step_seed: int, rank: int | None = None
           ) -> list[tuple[slice, int]]:
    """A rank's ``n`` instances of a step as its ``micro`` contiguous micro-batches
    (gradient accumulation), each with the seed of its randomness: (slice, seed) pairs, one
    (all, the rank's seed) without accumulation."""
    first = seed(step_seed, rank)
    sizes = [len(b) for b in torch.arange(n).tensor_split(micro)]
    starts = [sum(sizes[:c]) for c in range(micro)]
    return [(slice(a, a + size), (first + c * 7919) % 2**63)
            for c, (a, size) in enumerate(zip(starts, sizes, strict=True))]


def all_reduce(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over the ranks, in place (``t`` itself outside a process group)."""
    if world()[1] > 1:
        dist.all_reduce(t)
    return t


def gradient(objective, theta: torch.Tensor, w: torch.Tensor, x: torch.Tensor,
             y: torch.Tensor, batch_size: int, step_seed: int, micro: int = 1
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradient g (P,) and value of the step objective ``(1/|S_t|) Σ_{i∈S_t} w_i ℓ_i``,
    with this rank's shard (w, x, y) of the mini-batch of ``batch_size``, accumulated over
    ``micro`` micro-batches (each its own forward: its own batch-norm statistics and
    randomness): one all-reduce of (g, loss) in a process group."""
    from .objective import replay_rng

    g, loss = torch.zeros_like(theta), theta.new_zeros(())
    for part, piece_seed in pieces(len(w), micro, step_seed):
        if part.stop == part.start:  # more ranks (or micro-batches) than instances
            continue
        with replay_rng(piece_seed, theta.device):
            value = objective.batch(theta, w[part], x[part], y[part])
        if part.stop - part.start != batch_size:
            value = value * ((part.stop - part.start) / batch_size)
        g = g + torch.autograd.grad(value, theta)[0]
        loss = loss + value.detach()
    if world()[1] > 1:
        both = all_reduce(torch.cat([g, loss.detach()[None]]))
        g, loss = both[:-1], both[-1]
    return g, loss.detach()


def check_same(idx: torch.Tensor, what: str) -> None:
    """Refuse indices that differ between the ranks (each rank must pass the whole global
    mini-batch, which is sharded here, not a sampler's shard of it)."""
    if world()[1] == 1:
        return
    f = (idx.double() * torch.arange(1, len(idx) + 1, dtype=torch.float64)).sum() + len(idx)
    both = torch.stack([f, -f])
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    if both[0] != -both[1]:
        from ..errors import Error

        raise Error(f"{what} differ between the ranks; give every rank the same global "
                    "mini-batch (not a DistributedSampler's shard of it): it is split here")


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()
