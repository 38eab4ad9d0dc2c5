"""Sec 7.1 of the paper: how well do the estimators predict true leave-one-out changes?

For each seed: draw 200 training and 200 validation instances, train with the paper's
settings (float64), compute the true change of the validation loss when each training
instance is left out (``method="loo"``), and compare every estimator with it by Kendall's τ
and the Jaccard index of the 10 most negative and 10 most positive instances.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegressionCV
from tqdm.auto import tqdm

from ...core import metrics
from ...core.estimators import influence, leave_out
from ...core.objective import mode
from ...core.optimizers import Optimizer
from ...core.queries import PerExample
from ...core.train import fit
from ...errors import ConfigError
from ..data import load
from ..methods import INFLUENCE
from ..methods import METHODS as REGISTRY
from ..models import mlp
from ..output import check_output, output_dir

DATASETS = ("adult", "20news", "mnist-1v7")
MODELS = ("logreg", "mlp")
CONVERGED = "influence-function-converged"  # K&L at a model trained to convergence
# the estimates of the change of Q(θ[T]) that leave-one-out measures (not the query averaged
# over training, a different quantity), and K&L at convergence
METHODS = (*(m for m, method in REGISTRY.items()
             if method.kind == INFLUENCE and method.options.get("at", "end") == "end"),
           CONVERGED)
EXACT_HESSIAN_MAX = 2000  # parameters; larger models use conjugate gradients


@dataclass(frozen=True)
class EstimationConfig:
    """One Sec 7.1 setting. ``None`` fields take the paper's value for the dataset / model."""

    dataset: str
    model: str
    seeds: int = 30
    n_train: int = 200
    n_val: int = 200
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    decay: bool | None = None  # η_t = η_0 / sqrt(t + 1)
    weight_decay: float | None = None  # None for logreg: 5-fold cross-validation per seed
    damping: float | None = None
    lds_subsets: int = 50  # random halves for the linear datamodeling score (0: none)
    optimizer: str = "sgd"  # torch.optim's update rules; the paper trains by plain SGD
    momentum: float = 0.0
    nesterov: bool = False

    def __post_init__(self) -> None:
        Optimizer(self.optimizer, momentum=self.momentum, nesterov=self.nesterov)  # checks
        if self.dataset not in DATASETS:
            raise ConfigError(f"unknown dataset {self.dataset!r}; use one of "
                              f"{', '.join(DATASETS)}")
        if self.model not in MODELS:
            raise ConfigError(f"unknown model {self.model!r}; use one of {', '.join(MODELS)}")
        for name in ("seeds", "n_train", "n_val", "epochs", "batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")

    def resolved(self) -> EstimationConfig:
        """Fill in the paper's settings (docs/design.md, Sec 7.1)."""
        if self.model == "logreg":
            paper = {"epochs": {"adult": 20, "20news": 10, "mnist-1v7": 5}[self.dataset],
                     "batch_size": 5, "lr": 0.01 if self.dataset == "20news" else 0.1,
                     "decay": True, "damping": 0.0}
        else:
            paper = {"epochs": 10, "batch_size": 20, "lr": 0.1, "decay": False,
                     "weight_decay": 0.001, "damping": 1.0}
        return replace(self, **{k: v for k, v in paper.items() if getattr(self, k) is None})


