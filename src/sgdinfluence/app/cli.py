"""Command line: ``sgdinfluence cleanse``, ``sgdinfluence demo``, ``sgdinfluence experiment``.

This module registers the commands and their options, builds each one's configuration and
turns every expected failure into one line; the work is done by the modules it calls
(``cleanse`` and ``report``; ``experiments.*``, which share one shape: a config dataclass,
``run(cfg, out, ...) -> summary``, ``format_summary``, ``default_out``).
"""

from __future__ import annotations

import argparse
import importlib
import math
import re
import signal
import sys
import textwrap
import time
import warnings
from pathlib import Path

from .. import __version__
from ..errors import Error
from .output import check_output


def cleanse_command(args: argparse.Namespace) -> None:
    """Find the training instances that hurt the model, remove them, retrain, and report."""
    from . import report
    from .cleanse import DEFAULT_METHODS, CleanseConfig, cleanse, split
    from .data import cleaned_name, load_data, read_like

    out = Path(args.out if args.out is not None else f"out/cleanse-{Path(args.data).stem}")
    files = {role: Path(f) for role, f in (("validation file", args.val), ("target file",
                                                                          args.target))
             if isinstance(f, str)}
    inputs = _inputs(args.data, args.data_dir) + list(files.values())
    check_output(out, args.overwrite, inputs)
    methods = args.methods or DEFAULT_METHODS
    cfg = CleanseConfig(model=args.model, epochs=args.epochs, batch_size=args.batch_size,
                        lr=args.lr, weight_decay=args.weight_decay, seed=args.seed,
                        val=0.1 if isinstance(args.val, str) else args.val,
                        test=args.test, subset=args.subset, ks=args.k, methods=methods,
                        retrain=args.retrain or ("all" if args.target else "last"),
                        rounds=args.rounds, refine=args.refine, max_removed=args.max_removed,
                        max_trainings=args.max_trainings, augment=args.augment,
                        fresh_seeds=args.fresh_seeds, reliability=args.reliability,
                        device=args.device,
                        max_grad_norm=args.max_grad_norm, clip_grad_value=args.clip_grad_value,
                        **optimizer_options(args))
    start = time.perf_counter()
    tables = load_data(args.data, args.label_column, args.data_dir,
                       drop_columns=args.drop_columns, missing=args.missing,
                       max_bytes=args.max_bytes)
    reference = next(iter(tables.values()))
    source = reference.schema  # for the cleaned copy of the input
    extra = {role: read_like(path, reference, role=role, max_bytes=args.max_bytes)
             for role, path in files.items()}
    splits = split(tables, cfg, val=extra.get("validation file"),
                   target=extra.get("target file"))
    result = cleanse(splits, cfg, progress=not args.quiet)
    report.write(result, out, title=f"Cleansing {args.data}", overwrite=args.overwrite,
                 inputs=inputs, source=source)
    _warn(report.training_warning(result))
    if result.diagnosis:
        print(report.diagnosis_text(result))
    print(report.summary(result))
    if result.fresh:
        print(report.fresh_summary(result))
    cleaned = cleaned_name(source)
    print(f"wrote {out}/report.html, scores.csv, results.json, " +
          (f"{cleaned} (the input without the removed rows)" if cleaned else
           "no cleaned copy of a built-in dataset (scores.csv marks the removed instances)") +
          f" ({time.perf_counter() - start:.0f} s)")


def experiment_command(name: str, config_from_args):
    """The command running ``experiments.<name>`` with the configuration the options give."""
    def command(args: argparse.Namespace) -> None:
        module = importlib.import_module(f".experiments.{name}", __package__)
        cfg = config_from_args(args)
        out = Path(args.out if args.out is not None else module.default_out(cfg))
        data_dir = getattr(args, "data_dir", None)  # the demo reads none
        check_output(out, args.overwrite, _inputs(None, data_dir) if hasattr(args, "data_dir")
                     else ())
        start = time.perf_counter()
        summary = module.run(cfg, out, data_dir=data_dir, overwrite=args.overwrite,
                             progress=not args.quiet)
        _warn(summary.get("warning"))
        print(module.format_summary(summary))
        print(f"wrote {out}/ ({time.perf_counter() - start:.0f} s)")
    return command


def demo_config(args):
    from .experiments.demo import DemoConfig

    return DemoConfig(epochs=args.epochs, seed=args.seed)


