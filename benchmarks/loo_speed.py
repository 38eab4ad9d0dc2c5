"""Ground truth speed: vectorised leave-one-out (``method="loo"``) vs a literal retrain loop.

The Sec 7.1 logistic-regression setting on UCI Adult: 200 training / 200 validation
instances, batch 5, 20 epochs, η_t = 0.1 / sqrt(t + 1), float64. Both compute the change of
the validation loss when each of the 200 instances is left out; measured side by side.

    python benchmarks/loo_speed.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

import sgdinfluence as sgi
from sgdinfluence.app.data import load


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--epochs", type=int, default=20)
    args = ap.parse_args()

    adult = load("adult", args.data_dir)["train"]
    X, y = adult.X, adult.y
    perm = np.random.default_rng(0).permutation(len(X))[:400]
    t64 = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    train, val = (t64(X[perm[:200]]), t64(y[perm[:200]])), (t64(X[perm[200:]]), t64(y[perm[200:]]))
    torch.manual_seed(0)
    run = sgi.fit(torch.nn.Linear(X.shape[1], 1).double(), train, loss="bce", epochs=args.epochs,
                  batch_size=5, lr=lambda t: 0.1 / np.sqrt(t + 1), weight_decay=1e-3)

    def val_loss(m):
        with torch.no_grad():
            return F.binary_cross_entropy_with_logits(m(val[0]).squeeze(1), val[1]).item()

    start = time.perf_counter()
    vectorised = sgi.influence(run, val, method="loo")
    t_vec = time.perf_counter() - start
    start = time.perf_counter()
    base = val_loss(run.model)
    literal = np.array([val_loss(run.retrain([j])) - base for j in range(200)])
    t_loop = time.perf_counter() - start

    print(f"leave-one-out for 200 instances, logistic regression on Adult, {run.num_steps} steps")
    print(f"{'literal run.retrain loop':28}{t_loop:8.1f} s")
    print(f"{'vectorised (vmap)':28}{t_vec:8.1f} s   {t_loop / t_vec:.1f}x faster")
    print(f"max abs difference {np.abs(vectorised - literal).max():.1e} "
          f"(values up to {np.abs(literal).max():.1e})")


if __name__ == "__main__":
    main()
