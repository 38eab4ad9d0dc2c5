"""Algorithm 2: SGD-influence of every training instance in one backward sweep."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn
from torch.func import jvp, vjp, vmap
from tqdm.auto import tqdm

from ...errors import Error, RunFileError
from .. import distributed
from ..objective import (
    Objective,
    batch_norm_written_out,
    mode,
    replay_rng,
    tracked_batch_norms,
)
from ..train import Run
from ..trajectory import _digest, read_run_file, write_run_file

Checkpoint = Callable[[], tuple[torch.Tensor, dict]]  # a query term's gradients at a step
Extra = Callable[[], tuple[list[torch.Tensor], list[torch.Tensor]]]  # more outputs of a
# step's forward, and their cotangents (M, ...), to pull back to θ with H_t G
ROW_BUDGET = 2**20  # query rows x batch size x parameters handled by one batched reverse pass


def sgd_influence(run: Run, U: torch.Tensor, epochs: int | None = None, hessian: bool = True,
                  progress: bool = False,
                  checkpoints: Mapping[int, Checkpoint] | None = None,
                  statistics: dict[str, torch.Tensor] | None = None,
                  norms: list | None = None, resume: dict | None = None,
                  save: Callable[[dict], None] | None = None, damping: float = 0.0
                  ) -> torch.Tensor:
    """Estimate ``⟨u, θ_{-j}[T] - θ[T]⟩`` for every query row u of U (M, P) and every
    training index j: returns (M, N). ``epochs=k`` sweeps over the last k epochs only
    (``epochs=1`` is the paper's last-epoch approximation). ``hessian=False`` drops the
    Hessian terms (u is held fixed under plain SGD: the estimator without the Hessian term).
    ``checkpoints[s]()``, for steps s inside the sweep, is the gradient (M, P) of a query
    term at θ[s] (and its gradient by the running statistics then, a dict like
    ``statistics``): the sweep is linear in u, so adding it to u when the backward pass reaches
    θ[s] estimates the change of the sum of the queries at T and at those steps.

    With plain SGD this is the paper's Algorithm 2. With an optimizer that keeps state
    (momentum, Adam), U is the adjoint of θ and ``rest`` that of the optimizer's slots; each
    step's update is reversed by ``torch.func.vjp`` to find G, the cotangent of the step's
    gradient g_t, whose products with the batch are the same as in the paper's step.

    ``statistics``: ∂Q/∂r (M, C) for batch norm's running statistics r at θ[T] (eval mode
    reads them, and training made them): their adjoint is carried beside U
    (:class:`RunningStatistics`). ``norms``, if given, gets ‖u‖ (M,) at θ[T] and at the
    start of each epoch swept, backwards: how much the sweep amplifies the query.

    ``save``, if given, is called at the start of each epoch swept (backwards) with the
    sweep's state there, a dict of tensors; ``resume=`` such a dict continues the sweep from
    that point, with the same result as a sweep never interrupted (:class:`SweepFile`).
    Its ``scores`` at the start of epoch e are the scores of the sweep over the last
    E − e epochs (a tensor the sweep goes on adding to: copy it to keep it).

    ``damping`` λ > 0: the adjoint of a step gains λ G beside H_t G, so under plain SGD
    u ← u − η_t (H_t + λI) u: the exact derivative of the run's linearisation with an extra
    λ/2‖θ‖² that belongs to no instance (the trajectory is the one recorded). A step's
    contribution then fades by about (1 − η λ) per later step, as in segmented, damped
    unrolling (Bae et al. 2024). 0 is Algorithm 2, bit for bit.
    """
    adjoint = StepAdjoint(run.objective(functional=True), hessian)
    stats = (RunningStatistics(run, adjoint.objective.model, statistics)
             if statistics and hessian else None)
    optimizer = run.optimizer
    start = 0 if epochs is None else run.epoch_starts[run.epochs - epochs]
    scores = torch.zeros(len(U), run.num_train, dtype=U.dtype, device=U.device)
    rest = tuple(torch.zeros_like(U) for _ in range(optimizer.slots))  # 0 after the last step
    last = run.num_steps - 1
    if resume is not None:                                     # the state at θ[t], saved
        last, U, scores = resume["t"] - 1, resume["U"], resume["scores"]
        rest = tuple(resume["rest"])
        if stats is not None:
            stats.V = dict(resume["V"])
        if norms is not None:
            norms[:] = list(resume["norms"])
    elif norms is not None:
        norms.append(torch.linalg.vector_norm(U, dim=1))
    steps = range(last, start - 1, -1)                          # t = T-1, ..., start
    local = [distributed.shard(run.batches[t]) for t in steps]  # all of S_t in one process
    data = run.train.batches(local, [run.seeds[t] for t in steps])
    starts = set(run.epoch_starts)
    with mode(adjoint.objective.model, train=True):
        for t, part, (x, y) in tqdm(zip(steps, local, data, strict=True), total=len(steps),
                                    desc="influence sweep", disable=not progress, leave=False):
            if checkpoints and t + 1 in checkpoints:         # a query term at θ[t+1] too
                dU, dV = checkpoints[t + 1]()
                U = U + dU
                if stats is not None:                          # and at the statistics then
                    stats.V = {n: v + dV[n] for n, v in stats.V.items()}
            lr = run.rate(t)
            run.at_step(adjoint.objective, t)
            theta, slots = run.unpack(run.store[t])
            if not slots and not optimizer.clips:              # θ[t+1] = θ[t] - η_t g_t:
                G = -lr * U                                    # the cotangent of g_t
            else:                                              # (θ, slots) = step(θ, slots, g_t)
                U, rest, G = _reverse_update(adjoint.objective, run, theta, slots, t, part, x,
                                             y, U, rest)
            # H_t G and ⟨G, ∇ℓ_j⟩/|S_t|; batch norm's statistics term (below) in the same
            # passes where the step allows (``fused``: one forward, no layer reading them)
            pieces = distributed.pieces(len(part), run.micro_at(t), run.seeds[t])
            fused = stats.fused(t, pieces) if stats is not None else None
            HG, dW = _shard_adjoint(adjoint, run, t, part, theta, x, y, G, fused)
            scores.index_add_(1, part.to(scores.device), -dW)  # score[j] += η_t/|S_t| ⟨u, ∇ℓ_j⟩
            if HG is not None:
                U = U + HG                                     # u ← (I - η_t H_t) u
            if damping:
                U = U + damping * G                            # u ← u - η_t λ u
            if stats is not None and fused is None:            # u += m (∂s_t/∂θ)ᵀ v; v ← (1-m) v
                U = U + stats.step(adjoint.objective, t, theta, x, y, pieces, G)
            if norms is not None and t in starts:               # u at the start of an epoch
                norms.append(torch.linalg.vector_norm(U, dim=1))
            if save is not None and t in starts:
                save({"t": t, "U": U, "rest": list(rest), "scores": scores,
                      "V": {} if stats is None else stats.V, "norms": list(norms or [])})
    return distributed.all_reduce(scores)


def auto_epochs(norms: list[torch.Tensor], max_growth: float) -> torch.Tensor:
    """The last-k-epoch rule (``epochs="auto"``): for each query row, the most epochs k ≥ 1
    over which the adjoint grows at most ``max_growth`` times: ‖u‖ at the start of each of
    the last k epochs ≤ ``max_growth`` ‖u(θ[T])‖. ``norms`` as :func:`sgd_influence` fills
    it over a full sweep (‖u‖ (M,) at θ[T], then at each epoch start, backwards). (M,) ints.
    """
    start = norms[0]
    growth = torch.stack([n / torch.where(start > 0, start, 1) for n in norms[1:]])  # (E, M)
    within = torch.cumprod((growth <= max_growth).long(), dim=0)  # 1 while all epochs so far
    return within.sum(0).clamp(min=1)


def _shard_adjoint(adjoint: StepAdjoint, run: Run, t: int, part, theta, x, y, G,
                   fused: Extra | None = None):
    """The step's adjoint on this process's part of S_t, in the same dropout and crops as
    training: all of it in one process; in a process group, each rank's share scaled by
    |part| / |S_t| and H_t G summed over the ranks. A step accumulated over micro-batches
    is reversed micro-batch by micro-batch, each scaled by its share of S_t. ``fused``: the
    batch-norm statistics' term, taken in the same passes (a step of one piece)."""
    size = len(run.batches[t])
    HGs: list[torch.Tensor] = []
    dWs: list[torch.Tensor] = []
    for piece, seed in distributed.pieces(len(part), run.micro_at(t), run.seeds[t]):
        n = piece.stop - piece.start
        if not n:  # more ranks (or micro-batches) than the batch has instances
            continue
        with replay_rng(seed, G.device):
            HG, dW = adjoint(theta, x[piece], y[piece], G, fused)
        if n != size:
            HG, dW = (None if HG is None else HG * (n / size)), dW * (n / size)
        if HG is not None:
            HGs.append(HG)
        dWs.append(dW)
    if not dWs:
        HG, dW = (None if not adjoint.hessian else torch.zeros_like(G)), G.new_zeros(len(G), 0)
    else:
        HG = None if not HGs else HGs[0] if len(HGs) == 1 else torch.stack(HGs).sum(0)
        dW = dWs[0] if len(dWs) == 1 else torch.cat(dWs, dim=1)
    return (None if HG is None else distributed.all_reduce(HG)), dW


