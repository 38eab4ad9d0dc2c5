"""Command line: ``sgdinfluence cleanse``, ``sgdinfluence demo`` and ``sgdinfluence experiment``."""

from __future__ import annotations

import argparse
import math
import re
import signal
import sys
import time
from pathlib import Path

import numpy as np

from ._output import check_output
from .errors import Error


def cleanse_command(args: argparse.Namespace) -> None:
    """Find the training instances that hurt the model, remove them, retrain, and report."""
    from . import report
    from .cleanse import CleanseConfig, cleanse, split
    from .data.files import load_data

    out = Path(args.out or f"out/cleanse-{Path(args.data).stem}")
    check_output(out, args.overwrite, inputs=_inputs(args.data, args.data_dir))
    cfg = CleanseConfig(model=args.model, epochs=args.epochs, batch_size=args.batch_size,
                        lr=args.lr, weight_decay=args.weight_decay, seed=args.seed, val=args.val,
                        test=args.test, subset=args.subset, ks=args.k, methods=args.methods,
                        retrain=args.retrain, augment=args.augment)
    start = time.perf_counter()
    splits = split(load_data(args.data, args.label_column, args.data_dir), cfg)
    result = cleanse(splits, cfg, progress=not args.quiet)
    report.write(result, out, title=f"Cleansing {args.data}", overwrite=args.overwrite,
                 inputs=_inputs(args.data, args.data_dir))
    _warn_training(result)
    print(report.summary(result))
    print(f"wrote {out}/report.html, scores.csv, results.json "
          f"({time.perf_counter() - start:.0f} s)")


def demo(args: argparse.Namespace) -> None:
    """Digits with 10% of the training labels flipped: does SGD-influence find them?"""
    from . import report
    from .cleanse import CleanseConfig, cleanse, split
    from .data.files import digits, flip_labels

    check_output(args.out, overwrite=True)  # a previous demo's output only
    start = time.perf_counter()
    cfg = CleanseConfig(model="mlp", epochs=args.epochs, batch_size=32, lr=0.1,
                        weight_decay=1e-4, seed=args.seed, val=0.15, test=0.2,
                        methods=("sgd", "sgd-last", "training-loss", "random"),
                        ks=(30, 60, 120), retrain="all")
    splits = split(digits(), cfg)
    train = splits.train
    true = train.y.copy()
    train.y, flipped = flip_labels(true, 0.1, 10, np.random.default_rng(args.seed))
    train.notes = np.where(np.isin(np.arange(len(true)), flipped),
                           np.char.add("flipped; true label ", true.astype(str)), "")
    result = cleanse(splits, cfg, progress=not args.quiet)

    m = len(flipped)
    order = result.order("sgd")
    found = np.isin(order[:m], flipped)
    print(f"digits: {len(train.y)} training images, {m} with a flipped label; MLP, "
          f"{result.run.num_steps} SGD steps")
    print("\nthe 10 most harmful training instances (removing them lowers validation loss most):")
    print(f"{'rank':>4} {'index':>6} {'score':>11} {'label':>6} {'true':>5}")
    for r, j in enumerate(order[:10]):
        mark = "  <- flipped" if j in flipped else ""
        print(f"{r + 1:4d} {train.index[j]:6d} {result.scores['sgd'][j]:11.3e} "
              f"{train.y[j]:6d} {true[j]:5d}{mark}")
    by_method = ", ".join(f"{name} {np.isin(result.order(meth)[:m], flipped).sum()}"
                          for meth, name in (("sgd-last", "SGD-influence last epoch"),
                                             ("training-loss", "highest training loss"),
                                             ("random", "random")))
    notes = [f"{m} of the {len(train.y)} training labels were flipped at random. Among the "
             f"{m} instances SGD-influence flags as most harmful, {found.sum()} are flipped "
             f"(precision {found.mean():.0%}; random flagging finds about 10%). The same count "
             f"for the other methods: {by_method}."]
    print(f"\nflipped labels among the {m} most harmful: {found.sum()} (precision "
          f"{found.mean():.0%}; random would find about 10%); {by_method}")
    before, after = result.curves["sgd"][0][1], result.curves["sgd"][120][1]
    print(f"test accuracy: {1 - before:.1%} as trained, {1 - after:.1%} after removing the 120 "
          "most harmful and retraining on the same schedule")
    out = report.write(result, args.out, title="sgdinfluence demo: digits with flipped labels",
                       notes=notes, overwrite=True)
    _warn_training(result)
    print(report.summary(result))
    print(f"wrote {out}/report.html ({time.perf_counter() - start:.0f} s)")


