"""Where does training data make a model fail, and which method finds it? Five scenarios.

On a subset of MNIST, Fashion-MNIST (the paper's CNN) or UCI Adult (an MLP), corrupt the
training set one way, train, rank the training instances by each method with the scenario's
target as the query, remove each method's k first (k = m/2, m, 2m; m = the number of harmful
instances), retrain all epochs on the identical schedule, and measure (influence functions
only on Adult: too slow for the CNN):

- ``symmetric``: 20% of the labels flipped at random; target: clean validation data.
- ``systematic``: 40% of one class labelled as one other class (MNIST 7 → 1, Fashion
  shirt → T-shirt, Adult >50K → <=50K); target: validation instances of that class.
- ``backdoor``: 3% of the training instances, from the other classes, get a trigger (a 4x4
  white patch; Adult: three numeric columns set to 4 standard deviations) and the label of
  class 0; target: triggered validation instances of the other classes, true labels.
- ``shortcut``: a marker (a 3x3 patch in the other corner; Adult: one numeric column at 4)
  on 60% of class 0's training instances, labels right; target: marked validation
  instances of the other classes.
- ``ood``: 5% of the training instances replaced by another dataset's (Fashion images in
  MNIST, MNIST digits in Fashion; Adult: rows whose columns are shuffled independently)
  with random labels; target: clean validation data.

Everything after the corruption is ``cleanse``'s: the target's query half is the query, its
held-out half and the validation set choose k. Per method: AUROC, average precision and
precision at m of ranking the harmful instances first, the target and test error at the k
it chooses and at k = 2m (for the backdoor also the attack success: the share of triggered
targets predicted as class 0), and its time in trainings (the recorded training's wall time).
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from ...errors import ConfigError
from ..cleanse import CleanseConfig, Splits, _halves, best_k, cleanse, error, primary
from ..data import load
from ..data.files import Table
from ..methods import check as check_methods
from ..output import check_output, output_dir

DATASETS = ("mnist", "fashion-mnist", "adult")
SCENARIOS = ("symmetric", "systematic", "backdoor", "shortcut", "ood")
METHODS = ("sgd-epochs", "sgd", "sgd-last", "sgd-nohessian-epochs", "influence-function",
           "training-loss", "cleanlab", "random")
NOT_FOR_CNN = ("influence-function",)  # LiSSA's 100 Hessian-vector products over the whole
# training set per query take longer than everything else together on the CNN
SYSTEMATIC = {"mnist": (7, 1), "fashion-mnist": (6, 0), "adult": (1, 0)}  # class a → b
OTHER = {"mnist": "fashion-mnist", "fashion-mnist": "mnist"}  # out-of-distribution source


@dataclass(frozen=True)
class ScenariosConfig:
    datasets: tuple[str, ...] = DATASETS
    scenarios: tuple[str, ...] = SCENARIOS
    methods: tuple[str, ...] = METHODS
    seeds: int = 1
    n_train: int = 3000
    n_val: int = 1000
    n_test: int = 2000
    n_target: int = 400  # instances made into the target (before halving), from data apart
    epochs: int | None = None  # default: 8 for the CNN, 20 for the MLP

    def __post_init__(self) -> None:
        for name, known in (("datasets", DATASETS), ("scenarios", SCENARIOS)):
            values = tuple(getattr(self, name))
            object.__setattr__(self, name, values)
            if not values or set(values) - set(known):
                raise ConfigError(f"{name} must be some of {list(known)}, got {list(values)}")
        object.__setattr__(self, "methods", check_methods(self.methods, auto=True))
        if self.seeds < 1 or min(self.n_train, self.n_val, self.n_test, self.n_target) < 10:
            raise ConfigError("seeds must be >= 1 and the sizes >= 10")

    def cleanse_config(self, dataset: str, seed: int, m: int) -> CleanseConfig:
        cnn = dataset != "adult"
        methods = tuple(m for m in self.methods if not (cnn and m in NOT_FOR_CNN))
        return CleanseConfig(model="mnist-cnn" if cnn else "mlp",
                             epochs=self.epochs or (8 if cnn else 20), batch_size=64, lr=0.05,
                             seed=seed, methods=methods, retrain="all",
                             ks=tuple(sorted({max(1, m // 2), m, 2 * m})))


# --- the corruptions ---------------------------------------------------------------------------

def _patch(X: np.ndarray, corner: str, size: int) -> np.ndarray:
    """A white square near a corner of images, or columns set to 4 standard deviations."""
    X = X.copy()
    if X.ndim == 4:
        rows = slice(-2 - size, -2) if corner == "low" else slice(1, 1 + size)
        X[:, :, rows, rows] = 1.0
    else:
        X[:, slice(0, 3) if corner == "low" else slice(3, 4)] = 4.0
    return X


def corrupt(scenario: str, dataset: str, train: Table, source: Table, n_target: int,
            rng: np.random.Generator, data_dir=None) -> tuple[Table, np.ndarray, Table]:
    """The corrupted training set, the mask of its harmful instances, and the target, made
    from ``source`` (data kept apart from the validation set that chooses k)."""
    X, y = np.array(train.X), train.y.copy()
    n, classes = len(y), len(train.classes)
    pick = lambda pool, count: rng.choice(pool, min(count, len(pool)), replace=False)  # noqa
    rows = rng.permutation(len(source.y))[:n_target]
    target = Table(source.X[rows], source.y[rows], source.classes, source.index[rows])
    harmful = np.zeros(n, dtype=bool)
    if scenario == "symmetric":
        bad = pick(np.arange(n), round(0.2 * n))
        y[bad] = (y[bad] + rng.integers(1, classes, len(bad))) % classes
    elif scenario == "systematic":
        a, b = SYSTEMATIC[dataset]
        bad = pick(np.flatnonzero(y == a), round(0.4 * (y == a).sum()))
        y[bad] = b
        keep = source.y == a
        target = Table(source.X[keep][:n_target], source.y[keep][:n_target], source.classes,
                       source.index[keep][:n_target])
    elif scenario == "backdoor":
        bad = pick(np.flatnonzero(y != 0), round(0.03 * n))
        X[bad], y[bad] = _patch(X[bad], "low", 4), 0
        others = np.flatnonzero(source.y != 0)[:n_target]
        target = Table(_patch(source.X[others], "low", 4), source.y[others], source.classes,
                       source.index[others])
    elif scenario == "shortcut":
        bad = pick(np.flatnonzero(y == 0), round(0.6 * (y == 0).sum()))
        X[bad] = _patch(X[bad], "high", 3)
        others = np.flatnonzero(source.y != 0)[:n_target]
        target = Table(_patch(source.X[others], "high", 3), source.y[others], source.classes,
                       source.index[others])
    else:  # ood
        bad = pick(np.arange(n), round(0.05 * n))
        if X.ndim == 4:
            junk = load(OTHER[dataset], data_dir)["train"].X
            X[bad] = junk[rng.choice(len(junk), len(bad), replace=False)]
        else:
            X[bad] = np.stack([rng.permutation(X[:, j])[:len(bad)] for j in range(X.shape[1])],
                              axis=1)
        y[bad] = rng.integers(0, classes, len(bad))
    harmful[bad] = True
    notes = np.where(harmful, scenario, "")
    return (Table(X.astype(np.float32), y, train.classes, train.index, notes=notes), harmful,
            target)


def sample(tables: dict[str, Table], cfg: ScenariosConfig, rng
           ) -> tuple[Table, Table, Table, Table]:
    """Disjoint training, validation, target-source (4 × n_target) and test instances."""
    pool, test = tables["train"], tables["test"]
    order = rng.permutation(len(pool.y))
    cuts = np.cumsum([cfg.n_train, cfg.n_val, 4 * cfg.n_target])
    return (*(pool.take(np.sort(part)) for part in np.split(order[:cuts[-1]], cuts[:-1])),
            test.take(np.sort(rng.permutation(len(test.y))[:cfg.n_test])))


# --- one setting -------------------------------------------------------------------------------

def one(cfg: ScenariosConfig, dataset: str, scenario: str, seed: int, tables, data_dir=None,
        progress: bool = False) -> list[dict]:
    rng = np.random.default_rng(seed)
    train, val, source, test = sample(tables, cfg, rng)
    train, harmful, target = corrupt(scenario, dataset, train, source, cfg.n_target, rng,
                                     data_dir)
    m = int(harmful.sum())
    cleanse_cfg = cfg.cleanse_config(dataset, seed, m)
    result = cleanse(Splits(train, val, test, *_halves(target, seed)), cleanse_cfg,
                     progress=progress)
    training = result.seconds["training"]
    rows = []
    lead = primary(result)
    for method, scores in result.scores.items():
        curve, held = result.curves[method], result.target_curves[method]
        top = result.order(method)[:m]
        repaired = result.repair if method == lead else None
        if repaired is not None:  # every round's removal, and the model after the last
            k, model = len(repaired.removed), repaired.model
            after = (repaired.after.target_error, repaired.after.test)
        else:
            k = best_k(result, method)
            model = result.run.retrain(result.order(method)[:k]) if k else result.run.model
            after = (held[k], curve[k][1])
        attack = {}
        if scenario == "backdoor":  # the held-out triggered targets predicted as class 0
            attack = {"attack_success_before": success(result, result.run.model),
                      "attack_success": success(result, model),
                      "attack_success_2m": success(result, result.run.retrain(
                          result.order(method)[:2 * m]))}
        chosen = result.diagnosis.method if result.diagnosis and method == lead else ""
        rows.append({
            "dataset": dataset, "scenario": scenario, "seed": seed,
            "method": "auto" if chosen else method, "chosen": chosen,
            "kind": result.diagnosis.kind if chosen and result.diagnosis else "",
            "n_train": len(train.y), "m": m, "auroc": roc_auc_score(harmful, -scores),
            "ap": average_precision_score(harmful, -scores),
            "precision_at_m": float(harmful[top].mean()),
            "k": k, "rounds": len(repaired.rounds) if repaired is not None else 1,
            "stopped": repaired.stopped if repaired is not None else "",
            "harmful_removed": int(harmful[repaired.removed if repaired is not None else
                                           result.order(method)[:k]].sum()),
            "target_error_before": held[0], "target_error": after[0],
            "test_error_before": curve[0][1], "test_error": after[1],
            "target_error_2m": held[2 * m], "test_error_2m": curve[2 * m][1],
            "trainings": result.seconds[method] / training, "training_seconds": training,
            **attack,
        })
    return rows


def success(result, model) -> float:
    """The backdoor's attack success: the share of the target's held-out half ``model``
    predicts as class 0."""
    check = result.splits.target_check
    return float(1 - error(model, Table(check.X, np.zeros_like(check.y), check.classes,
                                         check.index)))


def run(cfg: ScenariosConfig, out: str | Path, *, data_dir=None, overwrite: bool = False,
        progress: bool = True) -> dict:
    check_output(out, overwrite)
    rows: list[dict] = []
    start = time.perf_counter()
    for dataset in cfg.datasets:
        tables = load(dataset, data_dir)
        for scenario in cfg.scenarios:
            for seed in range(cfg.seeds):
                rows += one(cfg, dataset, scenario, seed, tables, data_dir, progress)
    summary = {"experiment": asdict(cfg), "rows": rows, "means": means(rows),
               "seconds": time.perf_counter() - start}
    with output_dir(out, overwrite, command="experiment scenarios") as tmp:
        with open(tmp / "results.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
            writer.writeheader()
            writer.writerows(rows)
        (tmp / "results.json").write_text(json.dumps(summary, indent=2))
        plot(summary["means"], tmp / "scenarios.png")
    return summary


ATTACK = ("attack_success_before", "attack_success", "attack_success_2m")
COLUMNS = ("auroc", "ap", "precision_at_m", "m", "k", "rounds", "harmful_removed",
           "target_error_before", "target_error", "test_error_before", "test_error",
           "target_error_2m", "test_error_2m", "trainings")


def means(rows: list[dict]) -> list[dict]:
    """Mean (and standard deviation over seeds) per dataset, scenario and method."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["scenario"], r["method"]), []).append(r)
    return [{"dataset": d, "scenario": s, "method": m, "seeds": len(g),
             "chosen": ",".join(sorted({r.get("chosen", "") for r in g} - {""})),
             **{c: float(np.mean([r[c] for r in g])) for c in COLUMNS},
             **{f"{c}_std": float(np.std([r[c] for r in g])) for c in ("auroc", "target_error")},
             **{c: float(np.mean([r[c] for r in g])) for c in ATTACK if c in g[0]}}
            for (d, s, m), g in groups.items()]


