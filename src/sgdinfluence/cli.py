"""Command line: ``sgdinfluence demo``."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from . import fit, influence
from .models import logistic_regression, mlp


def demo(args: argparse.Namespace) -> None:
    """Digits with 10% of the training labels flipped: does SGD-influence find them?"""
    start = time.perf_counter()
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32) / 16.0
    X_tr, X_rest, y_tr, y_rest = train_test_split(X, y, train_size=1000, random_state=args.seed,
                                                  stratify=y)
    X_val, X_te, y_val, y_te = train_test_split(X_rest, y_rest, train_size=300,
                                                random_state=args.seed, stratify=y_rest)
    rng = np.random.default_rng(args.seed)
    flipped = rng.choice(len(y_tr), size=len(y_tr) // 10, replace=False)
    y_noisy = y_tr.copy()
    y_noisy[flipped] = (y_tr[flipped] + rng.integers(1, 10, len(flipped))) % 10

    torch.manual_seed(args.seed)
    model = {"logreg": lambda: logistic_regression(64, 10),
             "mlp": lambda: mlp(64, 10, hidden=(32,))}[args.model]()
    run = fit(model, (X_tr, y_noisy), epochs=args.epochs, batch_size=32, lr=0.1,
              weight_decay=1e-4, seed=args.seed, progress=True)
    scores = influence(run, (X_val, y_val), progress=True)
    order = np.argsort(scores)  # most harmful first

    def test_accuracy(m: torch.nn.Module) -> float:
        with torch.no_grad():
            return (m(torch.as_tensor(X_te)).argmax(1).numpy() == y_te).mean()

    k = len(flipped)
    is_flipped = np.isin(order, flipped)
    print(f"digits: {len(y_tr)} training images, {k} with a flipped label; {args.model}, "
          f"{run.num_steps} SGD steps")
    print("\nthe 10 most harmful training instances (removing them lowers validation loss most):")
    print(f"{'rank':>4} {'index':>6} {'score':>11} {'label':>6} {'true':>5}")
    for r, j in enumerate(order[:10]):
        mark = "  <- flipped" if j in flipped else ""
        print(f"{r + 1:4d} {j:6d} {scores[j]:11.3e} {y_noisy[j]:6d} {y_tr[j]:5d}{mark}")
    print(f"\nflipped labels among the {k} most harmful: {is_flipped[:k].sum()} "
          f"(precision {is_flipped[:k].mean():.0%}; random would find about 10%)")
    before, after = test_accuracy(run.model), test_accuracy(run.retrain(order[:k]))
    print(f"test accuracy: {before:.1%} as trained, {after:.1%} after removing the {k} most "
          f"harmful and retraining on the same schedule ({time.perf_counter() - start:.0f} s)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sgdinfluence", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help=demo.__doc__)
    p.add_argument("--model", choices=["logreg", "mlp"], default="mlp")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=demo)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    sys.exit(main())