def _reverse_update(objective: Objective, run: Run, theta, slots, t: int, part, x, y,
                    U: torch.Tensor, rest: tuple[torch.Tensor, ...]):
    """The cotangents of θ[t], the slots and g_t, from U and ``rest`` (those of θ[t+1] and
    the slots after step t), by the vjp of the update (elementwise, so cheap). Adam's update
    is nonlinear in g_t (and so is a clip), which is recomputed here; SGD's is linear, so any
    g will do."""
    optimizer, lr, decay = run.optimizer_at(t), run.rate(t), run.decoupled_at(t)
    if optimizer.name == "sgd" and not optimizer.clips:
        g = torch.zeros_like(theta)
    else:
        w = torch.ones(len(part), dtype=theta.dtype, device=theta.device)
        g = distributed.gradient(objective, theta.detach().requires_grad_(), w, x, y,
                                 len(run.batches[t]), run.seeds[t], run.micro_at(t))[0]
    pullback = vjp(lambda th, s, gr: optimizer.step(th, s, gr, lr, t, decay), theta, slots,
                   g)[1]
    if len(U) == 1:
        Lt, Ls, Lg = pullback((U[0], tuple(r[0] for r in rest)))
        return Lt[None], tuple(r[None] for r in Ls), Lg[None]
    return vmap(pullback)((U, rest))


