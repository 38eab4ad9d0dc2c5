"""Speed of Algorithm 2 relative to the recording training, on the paper's MNIST CNN.

Measured side by side in one process, median of several repetitions:
  sweep / training           the vectorised backward sweep (sgi.influence)
  per-instance loop / train  a straightforward reference: one backward per training instance
                             and one Hessian-vector product per step, as in research code

    python benchmarks/sweep_speed.py --data-dir ../shared/data [--n 6400] [--reps 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import sgdinfluence as sgi
from sgdinfluence.app.data import mnist
from sgdinfluence.app.models import mnist_cnn
from sgdinfluence.core.queries import query_matrix
from sgdinfluence.core.train import mode, replay_rng


def per_instance_loop(run: sgi.Run, u: torch.Tensor) -> torch.Tensor:
    """Algorithm 2 written plainly: a Python loop over the instances of every batch."""
    objective = run.objective()
    X, Y = run.train
    scores = torch.zeros(run.num_train, dtype=u.dtype)
    with mode(objective.model, train=True):
        for t in reversed(range(run.num_steps)):
            idx, lr = run.batches[t], run.lrs[t]
            theta = run.store[t].detach().requires_grad_()
            with replay_rng(run.seeds[t], theta.device):
                terms = objective.terms(theta, X[idx], Y[idx])
            for k, j in enumerate(idx.tolist()):
                (g,) = torch.autograd.grad(terms[k], theta, retain_graph=True)
                scores[j] += lr / len(idx) * (u @ g).item()
            (g,) = torch.autograd.grad(terms.mean(), theta, create_graph=True)
            (hu,) = torch.autograd.grad(g, theta, grad_outputs=u)
            u = u - lr * hu
    return scores


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data-dir", default=None, help="holds mnist/ (default $SGDINFLUENCE_DATA)")
    ap.add_argument("--n", type=int, default=6400, help="training images (default 6400)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()

    X, y = mnist("train", args.data_dir)
    train, val = (X[: args.n], y[: args.n]), (X[-1000:], y[-1000:])
    torch.manual_seed(0)
    model = mnist_cnn()
    fit = lambda: sgi.fit(model, train, epochs=1, batch_size=args.batch_size, lr=0.05)  # noqa: E731
    sgi.influence(fit(), val)  # warm up
    fits, sweeps = [], []
    for _ in range(args.reps):  # interleaved, so that both see the same machine state
        t_fit, run = timed(fit)
        t_sweep, scores = timed(lambda: sgi.influence(run, val))  # noqa: B023
        fits.append(t_fit)
        sweeps.append(t_sweep)
    t_loop, loop_scores = timed(lambda: per_instance_loop(run, query_matrix(run, val)[0][0]))
    t_fit, t_sweep = statistics.median(fits), statistics.median(sweeps)
    err = np.abs(loop_scores.numpy() - scores).max() / np.abs(scores).max()

    print(f"MNIST CNN (13,750 parameters), {args.n} images, batch {args.batch_size}, "
          f"{run.num_steps} steps, {torch.get_num_threads()} threads, median of {args.reps}")
    print(f"{'':28}{'seconds':>10}{'/ training':>12}")
    print(f"{'recording training':28}{t_fit:10.2f}{1:12.2f}")
    print(f"{'vectorised sweep':28}{t_sweep:10.2f}{t_sweep / t_fit:12.2f}")
    print(f"{'per-instance loop (1 rep)':28}{t_loop:10.2f}{t_loop / t_fit:12.2f}")
    print(f"loop vs vectorised: max relative difference {err:.1e}; "
          f"vectorised is {t_loop / t_sweep:.1f}x faster")


if __name__ == "__main__":
    main()