def plot(rows: list[dict], path: Path) -> None:
    """Target error after each method's choice of k, per dataset and scenario."""
    from matplotlib.figure import Figure

    settings = list(dict.fromkeys((r["dataset"], r["scenario"]) for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig = Figure(figsize=(max(6, 1.1 * len(settings)), 4))
    ax = fig.subplots()
    width = 0.8 / len(methods)
    for i, method in enumerate(methods):
        values = [next((r["target_error"] for r in rows if (r["dataset"], r["scenario"],
                        r["method"]) == (*s, method)), np.nan) for s in settings]
        ax.bar(np.arange(len(settings)) + i * width, values, width, label=method)
    before = [next(r["target_error_before"] for r in rows if (r["dataset"], r["scenario"]) == s)
              for s in settings]
    ax.hlines(before, np.arange(len(settings)) - width / 2, np.arange(len(settings)) + 0.8
              - width / 2, colors="black", lw=1.5, label="as trained")
    ax.set_xticks(np.arange(len(settings)) + 0.4 - width / 2,
                  [f"{d}\n{s}" for d, s in settings], fontsize=7)
    ax.set_ylabel("target error after removal (k chosen)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def default_out(cfg: ScenariosConfig) -> str:
    return "out/scenarios"


def format_summary(summary: dict) -> str:
    head = (f"{'dataset':<14}{'scenario':<11}{'method':<27}{'AUROC':>6}{'AP':>6}{'P@m':>6}"
            f"{'k':>6}{'k/m':>5}{'hit':>5}{'rnd':>4}{'target':>15}{'test err':>15}{'tgt@2m':>8}"
            f"{'cost':>7}")
    lines = [head]
    for r in summary["means"]:
        method = r["method"] + (f">{r['chosen']}" if r.get("chosen") else "")
        lines.append(
            f"{r['dataset']:<14}{r['scenario']:<11}{method:<27}{r['auroc']:6.2f}"
            f"{r['ap']:6.2f}{r['precision_at_m']:6.2f}{r['k']:6.0f}"
            f"{r['k'] / r['m']:5.1f}{r['harmful_removed'] / r['m']:5.2f}{r['rounds']:4.1f}"
            f"{r['target_error_before']:7.3f}>{r['target_error']:6.3f} "
            f"{r['test_error_before']:7.3f}>{r['test_error']:6.3f} {r['target_error_2m']:7.3f}"
            f"{r['trainings']:7.2f}")
        if "attack_success" in r:
            lines[-1] += (f"   attack success {r['attack_success_before']:.3f}>"
                          f"{r['attack_success']:.3f}, at 2m {r['attack_success_2m']:.3f}")
    lines.append(f"({summary['seconds']:.0f} s; k: rows removed (all rounds); k/m: per harmful "
                 "row; hit: the share of the harmful rows removed; rnd: rounds; target / test "
                 "error: before > after; tgt@2m: after removing 2m; cost: the method's time in "
                 "trainings; auto>x: auto chose x)")
    return "\n".join(lines)