def estimation_config(args):
    from .experiments.estimation import EstimationConfig

    return EstimationConfig(dataset=args.dataset, model=args.model, seeds=args.seeds,
                            lr=args.lr, **optimizer_options(args))


def cleansing_config(args):
    from .experiments.cleansing import CleansingConfig

    return CleansingConfig(dataset=args.dataset, seeds=args.seeds, subset=args.subset,
                           retrain=args.retrain, methods=args.methods, ks=args.k, lr=args.lr,
                           epochs=args.epochs, device=args.device, **optimizer_options(args))


def scenarios_config(args):
    from .experiments.scenarios import ScenariosConfig

    given = {"datasets": args.datasets, "scenarios": args.scenarios, "methods": args.methods,
             "seeds": args.seeds, "n_train": args.n_train, "epochs": args.epochs}
    return ScenariosConfig(**{k: v for k, v in given.items() if v is not None})


def noisy_labels_config(args):
    """``--quick`` first, then the options given."""
    from dataclasses import replace

    from .experiments.noisy_labels import QUICK, NoisyLabelsConfig

    given = {"datasets": args.datasets, "noise_rates": args.noise_rates, "models": args.models,
             "methods": args.methods, "n_train": args.n_train, "epochs": args.epochs,
             "lr": args.lr, "folds": args.folds, "seed": args.seed, "threads": args.threads,
             **optimizer_options(args)}
    return replace(QUICK if args.quick else NoisyLabelsConfig(),
                   **{k: v for k, v in given.items() if v is not None})


def optimizer_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default="sgd",
                   help="update rule, exactly as torch.optim's; sgd is the paper's")
    p.add_argument("--momentum", type=float, default=0.0, help="sgd's momentum")
    p.add_argument("--nesterov", action="store_true", help="sgd with Nesterov momentum")


def device_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="cpu, cuda or cuda:N (default: auto, the "
                   "GPU when torch sees one)")


def optimizer_options(args: argparse.Namespace) -> dict:
    return {"optimizer": args.optimizer, "momentum": args.momentum, "nesterov": args.nesterov}


def _warn(warning: str | None) -> None:
    if warning:
        print(_one_line_warning(warning), end="", file=sys.stderr)


def _one_line_warning(message, *args, **kwargs) -> str:
    """A warning as the command line shows it (``warnings.formatwarning``'s signature): one
    line, without the source line and its location."""
    return f"sgdinfluence: warning: {' '.join(str(message).split())}\n"


def _inputs(data: str | None, root: str | None) -> list[Path]:
    """What a command reads, which its output must keep clear of: the data path, or the
    data directory for the built-in datasets (``data`` None: an experiment's)."""
    from .data import DATASETS, data_dir

    if data is None or data in DATASETS:
        return [data_dir(root)] if data is None or DATASETS[data].download else []
    return [Path(data)]


SEED_MAX = 2**32 - 1  # numpy's seeds end here


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
        return methods.check((m.strip() for m in text.split(",")), auto=True)
    except Error as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def rounds_arg(text: str) -> int | str:
    """``auto`` or a number of rounds >= 1."""
    return "auto" if text.strip() == "auto" else positive_int(text)