def estimation(args: argparse.Namespace) -> None:
    """The paper's Sec 7.1: estimated vs true leave-one-out change of validation loss."""
    from .experiments.estimation import EstimationConfig, format_table, run_estimation

    cfg = EstimationConfig(dataset=args.dataset, model=args.model, seeds=args.seeds)
    out = Path(args.out or f"out/estimation-{args.dataset}-{args.model}")
    check_output(out, args.overwrite, inputs=_inputs(None, args.data_dir))
    start = time.perf_counter()
    summary = run_estimation(cfg, out, data_dir=args.data_dir, overwrite=args.overwrite,
                             progress=not args.quiet)
    print(format_table(summary, cfg, args.seeds))
    print(f"wrote {out}/results.csv, results.json, scatter.png "
          f"({time.perf_counter() - start:.0f} s)")


def cleansing(args: argparse.Namespace) -> None:
    """The paper's Sec 7.2: test error after removing the k most harmful, MNIST / CIFAR-10."""
    from .experiments.cleansing import format_table, run_cleansing

    out = Path(args.out or f"out/cleansing-{args.dataset}")
    check_output(out, args.overwrite, inputs=_inputs(None, args.data_dir))
    start = time.perf_counter()
    summary = run_cleansing(args.dataset, out, seeds=args.seeds, subset=args.subset,
                            retrain=args.retrain, methods=args.methods, ks=args.k,
                            lr=args.lr, epochs=args.epochs, data_dir=args.data_dir,
                            overwrite=args.overwrite, progress=not args.quiet)
    print(format_table(summary))
    print(f"wrote {out}/ ({time.perf_counter() - start:.0f} s)")


def noisy_labels(args: argparse.Namespace) -> None:
    """Mislabeled-example detection: SGD-influence vs cleanlab, TracIn, influence functions."""
    from .experiments.noisy_labels import main as run_from_args

    run_from_args(args)  # validates, runs, prints the table and the output path


def _inputs(data: str | None, root: str | None) -> list[Path]:
    """What a command reads, which its output must keep clear of: the data path, or the
    data directory for the built-in datasets (``data`` None: an experiment's)."""
    from .data import data_dir
    from .data.files import BUILTIN

    if data is None or data in BUILTIN:
        return [data_dir(root)] if data != "digits" else []
    return [Path(data)]


def _warn_training(result) -> None:
    from .report import training_warning

    warning = training_warning(result)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") \
            from None
    if min(values) < 1:
        raise argparse.ArgumentTypeError(f"every k must be >= 1, got {text!r}")
    return values


