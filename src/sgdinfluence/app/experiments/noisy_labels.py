"""Mislabeled-example detection: SGD-influence against what users would pick instead.

On scikit-learn digits, 10,000-image subsets of MNIST and Fashion-MNIST, and a subset of
UCI Adult, flip a fraction of the training labels (seeded, symmetric: a flipped label becomes
a uniformly random *other* class; validation and test labels stay clean), train each model
class once with SGD, score every training instance by each method (lower = more suspicious),
and report per dataset x noise rate x model x method:

- AUROC and average precision of detecting the flipped labels (suspicion = -score),
- precision among the top m, m = the number of flipped labels,
- test accuracy before and after removing the top m and retraining on the identical schedule
  (``run.retrain(exclude=order[:m])``, from epoch 0), and the validation loss (the influence
  methods' query) before and after, which tells a wrong target from a wrong estimate,
- the wall time of each method. The influence methods and the training loss also need the
  recorded training run, timed once as ``fit_seconds``; cleanlab's time includes its k-fold
  cross-validated training (it needs no recorded run, only the same model class).

cleanlab (``pip install sgdinfluence[bench]``) ranks by ``cleanlab.rank.
get_label_quality_scores`` of out-of-fold predicted probabilities; ``cleanlab-find`` removes
the set ``cleanlab.filter.find_label_issues`` returns (its own size, not m) from the same
probabilities, which is what a cleanlab user would do.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score
from tqdm.auto import tqdm

from ...core import metrics
from ...core.train import fit
from ...errors import ConfigError
from ..data import load
from ..data.files import flip_labels
from ..methods import INFLUENCE, cross_val_probs, require_cleanlab, score
from ..methods import METHODS as REGISTRY
from ..methods import check as check_methods
from ..models import build
from ..output import check_output, output_dir

DATASETS = ("digits", "mnist", "fashion-mnist", "adult")
#: the model classes each dataset is trained with; ``NoisyLabelsConfig.models`` selects
CANDIDATE_MODELS = {"digits": ("logreg", "mlp"), "adult": ("logreg", "mlp"),
                    "mnist": ("logreg", "mnist-cnn"), "fashion-mnist": ("logreg", "mnist-cnn")}
#: the registry's methods this benchmark ranks by, and cleanlab's two, which need k-fold
#: training of the model class rather than the recorded run
CLEANLAB = {
    "cleanlab": "cleanlab label-quality scores (self-confidence), k-fold probabilities",
    "cleanlab-find": "cleanlab find_label_issues: remove the set it returns",
}
METHODS = {**{m: REGISTRY[m].label for m in ("sgd", "sgd-last", "sgd-nohessian", "tracin",
                                             "tracin-self", "influence-function",
                                             "training-loss")},
           **CLEANLAB, "random": REGISTRY["random"].label}
@dataclass(frozen=True)
class NoisyLabelsConfig:
    """The benchmark's settings; saved in results.json.

    Every method of one (dataset, noise rate, model) sees the same noisy training set, the
    same model class and initialisation, and the same SGD settings (also in cleanlab's folds).
    """

    datasets: tuple[str, ...] = DATASETS
    noise_rates: tuple[float, ...] = (0.1, 0.2)
    models: tuple[str, ...] = ("logreg", "mlp", "mnist-cnn")  # run those a dataset lists
    methods: tuple[str, ...] = tuple(METHODS)
    n_train: int | None = None  # None: 1000 for digits, 10,000 for the others
    n_val: int | None = None  # None: 300 for digits, 1000 for the others (clean labels)
    n_test: int | None = None  # None: all (digits: the 497 left; official test sets)
    epochs: int | None = None  # None: 20 for digits, 5 for mnist-cnn, 10 otherwise
    batch_size: int = 64
    lr: float | None = None  # None: 0.2 for digits (0.05 underfits its 16 steps/epoch), 0.05
    weight_decay: float = 1e-4
    folds: int = 5  # cleanlab's cross-validation
    influence_function_models: tuple[str, ...] = ("logreg", "mlp")  # LiSSA too slow for the CNN
    seed: int = 0
    optimizer: str = "sgd"  # torch.optim's update rules, for every method's training
    momentum: float = 0.0
    nesterov: bool = False
    threads: int | None = None  # torch threads while running (None: leave torch's setting)

    def __post_init__(self) -> None:
        """Refuse bad settings with a ConfigError naming the field."""
        bad = [d for d in self.datasets if d not in DATASETS]
        if bad or not self.datasets:
            raise ConfigError(f"unknown dataset(s) {bad}; use some of {list(DATASETS)}")
        for r in self.noise_rates:
            if not (isinstance(r, (int, float)) and 0 < r < 1):
                raise ConfigError(f"noise rates must lie in (0, 1), got {r!r}")
        if not self.noise_rates:
            raise ConfigError("noise_rates is empty")
        known = {m for ms in CANDIDATE_MODELS.values() for m in ms}
        bad = [m for m in self.models if m not in known]
        if bad or not self.models:
            raise ConfigError(f"unknown model(s) {bad}; use some of {sorted(known)}")
        if not any(self.models_for(d) for d in self.datasets):
            raise ConfigError(f"none of the models {list(self.models)} applies to the datasets "
                             f"{list(self.datasets)} (they take {CANDIDATE_MODELS})")
        check_methods(self.methods, METHODS)
        for name in ("n_train", "n_val", "n_test"):
            v = getattr(self, name)
            if v is not None and v < 2:
                raise ConfigError(f"{name} must be None or >= 2, got {v}")
        for name in ("epochs", "batch_size", "threads"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError(f"{name} must be >= 1, got {v}")
        if self.folds < 2:
            raise ConfigError(f"folds must be >= 2, got {self.folds}")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be finite and > 0, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight_decay must be finite and >= 0, got {self.weight_decay}")

    def models_for(self, dataset: str) -> tuple[str, ...]:
        return tuple(m for m in CANDIDATE_MODELS[dataset] if m in self.models)

    def training(self, dataset: str, model: str) -> dict:
        """The SGD settings of ``fit`` for this dataset and model class (every method's)."""
        epochs = self.epochs or (20 if dataset == "digits" else 5 if model == "mnist-cnn" else 10)
        lr = self.lr or (0.2 if dataset == "digits" else 0.05)
        return {"epochs": epochs, "batch_size": self.batch_size, "lr": lr,
                "weight_decay": self.weight_decay, "seed": self.seed,
                "optimizer": self.optimizer, "momentum": self.momentum,
                "nesterov": self.nesterov}


QUICK = NoisyLabelsConfig(datasets=("digits",), noise_rates=(0.2,), models=("logreg", "mlp"),
                          n_train=300, n_val=200, n_test=300, epochs=10, folds=3)


# --- data ------------------------------------------------------------------------------------

Split = tuple[np.ndarray, np.ndarray]


def load_splits(name: str, cfg: NoisyLabelsConfig, data_dir=None) -> dict[str, Split]:
    """{"train", "val", "test"}: (X float32, y int64) with clean labels.

    The registry's datasets (digits: (n, 1, 8, 8) images, a seeded split into train / val /
    test (the rest); mnist, fashion-mnist: (n, 1, 28, 28), train and val drawn (seeded,
    disjoint) from the official training set, test from the official test set; adult:
    standardised one-hot features, train and val drawn from adult.data, test from adult.test).
    """
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; use one of {list(DATASETS)}")
    rng = np.random.default_rng(cfg.seed)
    n_train = cfg.n_train or (1000 if name == "digits" else 10_000)
    n_val = cfg.n_val or (300 if name == "digits" else 1000)
    tables = load(name, data_dir)
    pool = tables.get("train", tables.get("all"))
    X, y = pool.X, pool.y
    X_test, y_test = (tables["test"].X, tables["test"].y) if "test" in tables else (None, None)
    need = n_train + n_val + (1 if X_test is None else 0)
    if need > len(X):
        raise ConfigError(f"{name} has {len(X)} instances to draw train and validation sets "
                         f"from; n_train={n_train} + n_val={n_val} is too many")
    perm = rng.permutation(len(X))
    tr, va, rest = perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:]
    if X_test is None:
        X_test, y_test = X[rest], y[rest]
    if cfg.n_test is not None and cfg.n_test < len(X_test):
        keep = rng.permutation(len(X_test))[: cfg.n_test]
        X_test, y_test = X_test[keep], y_test[keep]
    return {"train": (X[tr], y[tr]), "val": (X[va], y[va]), "test": (X_test, y_test)}


def num_classes_of(splits: dict[str, Split]) -> int:
    return int(max(y.max() for _, y in splits.values())) + 1


def corrupt(splits: dict[str, Split], rate: float,
            seed: int | list[int] = 0) -> tuple[dict[str, Split], np.ndarray]:
    """A copy of ``splits`` whose training labels have ``rate`` symmetric noise (seeded by
    ``seed`` and the rate); validation and test stay clean. Returns it and the flipped indices.
    """
    X, y = splits["train"]
    rng = np.random.default_rng([*np.atleast_1d(seed).tolist(), round(rate * 1e6)])
    y_noisy, flipped = flip_labels(y, rate, num_classes_of(splits), rng)
    return {**splits, "train": (X, y_noisy)}, flipped


# --- metrics ---------------------------------------------------------------------------------

def detection_metrics(scores: np.ndarray, flipped: np.ndarray) -> dict[str, float]:
    """How well ``scores`` (N,) (lower = more suspicious) find the ``flipped`` indices:
    AUROC and average precision of the suspicion -score, and precision among the m most
    suspicious, m = len(flipped)."""
    is_flipped = np.zeros(len(scores), dtype=bool)
    is_flipped[flipped] = True
    return {"auroc": float(roc_auc_score(is_flipped, -scores)),
            "ap": float(average_precision_score(is_flipped, -scores)),
            "precision_at_m": metrics.precision_at_k(scores, flipped, len(flipped))}


def accuracy(model: torch.nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> float:
    X, y = data
    with torch.no_grad():
        pred = torch.cat([model(x).argmax(1) for x in X.split(2048)])
    return float((pred == y).double().mean())


def mean_loss(model: torch.nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Mean cross-entropy: on the validation set, the quantity the influence methods query."""
    X, y = data
    with torch.no_grad():
        out = torch.cat([model(x) for x in X.split(2048)])
    return float(torch.nn.functional.cross_entropy(out.double(), y))


# --- the benchmark ---------------------------------------------------------------------------

SKIPPED_IF = ("LiSSA (150 Hessian-vector products over the full training set) does not fit "
              "the time budget for this model")


def one_setting(cfg: NoisyLabelsConfig, name: str, splits: dict[str, Split], rate: float,
                model_name: str) -> list[dict]:
    """Rows (one per method) for one dataset, noise rate and model class."""
    noisy, flipped = corrupt(splits, rate, seed=[cfg.seed, DATASETS.index(name)])
    t = torch.as_tensor
    train, val, test = ((t(X), t(y)) for X, y in (noisy["train"], noisy["val"], noisy["test"]))
    num_classes, m = num_classes_of(splits), len(flipped)

    def make_model() -> torch.nn.Module:  # the same initialisation everywhere
        torch.manual_seed(cfg.seed)
        return build(model_name, tuple(train[0].shape[1:]), num_classes)

    settings = cfg.training(name, model_name)
    start = time.perf_counter()
    run = fit(make_model(), train, **settings)
    fit_seconds = time.perf_counter() - start
    base = {"dataset": name, "noise_rate": rate, "model": model_name, "n_train": len(train[1]),
            "n_flipped": m, "epochs": settings["epochs"], "lr": settings["lr"],
            "fit_seconds": fit_seconds, "test_acc_before": accuracy(run.model, test),
            "val_loss_before": mean_loss(run.model, val)}

    rows, cv = [], None
    for method in cfg.methods:
        row = {**base, "method": method}
        if method == "influence-function" and model_name not in cfg.influence_function_models:
            rows.append({**row, "skipped": SKIPPED_IF})
            continue
        start = time.perf_counter()
        if method.startswith("cleanlab"):
            rank, filt = require_cleanlab()
            if cv is None:  # shared by both cleanlab rows, timed into each
                cv = cross_val_probs(make_model, *train, folds=cfg.folds, split_seed=cfg.seed,
                                     **settings)[0], time.perf_counter() - start
                start = time.perf_counter()
            probs, cv_seconds = cv
            if method == "cleanlab":
                scores = rank.get_label_quality_scores(train[1].numpy(), probs)
            else:
                issues = filt.find_label_issues(train[1].numpy(), probs, n_jobs=1)
            seconds = cv_seconds + time.perf_counter() - start
        else:
            scores = score(run, method, val, seed=cfg.seed)
            seconds = time.perf_counter() - start
        if method == "cleanlab-find":  # a set, not a ranking: its own size, no AUROC / AP
            remove = np.flatnonzero(issues)
            row.update(auroc=math.nan, ap=math.nan, n_removed=len(remove),
                       precision=float(np.isin(remove, flipped).mean()) if len(remove) else
                       math.nan)
        else:
            scores = np.asarray(scores, dtype=np.float64)
            remove = np.argsort(scores, kind="stable")[:m]
            d = detection_metrics(scores, flipped)
            row.update(auroc=d["auroc"], ap=d["ap"], n_removed=m, precision=d["precision_at_m"])
        row["recall"] = float(np.isin(flipped, remove).mean())
        retrained = run.retrain(exclude=remove)
        row["test_acc_after"] = accuracy(retrained, test)
        row["val_loss_after"] = mean_loss(retrained, val)
        row["seconds"] = seconds
        rows.append(row)
    return rows


def warm_up(methods: tuple[str, ...]) -> None:
    """Run each influence method once on a toy problem, untimed, so that one-off costs
    (torch.func's first transforms) are not charged to whichever setting comes first."""
    gen = torch.Generator().manual_seed(0)
    X, y = torch.randn(32, 4, generator=gen), torch.randint(0, 2, (32,), generator=gen)
    for name in ("logreg", "mlp"):
        torch.manual_seed(0)
        run = fit(build(name, (4,), 2), (X, y), epochs=2, batch_size=8, lr=0.1)
        for method in methods:
            if method in REGISTRY and REGISTRY[method].kind == INFLUENCE:
                score(run, method, (X, y))


COLUMNS = ("dataset", "noise_rate", "model", "method", "n_train", "n_flipped", "epochs", "lr",
           "auroc", "ap", "precision", "recall", "n_removed", "test_acc_before", "test_acc_after",
           "val_loss_before", "val_loss_after", "seconds", "fit_seconds", "skipped")


def run(cfg: NoisyLabelsConfig, out: str | Path, *, data_dir=None, overwrite: bool = False,
        progress: bool = True) -> dict:
    """Run every setting; write results.csv, results.json and ap.png to ``out`` atomically.

    Returns the summary {"config", "rows", "wall_seconds"} that results.json holds.
    """
    if {"cleanlab", "cleanlab-find"} & set(cfg.methods):
        require_cleanlab()
    out = check_output(out, overwrite)  # before any work, not after it
    start = time.perf_counter()
    data = {name: load_splits(name, cfg, data_dir) for name in cfg.datasets}
    settings = [(d, r, m) for d in cfg.datasets for r in cfg.noise_rates
                for m in cfg.models_for(d)]
    rows: list[dict] = []
    threads = torch.get_num_threads()
    with output_dir(out, overwrite, command="experiment noisy-labels") as tmp:
        try:
            torch.set_num_threads(cfg.threads or threads)
            warm_up(cfg.methods)
            for d, r, m in tqdm(settings, desc="noisy labels", disable=not progress):
                rows += one_setting(cfg, d, data[d], r, m)
        finally:
            torch.set_num_threads(threads)
        summary = {"config": asdict(cfg), "methods": METHODS, "rows": rows,
                   "wall_seconds": time.perf_counter() - start}
        write_csv(tmp / "results.csv", rows)
        (tmp / "results.json").write_text(json.dumps(_json_safe(summary), indent=1))
        plot_ap(rows, tmp / "ap.png")
    return summary


def _json_safe(value):
    """NaN (undefined metric) as null, so that results.json is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows({k: row.get(k, "") for k in COLUMNS} for row in rows)


def format_table(summary: dict) -> str:
    """The rows as a markdown table."""
    head = ("| dataset | noise | model | method | AUROC | AP | prec@m | removed | "
            "test acc before → after | val loss before → after | method s | fit s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]

    def f(v, spec=".3f"):
        return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)

    for r in summary["rows"]:
        lead = f"| {r['dataset']} | {r['noise_rate']:.0%} | {r['model']} | {r['method']} |"
        if r.get("skipped"):
            lines.append(f"{lead} skipped: {r['skipped']} | | | | | | | |")
            continue
        removed = f"{r['n_removed']}" + ("" if r["method"] != "cleanlab-find" else " (own set)")
        lines.append(
            f"{lead} {f(r['auroc'])} | {f(r['ap'])} | {f(r['precision'])} | {removed} | "
            f"{r['test_acc_before']:.4f} → {r['test_acc_after']:.4f} | "
            f"{r['val_loss_before']:.4f} → {r['val_loss_after']:.4f} | {r['seconds']:.1f} | "
            f"{r['fit_seconds']:.1f} |")
    return "\n".join(lines)


def plot_ap(rows: list[dict], path: Path) -> None:
    """Average precision per method, one panel per (dataset, model), bars per noise rate;
    the dashed line is the noise rate (a random ranking's expected AP)."""
    from matplotlib.figure import Figure  # no pyplot: the user's backend is left alone

    panels = list(dict.fromkeys((r["dataset"], r["model"]) for r in rows))
    methods = [m for m in dict.fromkeys(r["method"] for r in rows) if m != "cleanlab-find"]
    rates = sorted({r["noise_rate"] for r in rows})
    cols = min(4, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.6 * nrows))
    axes = fig.subplots(nrows, cols, squeeze=False)
    width = 0.8 / len(rates)
    for ax, (d, mod) in zip(axes.flat, panels, strict=False):
        mine = [r for r in rows if (r["dataset"], r["model"]) == (d, mod)]
        for k, rate in enumerate(rates):
            ap = {r["method"]: r.get("ap", math.nan) for r in mine if r["noise_rate"] == rate}
            xs = np.arange(len(methods)) + (k - (len(rates) - 1) / 2) * width
            ax.bar(xs, [ap.get(m, math.nan) for m in methods], width,
                   label=f"{rate:.0%} flipped", color=f"C{k}")
            ax.hlines(rate, xs[0] - width / 2, xs[-1] + width / 2, colors=f"C{k}",
                      linestyles="--", lw=0.8)
        for i, m in enumerate(methods):
            if any(r["method"] == m and r.get("skipped") for r in mine):
                ax.text(i, 0.02, "skipped", rotation=90, ha="center", va="bottom", fontsize=8,
                        color="grey")
        ax.set_xticks(np.arange(len(methods)), methods, rotation=45, ha="right", fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(f"{d}, {mod}", fontsize=10)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("average precision")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(rates) + 1, fontsize=9)
    fig.suptitle("finding the flipped labels (dashed: a random ranking's expected AP)",
                 y=0.995, fontsize=10, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=110)


def default_out(cfg: NoisyLabelsConfig) -> str:
    return "out/noisy-labels-quick" if cfg == QUICK else "out/noisy-labels"


def format_summary(summary: dict) -> str:
    return (f"{format_table(summary)}\n(total wall time {summary['wall_seconds']:.0f} s)")