def natural(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def seed(text: str) -> int:
    """A random seed: numpy's range, [0, 2**32 - 1]."""
    value = natural(text)
    if value > SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be at most {SEED_MAX} (2**32 - 1), got {value}")
    return value


def out_path(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a directory, got an empty path")
    return text


def positive_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def fraction_count_or_file(text: str) -> float | str:
    """A number as :func:`fraction_or_count`; anything else is taken as a file's path."""
    try:
        float(text)
    except ValueError:
        return text
    return fraction_or_count(text)


def fraction_or_count(text: str) -> float | int:
    """A fraction in (0, 1), or a count written as an integer: 1.0 is no count of 1."""
    if re.fullmatch(r"\s*\+?\d+\s*", text) and int(text) >= 1:
        return int(text)
    value = float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(
            f"{text} is a fraction of all the data{' or more' if value > 1 else ''}, not "
            "allowed; use a count or a fraction below 1")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1) or a count, got {text}")
    return value


class Help(argparse.HelpFormatter):
    """Every option shows its default: "(default: X)" is appended to a help text that does not
    state its default itself (a flag's is off; a default of None, "chosen for you", must say
    in its help what decides it). Descriptions keep their line breaks: a line that starts
    with spaces ("  name  what it is") wraps under its text, as argparse's option list does."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or action.default in (None, argparse.SUPPRESS) or
                isinstance(action.default, bool) or action.required or not action.option_strings):
            return text
        return f"{text} (default: {shown(action.default).replace('%', '%%')})"

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines = []
        for line in text.splitlines():
            name = re.match(r"\s+\S+\s{2,}", line)  # an entry of a list: hang under its text
            hang = " " * (len(name.group()) if name else 0)
            lines += textwrap.wrap(line, width, initial_indent=indent, break_on_hyphens=False,
                                   subsequent_indent=indent + hang) or [""]
        return "\n".join(lines)

    def _split_lines(self, text: str, width: int) -> list[str]:
        """As argparse's, without breaking a name such as sgd-last or --target at a hyphen."""
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def shown(default) -> str:
    """A default as the command line would take it: a tuple comma-separated."""
    if isinstance(default, (tuple, list)):
        return ",".join(map(str, default)) or "none"
    return str(default)


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad option in one line (with where to find help), and shows
    every option's default (:class:`Help`)."""

    def __init__(self, *args, formatter_class=None, **kwargs):
        super().__init__(*args, formatter_class=formatter_class or Help, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def words(text: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in text.split(",") if w.strip())


def fractions(text: str) -> tuple[float, ...]:
    return tuple(float(w) for w in words(text))


def parser() -> Parser:
    """Every command and its options."""
    from .cleanse import AUGMENTS, DEFAULT_METHODS
    from .data import DATASETS, MAX_BYTES, MISSING
    from .experiments.estimation import DATASETS as ESTIMATION_DATASETS
    from .experiments.noisy_labels import METHODS as NOISY_METHODS
    from .experiments.scenarios import METHODS as SCENARIO_METHODS
    from .experiments.scenarios import NOT_FOR_CNN
    from .methods import METHODS
    from .models import MODELS

    top = Parser(prog="sgdinfluence", description=(
        "Find the training instances that hurt a model trained with SGD (SGD-influence, Hara "
        "et al. 2019), remove them, retrain, and report."),
        epilog="start with:\n  sgdinfluence demo\n  sgdinfluence cleanse data.csv "
               "--label-column label\nand see sgdinfluence <command> --help")
    top.add_argument("--debug", action="store_true",
                     help="show the traceback of a failure, not only its message")
    top.add_argument("--version", action="version", version=f"sgdinfluence {__version__}")
    sub = top.add_subparsers(dest="command", required=True, parser_class=Parser)

    def command(parent, name: str, fn, help: str, out: str | None = None,
                data_dir: str | None = None, replace_own: bool = False, description: str = ""):
        """A command with the options every command shares, declared once here.
        ``replace_own``: a previous result of this command is replaced without asking."""
        help = help.replace("%", "%%")  # argparse formats help strings with %
        p = parent.add_parser(name, help=help, description=help + description)
        p.set_defaults(func=fn)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the traceback of a failure, not only its message")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        if out is not None:
            p.add_argument("--out", type=out_path, default=None,
                           help=f"output directory (default: {out})")
        if replace_own:
            p.set_defaults(overwrite=name)  # a previous result of this command, no other
        elif out is not None:
            p.add_argument("--overwrite", action="store_true",
                           help="replace the output directory if it holds a previous result "
                                "(never a directory holding anything else)")
        if data_dir is not None:
            p.add_argument("--data-dir", default=None,
                           help=f"holds {data_dir}, each downloaded there when missing "
                                "(default: $SGDINFLUENCE_DATA, else ~/.cache/sgdinfluence)")
        return p

    files = [name for name, d in DATASETS.items() if d.download]
    width = max(map(len, DATASETS)) + 2
    p = command(sub, "cleanse", cleanse_command, cleanse_command.__doc__,
                out="out/cleanse-<data>",
                data_dir=f"the files of the built-in datasets {', '.join(files)}",
                description=(" DATA is a built-in dataset or a path to a CSV file, an .npz file "
                             "(X, y) or an image folder (<split>/<class>/<file>, or a tar "
                             "archive of one).\n\nbuilt-in datasets:\n" + "\n".join(
                                 f"  {name:<{width}}{d.about}" + ("" if d.download else
                                                                " (no download)")
                                 for name, d in DATASETS.items())))
    p.add_argument("data", metavar="DATA", help="a built-in dataset's name (listed above) or a "
                   "path to a CSV file, an .npz file or an image folder")
    p.add_argument("--label-column", help="the CSV column that holds the labels (default: none; "
                   "required for a CSV file, unused otherwise: an .npz file's labels are its y, "
                   "an image folder's its class folders)")
    p.add_argument("--drop-columns", type=words, default=(),
                   help="comma-separated CSV columns not to use as features, such as "
                        "identifiers")
    p.add_argument("--missing", choices=MISSING, default="refuse",
                   help="a CSV file's empty cells: refuse (name the rows), drop those rows, or "
                        "impute (numbers: the column's median over the whole file; text: a "
                        "category '(missing)'); a missing label is never imputed")
    p.add_argument("--max-bytes", type=positive_int, default=MAX_BYTES,
                   help="the most bytes an input file may expand to once decompressed (a CSV "
                        "file, an .npz file's arrays, a tar archive's members); a larger one "
                        f"is refused (default: {MAX_BYTES} bytes, {MAX_BYTES >> 30} GiB)")
    p.add_argument("--model", choices=["auto", *MODELS], default="auto",
                   help="the network; auto picks the CIFAR-10 CNN for colour images of side "
                        "8n, the MNIST CNN for other square images of side 16 or more, else an "
                        "MLP")
    p.add_argument("--epochs", type=positive_int, default=20,
                   help="passes of SGD over the training data")
    p.add_argument("--batch-size", type=positive_int, default=64,
                   help="training instances per SGD step, at most the training set")
    p.add_argument("--lr", type=positive_float, default=0.05,
                   help="the learning rate, the same at every step")
    p.add_argument("--weight-decay", type=float, default=0.0,
                   help="L2 penalty: the loss gains weight_decay/2 times the squared norm of "
                        "the parameters")
    p.add_argument("--seed", type=seed, default=0,
                   help="seeds the validation / test split, the subset, the initialisation and "
                        "the order of the mini-batches")
    p.add_argument("--val", type=fraction_count_or_file, default=0.1,
                   help="validation share of the training data: a fraction or a count; or a "
                        "file of validation data in DATA's format")
    p.add_argument("--target", metavar="FILE",
                   help="examples where the model must work (in DATA's format): half is the "
                   "influence query, half measures the target error that, with the "
                   "validation error, chooses k (default: none; the validation set is the "
                   "query)")
    p.add_argument("--test", type=fraction_or_count, default=0.2,
                   help="test share, a fraction or a count, for data that has no test split "
                        "of its own")
    p.add_argument("--subset", type=positive_int,
                   help="train on this many instances, drawn at random, and validate and test "
                        "on at most as many (default: all)")
    p.add_argument("--k", type=int_list, help="numbers to remove, e.g. 10,30,100 "
                   "(default: the paper's 1,3,6,10,...,10000 up to half the training set)")
    p.add_argument("--methods", type=method_list, default=None,
                   help=f"comma-separated, of auto,{','.join(METHODS)} (default: "
                   f"{','.join(DEFAULT_METHODS)}; auto: the method the data calls for, "
                   "training-loss for label noise, sgd-epochs for a target-specific failure, "
                   "else sgd; the report says why)")
    p.add_argument("--retrain", choices=["last", "all", "fresh"], default=None,
                   help="after removing the k most harmful, retrain the last epoch only "
                   "(fast), or all epochs (default: last; all with --target: a failure learned "
                   "early outlives a last epoch); fresh (with --target): measure each round on "
                   "a new training of the kept rows with a new seed")
    p.add_argument("--rounds", type=rounds_arg, default=None,
                   help="with --target: repair in rounds, each ranking a new training of the "
                   "rows kept, until the target's held-out error is no longer significantly "
                   "above the validation error or a budget is spent (auto, the default with "
                   "--target unless --retrain last), or at most N rounds; without --target "
                   "only 1")
    p.add_argument("--max-removed", type=positive_int, default=None,
                   help="the most rows all rounds may remove (default: the largest k, at "
                   "least a fifth of the training set)")
    p.add_argument("--max-trainings", type=positive_int, default=60,
                   help="the most retrainings and new trainings all rounds may take "
                   "(default 60)")
    p.add_argument("--no-refine", dest="refine", action="store_false",
                   help="keep the grid's k; by default k is refined by bisection between the "
                   "chosen k and the one below it")
    p.add_argument("--augment", choices=AUGMENTS, default="auto",
                   help="random crops of the training images (padded by 2 pixels, 4 for colour), "
                        "and left-right flips; auto: crops for a CNN, plus flips for colour "
                        "images, none for logreg and the MLP")
    p.add_argument("--reliability", type=natural, default=8,
                   help="check what the sgd scores mean: leave this many instances out "
                        "literally, half the most harmful and half the most helpful, and "
                        "compare; 0: no check")
    p.add_argument("--fresh-seeds", type=natural, default=0,
                   help="also train afresh with this many new seeds, with all the data and "
                        "without the removed instances: does the gain carry over?")
    optimizer_arguments(p)
    p.add_argument("--max-grad-norm", type=float, default=None,
                   help="clip each step's gradient to this norm, as torch.nn.utils."
                   "clip_grad_norm_ (default: no clipping; not with sgd/adam weight decay)")
    p.add_argument("--clip-grad-value", type=float, default=None,
                   help="clip each entry of each step's gradient to ± this, as torch.nn.utils."
                   "clip_grad_value_ (default: no clipping)")
    device_argument(p)

    p = command(sub, "demo", experiment_command("demo", demo_config),
                "Digits with 10% of the training labels flipped: does SGD-influence find them?",
                out="out/demo; a previous demo's is replaced", replace_own=True)
    p.add_argument("--epochs", type=positive_int, default=20,
                   help="passes of SGD over the training data")
    p.add_argument("--seed", type=seed, default=0,
                   help="seeds the split, the flipped labels, the initialisation and the "
                        "order of the mini-batches")

    exps = sub.add_parser("experiment", help="reproduce the paper's experiments, and benchmarks",
                          description="Reproduce the paper's experiments, and benchmarks.")
    exps = exps.add_subparsers(dest="experiment", required=True, parser_class=Parser)
    p = command(exps, "estimation", experiment_command("estimation", estimation_config),
                "The paper's Sec 7.1: estimated vs true leave-one-out change of validation "
                "loss.", out="out/estimation-<dataset>-<model>",
                data_dir="adult/, 20newsgroups/, mnist/")
    p.add_argument("--dataset", choices=ESTIMATION_DATASETS, required=True,
                   help="the paper's data (required)")
    p.add_argument("--model", choices=["logreg", "mlp"], required=True,
                   help="the paper's two models (required)")
    p.add_argument("--seeds", type=positive_int, default=30,
                   help="draws of 200 training and 200 validation instances, one run each; "
                        "the paper's 30")
    p.add_argument("--lr", type=positive_float,
                   help="the initial learning rate (default: the paper's: logreg 0.1, 0.01 on "
                        "20news, decayed as lr/sqrt(t+1); mlp 0.1)")
    optimizer_arguments(p)

    p = command(exps, "cleansing", experiment_command("cleansing", cleansing_config),
                "The paper's Sec 7.2: test error after removing the k most harmful, MNIST / "
                "CIFAR-10.", out="out/cleansing-<dataset>", data_dir="mnist/, cifar10-jpeg/")
    p.add_argument("--dataset", choices=["mnist", "cifar10"], required=True,
                   help="the paper's data (required)")
    p.add_argument("--seeds", type=positive_int, default=1,
                   help="runs with seeds 0, 1, ...; results.json holds their mean curves")
    p.add_argument("--subset", type=positive_int,
                   help="train on this many of the 50,000 / 40,000 instances (quick runs; "
                        "default: all)")
    p.add_argument("--retrain", choices=["last", "all"], default="last",
                   help="after removing the k most harmful, retrain the last epoch only, or all "
                        "epochs")
    p.add_argument("--methods", type=method_list, default=("sgd", "sgd-last", "random"),
                   help="comma-separated, as cleanse's --methods")
    p.add_argument("--k", type=int_list, help="numbers to remove, e.g. 10,30,100 (default: the "
                   "paper's 1,3,6,10,...,10000 up to a fifth of the training set)")
    p.add_argument("--lr", type=positive_float, help="the learning rate (default: the paper's "
                   "0.05)")
    p.add_argument("--epochs", type=positive_int, help="passes over the training data "
                   "(default: the paper's 20)")
    optimizer_arguments(p)
    device_argument(p)

    p = command(exps, "scenarios", experiment_command("scenarios", scenarios_config),
                "Five ways training data makes a model fail (label noise, systematic noise, a "
                "backdoor, a shortcut, junk) and which method finds and removes it.",
                out="out/scenarios", data_dir="mnist/, fashion-mnist/, adult/")
    p.add_argument("--datasets", type=words, default=None,
                   help="comma-separated, of mnist,fashion-mnist,adult (default: all)")
    p.add_argument("--scenarios", type=words, default=None, help="comma-separated, of "
                   "symmetric,systematic,backdoor,shortcut,ood (default: all)")
    p.add_argument("--methods", type=method_list, default=None,
                   help="comma-separated, as cleanse's --methods (default: "
                        f"{','.join(SCENARIO_METHODS)}; the CNN runs all but "
                        f"{','.join(NOT_FOR_CNN)})")
    p.add_argument("--seeds", type=positive_int, default=None,
                   help="runs per dataset and scenario (default: 1)")
    p.add_argument("--n-train", type=positive_int, default=None,
                   help="training instances (default: 3000)")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="passes over the training data (default: 8 for the CNN on mnist and "
                        "fashion-mnist, 20 for the MLP on adult)")

    p = command(exps, "noisy-labels", experiment_command("noisy_labels", noisy_labels_config),
                "Mislabeled-example detection: SGD-influence vs cleanlab, TracIn, influence "
                "functions (needs the bench extra: cleanlab).",
                out="out/noisy-labels, or out/noisy-labels-quick",
                data_dir="mnist/, fashion-mnist/, adult/")
    p.add_argument("--datasets", type=words, default=None,
                   help="comma-separated, of digits,mnist,fashion-mnist,adult (default: all)")
    p.add_argument("--noise-rates", type=fractions, default=None,
                   help="comma-separated fractions of flipped training labels, each in (0, 1) "
                        "(default: 0.1,0.2)")
    p.add_argument("--models", type=words, default=None,
                   help="comma-separated (default: logreg,mlp,mnist-cnn); each dataset runs the "
                        "ones it takes: logreg, mlp (digits, adult), mnist-cnn (mnist, "
                        "fashion-mnist)")
    p.add_argument("--methods", type=words, default=None,
                   help=f"comma-separated, of {','.join(NOISY_METHODS)} (default: all)")
    p.add_argument("--n-train", type=int, default=None,
                   help="training instances (default: 1000 for digits, 10000 otherwise; 300 "
                        "with --quick)")
    p.add_argument("--epochs", type=int, default=None,
                   help="passes over the training data (default: 20 for digits, 5 for "
                        "mnist-cnn, 10 otherwise; 10 with --quick)")
    p.add_argument("--lr", type=float, default=None,
                   help="the learning rate (default: 0.2 for digits, 0.05 otherwise)")
    p.add_argument("--folds", type=int, default=None,
                   help="cleanlab's cross-validation folds (default: 5; 3 with --quick)")
    optimizer_arguments(p)
    p.add_argument("--seed", type=seed, default=None,
                   help="seeds the data, the flipped labels and the training (default: 0)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads; on a shared machine more spin against other jobs")
    p.add_argument("--quick", action="store_true",
                   help="a tiny digits run (300 training images, 10 epochs) to try it out")
    return top


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status. An expected failure (bad data or
    options, diverging training, an output that must not or cannot be written, Ctrl-C) is one
    line on stderr and a non-zero status; ``--debug`` shows its traceback instead. A warning
    is one line too (``--debug``: Python's, with its source line)."""
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # killed: clean up as for Ctrl-C
    formatted = warnings.formatwarning
    if not args.debug:
        warnings.formatwarning = _one_line_warning
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
    finally:
        warnings.formatwarning = formatted
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


FLAGS = {"overwrite=True": "--overwrite", "label_column": "--label-column", "lr": "--lr",
         "rounds": "--rounds", "retrain='fresh'": "--retrain fresh",
         "retrain='last'": "--retrain last",
         "data_dir": "--data-dir", "drop_columns": "--drop-columns",
         "missing='drop'": "--missing drop", "missing='impute'": "--missing impute",
         "max_bytes": "--max-bytes"}


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