def one_seed(cfg: EstimationConfig, data, seed: int) -> dict:
    """Scores of every method and the truth for one draw of the data."""
    X, y = data
    perm = np.random.default_rng(seed).permutation(len(X))[: cfg.n_train + cfg.n_val]
    tr, va = perm[: cfg.n_train], perm[cfg.n_train:]
    to = lambda a, dt: torch.as_tensor(a, dtype=dt)  # noqa: E731
    train = (to(X[tr], torch.float64), to(y[tr], torch.float64))
    val = (to(X[va], torch.float64), to(y[va], torch.float64))
    alpha = cfg.weight_decay
    if alpha is None:  # the paper's 5-fold cross-validation of the L2 strength
        with warnings.catch_warnings():  # scikit-learn's notices of changing defaults
            warnings.simplefilter("ignore", FutureWarning)
            cv = LogisticRegressionCV(Cs=np.logspace(-3, 3, 13), cv=5, max_iter=2000,
                                      scoring="neg_log_loss").fit(X[tr], y[tr])
        alpha = 1.0 / (cv.C_[0] * cfg.n_train)  # sklearn: C Σ loss + ½‖w‖² -> mean + (α/2)‖w‖²
    d = X.shape[1]
    lr = (lambda t: cfg.lr / np.sqrt(t + 1)) if cfg.decay else cfg.lr

    def train_on(data, seed):  # a model initialised from the seed, trained on its schedule
        torch.manual_seed(seed)
        model = torch.nn.Linear(d, 1) if cfg.model == "logreg" else mlp(d, 1, hidden=(8, 8))
        return fit(model.double(), data, loss="bce", epochs=cfg.epochs,
                   batch_size=cfg.batch_size, lr=lr, weight_decay=alpha, seed=seed,
                   optimizer=cfg.optimizer, momentum=cfg.momentum, nesterov=cfg.nesterov)

    run = train_on(train, seed)
    n_params = sum(p.numel() for p in run.model.parameters())
    out = {"seed": seed, "weight_decay": alpha, "true": influence(run, val, method="loo")}
    each = PerExample(val)
    if cfg.lds_subsets:  # random halves left out: the truth on the identical schedule, and
        rng = np.random.default_rng([seed, 1])  # with a fresh initialisation and shuffles
        masks = [rng.permutation(cfg.n_train) < cfg.n_train // 2 for _ in range(cfg.lds_subsets)]
        out["lds_identical"] = leave_out(run, each, masks).T  # (K, M)
        out["lds_fresh"] = np.stack([_losses(train_on((train[0][~m], train[1][~m]),
                                                      seed=10_000 * (seed + 1) + k).model, val)
                                     for k, m in enumerate(masks)])
        out["lds_masks"] = np.stack(masks).astype(np.float64)
    converged = replace(run, model=_converge(run))  # for K&L, whose theory wants an optimum
    for name in METHODS:
        options = dict(REGISTRY[name].options) if name in REGISTRY else {
            "method": "influence-function"}
        if options["method"] == "influence-function":  # the paper's damping, solved exactly
            options = {"method": "influence-function", "damping": cfg.damping,
                       "solver": "exact" if n_params <= EXACT_HESSIAN_MAX else "cg"}
        at = converged if name == CONVERGED else run
        start = time.perf_counter()
        out[name] = influence(at, val, **options)
        out[f"{name}_seconds"] = time.perf_counter() - start
        if cfg.lds_subsets:  # the summed estimates of each half, per validation example
            predicted = out["lds_masks"] @ influence(at, each, **options).T  # (K, M)
            out[f"{name}_lds_identical"] = metrics.lds(predicted, out["lds_identical"])
            out[f"{name}_lds_fresh"] = metrics.lds(predicted, out["lds_fresh"])
    return out


def _converge(run, iterations: int = 1000) -> torch.nn.Module:
    """The run's model trained further, full batch by L-BFGS, until the gradient of the
    training objective (weight decay included) vanishes: the optimum K&L assume."""
    objective = run.objective()
    theta = objective.flatten().clone().requires_grad_()
    X, y = run.train
    w = torch.ones(len(X), dtype=theta.dtype)
    opt = torch.optim.LBFGS([theta], lr=1, max_iter=iterations, tolerance_grad=1e-12,
                            tolerance_change=1e-15, history_size=50,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = objective.batch(theta, w, X, y)
        loss.backward()
        return loss

    with mode(objective.model, train=False):
        opt.step(closure)
    objective.load(theta.detach())
    return objective.model.eval()


def _losses(model: torch.nn.Module, val) -> np.ndarray:
    """Each validation example's loss (M,) under ``model``."""
    with torch.no_grad():
        return torch.nn.functional.binary_cross_entropy_with_logits(
            model(val[0]).reshape(-1), val[1], reduction="none").numpy()


def run(cfg: EstimationConfig, out: str | Path, *, data_dir=None, overwrite: bool = False,
        progress: bool = True) -> dict:
    """Run all seeds, write ``results.csv``, ``results.json`` and ``scatter.png`` to ``out``."""
    check_output(out, overwrite)  # before any work
    cfg = cfg.resolved()
    start = time.perf_counter()
    train = load(cfg.dataset, data_dir)["train"]
    X, y = train.X, train.y
    with output_dir(out, overwrite, command="experiment estimation") as tmp:
        rows, first = [], None
        for seed in tqdm(range(cfg.seeds), desc=f"{cfg.dataset} {cfg.model}", disable=not progress):
            r = one_seed(cfg, (X, y), seed)
            first = first or r
            rows += [{"seed": seed, "method": m,
                      "kendall_tau": metrics.kendall_tau(r[m], r["true"]),
                      "jaccard": metrics.jaccard(r[m], r["true"]),
                      "lds_identical": r.get(f"{m}_lds_identical", float("nan")),
                      "lds_fresh": r.get(f"{m}_lds_fresh", float("nan")),
                      "seconds": r[f"{m}_seconds"], "weight_decay": r["weight_decay"]}
                     for m in METHODS]
        summary = {"config": asdict(cfg), "summary": summarise(rows), "rows": rows,
                   "wall_seconds": time.perf_counter() - start}
        _write_csv(tmp / "results.csv", rows)
        (tmp / "results.json").write_text(json.dumps(summary, indent=1))
        scatter(first, cfg, tmp / "scatter.png")
    return summary


def summarise(rows: list[dict]) -> dict:
    out = {}
    for m in METHODS:
        r = [row for row in rows if row["method"] == m]
        out[m] = {k: (float(np.mean([x[k] for x in r])), float(np.std([x[k] for x in r])))
                  for k in ("kendall_tau", "jaccard", "lds_identical", "lds_fresh",
                            "seconds")}
    return out


def default_out(cfg: EstimationConfig) -> str:
    return f"out/estimation-{cfg.dataset}-{cfg.model}"


def format_summary(summary: dict) -> str:
    cfg = summary["config"]
    lines = [f"{cfg['model']} on {cfg['dataset']}, {cfg['seeds']} seeds: agreement with "
             "leave-one-out retraining, and the linear datamodeling score over "
             f"{cfg['lds_subsets']} random halves (identical schedule / fresh training), "
             "mean (std)",
             f"{'method':30}{'Kendall tau':>16}{'Jaccard':>16}{'LDS identical':>16}"
             f"{'LDS fresh':>16}{'seconds':>10}"]
    for m, s in summary["summary"].items():
        cells = "".join(f"{s[k][0]:10.2f} ({s[k][1]:.2f})" for k in (
            "kendall_tau", "jaccard", "lds_identical", "lds_fresh"))
        lines.append(f"{m:30}{cells}{s['seconds'][0]:10.2f}")
    return "\n".join(lines)


def _write_csv(path: Path, rows: list[dict]) -> None:
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def scatter(r: dict, cfg: EstimationConfig, path: Path) -> None:
    """Estimated vs true change of validation loss, one panel per method (first seed)."""
    from matplotlib.figure import Figure  # no pyplot: the user's backend is left alone

    fig = Figure(figsize=(4 * len(METHODS), 4))
    axes = fig.subplots(1, len(METHODS), squeeze=False)
    for ax, m in zip(axes[0], METHODS, strict=True):
        ax.scatter(r["true"], r[m], s=8, alpha=0.7)
        lim = [min(r["true"].min(), r[m].min()), max(r["true"].max(), r[m].max())]
        ax.plot(lim, lim, color="grey", lw=0.8, ls="--")
        ax.set_title(f"{m}\nτ = {metrics.kendall_tau(r[m], r['true']):.2f}")
        ax.set_xlabel("true change (leave-one-out)")
        ax.ticklabel_format(style="sci", scilimits=(-2, 2))
    axes[0][0].set_ylabel("estimated change")
    fig.suptitle(f"{cfg.model} on {cfg.dataset}, seed {r['seed']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
