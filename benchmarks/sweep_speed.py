"""Speed of Algorithm 2 (the influence sweep) relative to the recording training.

Measured side by side in one process, training and sweep interleaved (so that both see the
same machine state), after a warm-up, median of ``--reps`` repetitions:

  logistic regression   Sec 7.1 on UCI Adult: 104 features, 200 training instances, batch 5,
                        20 epochs, η_t = 0.1/sqrt(t+1), loss "bce", α = 1e-3, float64
  MLP 8-8               the same data: two hidden layers of 8 ReLU, batch 20, 10 epochs,
                        η = 0.1, α = 1e-3, float64
  MNIST CNN             the paper's CNN (13,750 parameters) on an MNIST subset, batch 64,
                        1 epoch, η = 0.05, float32 (``--crops``: with random crops); also
                        with momentum 0.9 and with Adam (η = 1e-3), whose sweeps reverse the
                        optimizer's update as well
  CIFAR CNN             the paper's CIFAR-10 network (batch norm; 307,946 parameters) on 640
                        random images shaped like CIFAR-10 (speed does not depend on the
                        pixels), batch 64, 1 epoch, η = 0.05, float32; and with its running
                        statistics' term taken by a forward of its own, as before it joined
                        the step's passes

For each: seconds of training, of the sweep for the mean validation loss (one query; the
sweep alone, given U = ∇Q(θ[T]) and, with batch norm, ∂Q/∂r for its running statistics r,
whose one pass over the validation set is left out), and
their ratio. Then the CNN sweep for 1, 10 and 100 per-example queries
(``sgi.PerExample``), on a smaller run, and a plain reference for the single query: a Python
loop with one backward per training instance, checked against the sweep.

    OMP_NUM_THREADS=1 python benchmarks/sweep_speed.py --data-dir ../shared/data

Without the data files, synthetic data of the same shapes stands in (said in the output).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import sgdinfluence as sgi
from sgdinfluence.app.data.sources import adult, mnist
from sgdinfluence.app.models import cifar_cnn, mlp, mnist_cnn
from sgdinfluence.core.augment import RandomCrop
from sgdinfluence.core.estimators import _statistics
from sgdinfluence.core.estimators.sgd import RunningStatistics, sgd_influence
from sgdinfluence.core.objective import mode, replay_rng
from sgdinfluence.core.queries import Query, query_matrix


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


def side_by_side(fit, queries: dict, reps: int) -> tuple[float, dict]:
    """Median seconds of ``fit()`` and of the sweep for each of ``queries`` (name -> query),
    interleaved. The sweep alone: the query gradients U = ∇Q(θ[T]) are computed untimed."""
    def sweep(run, query):
        q = Query(run, query)
        U, statistics = q.gradients(q.objective.flatten()), _statistics(run, q)  # (batch norm)
        return timed(lambda: sgd_influence(run, U, statistics=statistics))[0]

    run = fit()
    for query in queries.values():  # warm up
        sweep(run, query)
    fits, times = [], {name: [] for name in queries}
    for _ in range(reps):
        t_fit, run = timed(fit)
        fits.append(t_fit)
        for name, query in queries.items():
            times[name].append(sweep(run, query))
    return statistics.median(fits), {k: statistics.median(v) for k, v in times.items()}


def tabular(data_dir) -> tuple[tuple, tuple, str]:
    """200 training and 200 validation instances of UCI Adult (float64), as in Sec 7.1."""
    try:
        X, y, _, _ = adult(data_dir)
        source = "UCI Adult"
    except FileNotFoundError:
        g = np.random.default_rng(0)
        X, y = g.standard_normal((400, 104)), g.integers(0, 2, 400)
        source = "synthetic data shaped like Adult (no data files)"
    perm = np.random.default_rng(0).permutation(len(X))[:400]
    t64 = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    return ((t64(X[perm[:200]]), t64(y[perm[:200]])), (t64(X[perm[200:]]), t64(y[perm[200:]])),
            source)


def images(data_dir, n: int) -> tuple[tuple, tuple, str]:
    """``n`` MNIST training images and 1,000 validation images (float32)."""
    try:
        X, y = mnist("train", data_dir)
        source = "MNIST"
    except FileNotFoundError:
        g = np.random.default_rng(0)
        X = g.random((n + 1000, 1, 28, 28), dtype=np.float32)
        y = g.integers(0, 10, n + 1000)
        source = "synthetic images shaped like MNIST (no data files)"
    return (X[:n], y[:n]), (X[-1000:], y[-1000:]), source


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data-dir", default=None, help="holds adult/ and mnist/ "
                    "(default $SGDINFLUENCE_DATA)")
    ap.add_argument("--reps", type=int, default=7, help="repetitions (default 7)")
    ap.add_argument("--n", type=int, default=1280, help="CNN training images (default 1280)")
    ap.add_argument("--query-n", type=int, default=320,
                    help="CNN training images for the 1 / 10 / 100 queries (default 320)")
    ap.add_argument("--query-reps", type=int, default=3)
    ap.add_argument("--crops", action="store_true", help="train the CNN with random crops")
    args = ap.parse_args()

    train, val, tab_source = tabular(args.data_dir)
    d = train[0].shape[1]
    settings = {
        "logistic regression": (lambda: torch.nn.Linear(d, 1),
                                dict(epochs=20, batch_size=5, lr=lambda t: 0.1 / np.sqrt(t + 1))),
        "MLP 8-8": (lambda: mlp(d, 1, hidden=(8, 8)), dict(epochs=10, batch_size=20, lr=0.1)),
    }
    rows = []
    for name, (make, options) in settings.items():
        torch.manual_seed(0)
        model = make().double()
        fit = lambda m=model, o=options: sgi.fit(m, train, loss="bce", weight_decay=1e-3, **o)  # noqa: E731
        t_fit, t = side_by_side(fit, {"sweep": val}, args.reps)
        rows.append((name, fit().num_steps, t_fit, t["sweep"]))

    cnn_train, cnn_val, img_source = images(args.data_dir, max(args.n, args.query_n))
    augment = RandomCrop(padding=2) if args.crops else None
    torch.manual_seed(0)
    cnn = mnist_cnn()

    def fit_cnn(n, **optimizer):
        options = {"lr": 0.05, **optimizer}
        return sgi.fit(cnn, (cnn_train[0][:n], cnn_train[1][:n]), epochs=1, batch_size=64,
                       augment=augment, **options)

    optimizers = {"": {}, ", momentum 0.9": {"momentum": 0.9},
                  ", Adam": {"optimizer": "adam", "lr": 1e-3}}
    for label, optimizer in optimizers.items():
        t_fit, t = side_by_side(lambda o=optimizer: fit_cnn(args.n, **o), {"sweep": cnn_val},
                                args.reps)
        rows.append(("MNIST CNN" + (" + crops" if args.crops else "") + label,
                     fit_cnn(args.n).num_steps, t_fit, t["sweep"]))
    cnn_row = rows[-len(optimizers)]

    g = torch.Generator().manual_seed(0)
    bn_train = (torch.rand(640, 3, 32, 32, generator=g), torch.randint(0, 10, (640,), generator=g))
    bn_val = (torch.rand(1000, 3, 32, 32, generator=g), torch.randint(0, 10, (1000,), generator=g))
    torch.manual_seed(0)
    bn = cifar_cnn()
    fit_bn = lambda: sgi.fit(bn, bn_train, epochs=1, batch_size=64, lr=0.05)  # noqa: E731
    fused = RunningStatistics.fused
    for label, variant in (("CIFAR CNN (batch norm)", fused),
                           ("  statistics by a forward of their own", lambda *a: None)):
        RunningStatistics.fused = variant
        t_fit, t = side_by_side(fit_bn, {"sweep": bn_val}, args.reps)
        rows.append((label, fit_bn().num_steps, t_fit, t["sweep"]))
    RunningStatistics.fused = fused

    counts = (1, 10, 100)
    queries = {m: sgi.PerExample((cnn_val[0][:m], cnn_val[1][:m])) for m in counts}
    t_qfit, t_q = side_by_side(lambda: fit_cnn(args.query_n),
                               queries, args.query_reps)
    run = fit_cnn(args.n)
    t_loop, loop_scores = timed(lambda: per_instance_loop(run, query_matrix(run, cnn_val)[0][0]))
    scores = sgi.influence(run, cnn_val)
    err = np.abs(loop_scores.numpy() - scores).max() / np.abs(scores).max()

    print(f"{torch.get_num_threads()} threads; median of {args.reps} interleaved repetitions; "
          f"tabular: {tab_source}; images: {img_source}")
    print(f"{'':34}{'steps':>7}{'training s':>12}{'sweep s':>10}{'sweep / training':>18}")
    for name, steps, t_fit_, t_sweep in rows:
        print(f"{name:34}{steps:7d}{t_fit_:12.3f}{t_sweep:10.3f}{t_sweep / t_fit_:18.2f}")
    print(f"{'per-instance loop (1 rep)':34}{cnn_row[1]:7d}{cnn_row[2]:12.3f}{t_loop:10.3f}"
          f"{t_loop / cnn_row[2]:18.2f}   (plain SGD; max rel. difference to the sweep "
          f"{err:.1e})")
    steps = fit_cnn(args.query_n).num_steps
    print(f"\nMNIST CNN, {steps} steps ({args.query_n} images, training {t_qfit:.3f} s), "
          f"per-example queries, median of {args.query_reps}")
    print(f"{'queries':>8}{'sweep s':>10}{'s / query':>11}{'/ 1 query':>11}")
    for m in counts:
        print(f"{m:8d}{t_q[m]:10.3f}{t_q[m] / m:11.3f}{t_q[m] / t_q[1]:11.1f}")


if __name__ == "__main__":
    main()