class RunningStatistics:
    """Batch norm's running statistics r as part of the state the sweep reverses. Training
    updates them at every forward in train mode, r ← (1 − m) r + m s(θ), s the batch's mean
    and unbiased variance of the layer's input; eval mode reads them: the query, and the
    steps where the user had the layer in eval mode (a frozen backbone). Their adjoint V
    (M, C) per statistic starts at ∂Q/∂r(θ[T]); backwards over step t:

    - a layer in train mode: u gains m (1 − m)^(k−1−c) (∂s_c/∂θ)ᵀ V for the step's forwards
      c < k (its micro-batches), and V shrinks by (1 − m)^k;
    - a layer in eval mode: V gains (∂g_t/∂r)ᵀ G, G the cotangent of the step's gradient g_t
      (only where r then depends on θ: after some step in train mode).
    """

    def __init__(self, run: Run, model: nn.Module, V: dict[str, torch.Tensor]):
        self.momentum: dict[str, float] = {}
        self.seen: list[tuple[str, torch.Tensor]] | None = None  # inputs, while recording
        self.first_train: dict[str, int] = {}  # the first step with the layer in train mode
        for name, m in tracked_batch_norms(model).items():
            if m.momentum is None:
                raise Error(f"batch norm layer {name} has momentum=None (a cumulative "
                            "average): the sweep follows running statistics of a momentum")
            self.momentum[name] = float(m.momentum)
            m.register_forward_pre_hook(self._hook(name))
            self.first_train[name] = run.first_in_train_mode(name)
        if self.momentum and distributed.world()[1] > 1:
            raise Error("the sweep does not follow batch norm's running statistics in a "
                        "process group yet (each rank's batch norm sees its own shard); record "
                        "and sweep a model with batch norm in one process")
        self.run, self.model, self.V = run, model, dict(V)

    def _hook(self, name: str):
        def record(module: nn.Module, args: tuple) -> None:
            if self.seen is not None and module.training:
                self.seen.append((name, args[0]))
        return record

    def _reading(self, t: int) -> set[str]:
        """The layers that read their running statistics at step t, which then depend on θ."""
        return {name for name, m in self.model.named_modules()
                if name in self.momentum and not m.training and self.first_train[name] < t}

    def fused(self, t: int, pieces) -> Extra | None:
        """The step's term taken in the step adjoint's own passes (:class:`StepAdjoint`):
        the layers' inputs recorded in its forward, their statistics' pullback joined to its
        reverse pass; then V decays. For a step of one forward where no layer reads its
        statistics (else None, and :meth:`step` takes the term with a forward of its own)."""
        if len(pieces) != 1 or self._reading(t):
            return None
        self.seen = []

        def terms() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
            seen, self.seen = self.seen or [], None
            return self._terms(seen)
        return terms

    def step(self, objective: Objective, t: int, theta: torch.Tensor, x, y, pieces,
             G: torch.Tensor) -> torch.Tensor:
        """The step's term of u, m (∂s/∂θ)ᵀ V summed over its train-mode forwards; then V
        decays there, and gains (∂g_t/∂r)ᵀ G where a layer read r in eval mode."""
        theta = theta.detach().requires_grad_()
        reading = self._reading(t)
        read = {f"{n}.{stat}": self.V[f"{n}.{stat}"].new_zeros(0) for n in reading
                for stat in ("running_mean", "running_var")}
        if reading:
            read = {k: b.detach().clone().requires_grad_() for k, b in
                    self.model.named_buffers() if k in read}
        g = theta.new_zeros(len(theta)) if reading else None
        self.seen = []
        try:
            with batch_norm_written_out(self.model, reading):
                for part, seed in pieces:
                    n = part.stop - part.start
                    if not n:
                        continue
                    buffers = {k: b.clone() for k, b in self.model.named_buffers()} | read
                    with replay_rng(seed, theta.device):
                        out = objective.outputs(theta, x[part], buffers)
                    if g is not None:  # the step's gradient, as a function of r too
                        loss = objective.loss_fn(out, y[part]).sum() / len(self.run.batches[t])
                        g = g + torch.autograd.grad(loss, theta, create_graph=True)[0]
            seen = self.seen
        finally:
            self.seen = None
        if g is not None and g.requires_grad:
            parts = torch.autograd.grad(g, list(read.values()), G, is_grads_batched=True,
                                        retain_graph=True, allow_unused=True,
                                        materialize_grads=True)
            for key, extra in zip(read, parts, strict=True):
                self.V[key] = self.V[key] + extra.detach()
        outs, cotangents = self._terms(seen)
        if not outs:
            return theta.new_zeros(len(G), len(theta))
        (term,) = torch.autograd.grad(outs, theta, cotangents, is_grads_batched=True,
                                      allow_unused=True, materialize_grads=True)
        return term.detach()

    def _terms(self, seen: list[tuple[str, torch.Tensor]]
               ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The statistics s of the step's train-mode forwards (inputs ``seen``, in order) and
        their cotangents m (1 − m)^(later forwards) V; then V decays by (1 − m)^forwards."""
        outs, cotangents = [], []
        for c, (name, h) in enumerate(seen):
            m = self.momentum[name]
            later = sum(n == name for n, _ in seen[c + 1:])  # this layer's forwards after it
            dims = [d for d in range(h.ndim) if d != 1]
            outs += [h.mean(dims), h.var(dims, correction=1)]
            cotangents += [m * (1 - m) ** later * self.V[f"{name}.running_mean"],
                           m * (1 - m) ** later * self.V[f"{name}.running_var"]]
        for name in {n for n, _ in seen}:
            times = sum(n == name for n, _ in seen)
            for stat in ("running_mean", "running_var"):
                key = f"{name}.{stat}"
                self.V[key] = self.V[key] * (1 - self.momentum[name]) ** times
        return outs, cotangents


class StepAdjoint:
    """The adjoint of one SGD step: at θ (P,) on a batch (x, y) of size B, for the rows u of
    U (M, P), returns ``H U`` (M, P) (None if not ``hessian``) and ``⟨u, ∇ℓ_i(θ)⟩ / B`` (M, B).

    Plain autograd, apart from one forward-mode product: on small models the per-call
    overhead of torch.func transforms was most of the sweep. Two exact ways, chosen by model:
    reverse-over-reverse by default; reverse-over-forward for one query on a convolutional
    network without batch norm, where it was ~20% faster (PyTorch's double backward of a
    convolution always computes its input's gradient, even the data's); but PyTorch
    differentiates batch norm's forward-mode rule wrongly in reverse (the batch statistics
    are treated as constants), and many queries share one forward in reverse-over-reverse.
    """

    def __init__(self, objective: Objective, hessian: bool = True):
        self.objective, self.hessian = objective, hessian
        kinds = tuple(type(m) for m in objective.model.modules())
        self.forward_mode = (any(issubclass(k, nn.modules.conv._ConvNd) for k in kinds) and
                             not any(issubclass(k, nn.modules.batchnorm._BatchNorm)
                                     for k in kinds))
        self.batched = True  # until a backward formula turns out not to support vmap

    def __call__(self, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                 U: torch.Tensor, extra: Extra | None = None
                 ) -> tuple[torch.Tensor | None, torch.Tensor]:
        if len(U) == 1 and self.forward_mode and extra is None:
            return self.reverse_over_forward(theta, x, y, U[0])
        return self.reverse_over_reverse(theta, x, y, U, extra)

    def reverse_over_reverse(self, theta, x, y, U, extra: Extra | None = None):
        """The oracle's derivative (docs/design.md): with instance weights w (B,) = 1 and
        g(θ, w) = ∇_θ (1/B) Σ_i w_i ℓ_i(θ), ⟨u, g⟩ has gradient H u in θ and ⟨u, ∇ℓ_i⟩/B in
        w_i. One forward and one reverse pass that keeps its graph, shared by all rows; then
        one reverse pass through that graph per row, vmapped over as many rows as fit
        ``ROW_BUDGET`` (one at a time on a model the size of the MNIST CNN, where batching
        them only cost memory), or row by row if a backward formula refuses vmap.
        ``extra()``, called after the forward, gives more of its outputs and their cotangents
        (M, ...): their pullback to θ joins H u in the same reverse pass."""
        theta = theta.detach().requires_grad_()
        w = torch.ones(len(x), dtype=theta.dtype, device=theta.device, requires_grad=True)
        (g,) = torch.autograd.grad(self.objective.batch(theta, w, x, y), theta,
                                   create_graph=True)
        outs, cotangents = extra() if extra is not None else ([], [])
        wrt = (theta, w) if self.hessian else (w,)

        def pullback(u, *more, retain=True):  # the gradients of ⟨u, g⟩ (+ Σ⟨c, out⟩) in wrt
            # (allow_unused: with a loss linear in θ, H = 0 and g has no path back to θ)
            return torch.autograd.grad([g, *outs], wrt, [u, *more], retain_graph=retain,
                                       allow_unused=True, materialize_grads=True)

        if len(U) == 1:
            return self._split([o[None] for o in pullback(U[0], *(c[0] for c in cotangents),
                                                          retain=False)])
        rows = min(len(U), ROW_BUDGET // (len(x) * len(theta)))
        if rows > 1 and self.batched:
            try:
                blocks = zip(U.split(rows), *(c.split(rows) for c in cotangents), strict=True)
                parts = [vmap(pullback)(*block) for block in blocks]
                return self._split([torch.cat(o) for o in zip(*parts, strict=True)])
            except RuntimeError as e:  # e.g. convolutions of channels-last (cropped) images
                if "vmap" not in str(e):
                    raise
                self.batched = False  # and go on with the same graph, row by row
        parts = [pullback(u, *(c[i] for c in cotangents)) for i, u in enumerate(U)]
        return self._split([torch.stack(o) for o in zip(*parts, strict=True)])

    def reverse_over_forward(self, theta, x, y, u):
        """For one row u: a forward-mode product along u gives every d_i = ⟨u, ∇ℓ_i⟩/B, and
        one reverse pass through it H u = ∇_θ Σ_i d_i."""
        theta = theta.detach().requires_grad_(self.hessian)
        d = jvp(lambda th: self.objective.terms(th, x, y), (theta,), (u,))[1] / len(x)
        if not self.hessian:
            return None, d[None]
        Hu = (torch.autograd.grad(d.sum(), theta)[0] if d.requires_grad  # else ℓ is linear
              else torch.zeros_like(theta))
        return Hu[None], d[None].detach()

    def _split(self, outs: list[torch.Tensor]) -> tuple[torch.Tensor | None, torch.Tensor]:
        return (outs[0], outs[1]) if self.hessian else (None, outs[0])


class SweepFile:
    """A sweep's state saved at each epoch start to ``path`` (atomically, tensors and plain
    data only, with a run file's digest), so that a sweep of hours that is interrupted
    continues from the last epoch start it reached: ``influence(..., checkpoint=path)``. The
    file names what it sweeps (``key``: the query's rows, the run, the options, as digests);
    a file of another sweep, or not of a sweep, is refused. Removed once the sweep is done."""

    def __init__(self, path, key: dict):
        self.path = Path(path)
        self.key = {k: _digest(v) if isinstance(v, torch.Tensor) else v for k, v in key.items()}
        self.query = key["query"].detach().cpu()
        if not self.path.parent.is_dir():
            raise Error(f"checkpoint {self.path}: the directory {self.path.parent} does not "
                        "exist; create it or give another path")

    def load(self, device: torch.device) -> dict | None:
        """The saved state, or None when there is none yet."""
        if not self.path.exists():
            return None
        try:
            p = read_run_file(self.path, map_location=device)
        except RunFileError as e:
            raise Error(f"checkpoint {self.path} exists and is not a saved sweep ({e}); "
                        "give a new path") from e
        if p.get("kind") != "sweep":
            raise Error(f"checkpoint {self.path} is a run file, not a saved sweep; give a "
                        "new path")
        saved = p.get("key")
        if saved != self.key and not (isinstance(saved, dict) and self._same_query(p, saved)):
            raise Error(f"checkpoint {self.path} holds the sweep of another run, query or "
                        "options; delete it or give another path")
        return p["state"]

    def _same_query(self, p: dict, saved: dict) -> bool:
        """Everything else equal, and the saved query gradient this one up to the order of
        its floating-point sums (another number of threads: its digest then differs)."""
        other = p.get("query")
        if ({k: v for k, v in saved.items() if k != "query"} !=
                {k: v for k, v in self.key.items() if k != "query"}
                or not isinstance(other, torch.Tensor) or other.shape != self.query.shape
                or other.dtype != self.query.dtype):
            return False
        tol = 1000 * torch.finfo(self.query.dtype).eps
        norm = torch.linalg.vector_norm
        return bool((norm(other - self.query, dim=-1) <= tol * norm(self.query, dim=-1)).all())

    def save(self, state: dict) -> None:
        write_run_file(self.path, {"kind": "sweep", "key": self.key, "query": self.query,
                                   "state": state})

    def done(self) -> None:
        self.path.unlink(missing_ok=True)
