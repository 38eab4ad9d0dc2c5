"""Command line: ``sgdinfluence demo`` and ``sgdinfluence experiment estimation``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

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


def estimation(args: argparse.Namespace) -> None:
    """The paper's Sec 7.1: estimated vs true leave-one-out change of validation loss."""
    from .experiments.estimation import EstimationConfig, format_table, run_estimation

    if args.seeds < 1:
        raise SystemExit(f"error: --seeds must be >= 1, got {args.seeds}")
    cfg = EstimationConfig(dataset=args.dataset, model=args.model, seeds=args.seeds)
    out = Path(args.out or f"out/estimation-{args.dataset}-{args.model}")
    start = time.perf_counter()
    summary = run_estimation(cfg, out, data_dir=args.data_dir, overwrite=args.overwrite,
                             progress=not args.quiet)
    print(format_table(summary, cfg, args.seeds))
    print(f"wrote {out}/results.csv, results.json, scatter.png "
          f"({time.perf_counter() - start:.0f} s)")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> None:
    from .data import DATASETS

    parser = argparse.ArgumentParser(prog="sgdinfluence", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help=demo.__doc__)
    p.add_argument("--model", choices=["logreg", "mlp"], default="mlp")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=demo)

    exp = sub.add_parser("experiment", help="reproduce the paper's experiments")
    exps = exp.add_subparsers(dest="experiment", required=True)
    p = exps.add_parser("estimation", help=estimation.__doc__)
    p.add_argument("--dataset", choices=sorted(DATASETS), required=True)
    p.add_argument("--model", choices=["logreg", "mlp"], required=True)
    p.add_argument("--seeds", type=positive_int, default=30)
    p.add_argument("--data-dir", default=None,
                   help="holds adult/, 20newsgroups/, mnist/ (default $SGDINFLUENCE_DATA)")
    p.add_argument("--out", default=None, help="output directory (default out/estimation-...)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=estimation)

    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        raise SystemExit(f"error: {e}") from e


if __name__ == "__main__":
    sys.exit(main())