def method_list(text: str) -> tuple[str, ...]:
    from . import methods

    try:
        return methods.check(m.strip() for m in text.split(","))
    except Error as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def positive_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def fraction_or_count(text: str) -> float:
    value = float(text)
    if not (0 < value < 1 or (value >= 1 and value.is_integer())):
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1) or a count, got {text}")
    return value


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad option in one line (with where to find help)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _help(fn) -> str:
    return fn.__doc__.replace("%", "%%")  # argparse formats help strings with %


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status. An expected failure (bad data or
    options, diverging training, an output that must not or cannot be written, Ctrl-C) is one
    line on stderr and a non-zero status; ``--debug`` shows its traceback instead."""
    from .cleanse import AUGMENTS
    from .data import DATASETS
    from .methods import METHODS
    from .models import MODELS

    parser = Parser(prog="sgdinfluence", description=__doc__)
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of a failure, not only its message")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    def command(parent, name: str, fn, description: str = "", out: str | None = None,
                data_dir: str | None = None):
        """A subcommand with the options every command shares, declared once here."""
        p = parent.add_parser(name, help=_help(fn), description=_help(fn) + description)
        p.set_defaults(func=fn)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the traceback of a failure, not only its message")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        if out is not None:
            p.add_argument("--out", default=None, help=f"output directory (default {out})")
            p.add_argument("--overwrite", action="store_true",
                           help="replace the output directory if it holds a previous result "
                                "(never a directory holding anything else)")
        if data_dir is not None:
            p.add_argument("--data-dir", default=None,
                           help=f"holds {data_dir} (default $SGDINFLUENCE_DATA)")
        return p

    p = command(sub, "cleanse", cleanse_command, out="out/cleanse-<data>",
                data_dir="mnist/, fashion-mnist/, cifar10-jpeg/", description=(
                    " DATA is a built-in dataset (digits, mnist, fashion-mnist, cifar10) or a "
                    "path to a CSV file, an .npz file (X, y) or an image folder "
                    "(<split>/<class>/<file>, or a tar archive of one)."))
    p.add_argument("data", metavar="DATA")
    p.add_argument("--label-column", help="the CSV column that holds the labels")
    p.add_argument("--model", choices=["auto", *MODELS], default="auto",
                   help="auto: the MNIST CNN for grey images, the CIFAR-10 CNN for colour "
                        "images of side 8n, else an MLP")
    p.add_argument("--epochs", type=positive_int, default=20)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--lr", type=positive_float, default=0.05)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val", type=fraction_or_count, default=0.1,
                   help="validation share of the training data: fraction or count (0.1)")
    p.add_argument("--test", type=fraction_or_count, default=0.2,
                   help="test share, for data without a test split (0.2)")
    p.add_argument("--subset", type=positive_int, help="train on this many instances only")
    p.add_argument("--k", type=int_list, help="numbers to remove, e.g. 10,30,100 "
                   "(default: the paper's 1,3,6,10,...,10000 up to half the training set)")
    p.add_argument("--methods", type=method_list, default=("sgd", "sgd-last", "random"),
                   help=f"comma-separated, of {','.join(METHODS)} (default sgd,sgd-last,random)")
    p.add_argument("--retrain", choices=["last", "all"], default="last",
                   help="retrain the last epoch only (fast), or all epochs")
    p.add_argument("--augment", choices=AUGMENTS, default="auto")

    p = command(sub, "demo", demo)
    p.add_argument("--epochs", type=positive_int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="out/demo",
                   help="report directory (default out/demo; a previous demo's is replaced)")

    exp = sub.add_parser("experiment", help="reproduce the paper's experiments")
    exps = exp.add_subparsers(dest="experiment", required=True, parser_class=Parser)
    p = command(exps, "estimation", estimation, out="out/estimation-<dataset>-<model>",
                data_dir="adult/, 20newsgroups/, mnist/")
    p.add_argument("--dataset", choices=sorted(DATASETS), required=True)
    p.add_argument("--model", choices=["logreg", "mlp"], required=True)
    p.add_argument("--seeds", type=positive_int, default=30)

    p = command(exps, "cleansing", cleansing, out="out/cleansing-<dataset>",
                data_dir="mnist/, cifar10-jpeg/")
    p.add_argument("--dataset", choices=["mnist", "cifar10"], required=True)
    p.add_argument("--seeds", type=positive_int, default=1)
    p.add_argument("--subset", type=positive_int,
                   help="train on this many of the 50,000 / 40,000 instances (quick runs)")
    p.add_argument("--retrain", choices=["last", "all"], default="last")
    p.add_argument("--methods", type=method_list, default=("sgd", "sgd-last", "random"))
    p.add_argument("--k", type=int_list, help="default: the paper's list")
    p.add_argument("--lr", type=positive_float, help="instead of the paper's 0.05")
    p.add_argument("--epochs", type=positive_int, help="instead of the paper's 20")

    from .experiments.noisy_labels import add_arguments as noisy_labels_arguments

    p = command(exps, "noisy-labels", noisy_labels, out="out/noisy-labels",
                data_dir="mnist/, fashion-mnist/, adult/")
    noisy_labels_arguments(p)

    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # killed: clean up as for Ctrl-C
    try:
        args.func(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("sgdinfluence: interrupted; no output was written", file=sys.stderr)
        return 130
    except (Error, OSError, ImportError) as e:  # expected: the message names the fix
        if args.debug:
            raise
        print(f"sgdinfluence: error: {_for_the_command_line(e)}", file=sys.stderr)
        return 1
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


FLAGS = {"overwrite=True": "--overwrite", "label_column": "--label-column",
         "data_dir": "--data-dir"}


def _for_the_command_line(e: BaseException) -> str:
    """The exception's message on one line, with the library's argument names as flags."""
    text = " ".join(str(e).split())
    if isinstance(e, OSError) and e.filename:
        text = f"{e.strerror or text}: {e.filename}"
    for name, flag in FLAGS.items():
        text = re.sub(rf"(?<![\w/.]){re.escape(name)}(?![\w/.])", flag, text)
    return text


if __name__ == "__main__":
    sys.exit(main())
