"""Data cleansing (the paper's Sec 7.2): fit with recording, score, remove the k most harmful,
retrain on the identical schedule, and measure test error for each k and method.

    cfg = CleanseConfig(ks=(10, 30, 100))
    result = cleanse(split(load_data("mnist"), cfg), cfg)
    result.curves["sgd"][30]                          # (validation error, test error)
"""

from __future__ import annotations

import math
import re
import time
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from ..core.augment import RandomCrop
from ..core.estimators import reliability
from ..core.objective import mode
from ..core.optimizers import Optimizer
from ..core.repair import GRID, Measured, Repair, choose_k, pick, repair
from ..core.train import Run, check_clip, fit
from ..errors import ConfigError, DataError
from . import methods
from .data.files import ImageFiles, Table, TableDataset
from .diagnose import Diagnosis, diagnose
from .models import MNIST_CNN_MIN_SIZE, MODELS, build

PAPER_KS = (1, 3, 6, 10, 30, 60, 100, 300, 600, 1000, 3000, 6000, 10000)
AUGMENTS = ("auto", "none", "crop", "crop+flip")
AUTO = methods.AUTO  # the method the data calls for (app/diagnose.py)
DEFAULT_METHODS = (AUTO, "random")
SEEDS = 2**32  # numpy's and scikit-learn's seeds lie in [0, 2**32 - 1]
RETRAINS = ("last", "all", "fresh")


@dataclass(frozen=True)
class CleanseConfig:
    """What to train, how to score, what to remove. Saved in results.json."""

    model: str = "auto"  # a name in models.MODELS; auto: a CNN for images, else an MLP
    epochs: int = 20
    batch_size: int = 64
    lr: float = 0.05
    weight_decay: float = 0.0
    seed: int = 0
    val: float = 0.1  # held out of the training data for validation: a fraction, or a count
    test: float = 0.2  # the same, for data that has no test split of its own
    subset: int | None = None  # train on this many instances, validate and test on at most
    # as many (quick runs)
    ks: tuple[int, ...] | None = None  # None: the paper's list, up to half the training set
    methods: tuple[str, ...] = DEFAULT_METHODS  # "auto": the one the data calls for
    retrain: str = "last"  # "last": retrain the last epoch only; "all": from the start;
    # "fresh" (with a target): each round's result is a new training of the kept rows
    rounds: int | str | None = None  # with a target: "auto" (the default there), repair in
    # rounds until the target is no longer significantly worse than validation, or at most
    # this many; without a target only 1
    refine: bool = True  # after the grid of ks, bisect toward the smallest k as good as the best
    max_removed: int | None = None  # the rows all rounds may remove (default: the largest k,
    # at least a fifth of the training set)
    max_trainings: int = 60  # the retrainings and new trainings all rounds may take
    augment: str = "auto"  # auto: random crops (and flips for colour) when training a CNN
    optimizer: str = "sgd"  # or "adam", "adamw": torch.optim's update rules
    momentum: float = 0.0
    nesterov: bool = False
    max_grad_norm: float | None = None  # clip each step's gradient (torch.nn.utils' clips)
    clip_grad_value: float | None = None
    reliability: int = 8  # the sgd scores' check: this many instances left out literally
    # (the most harmful and most helpful half each); 0: no check
    fresh_seeds: int = 0  # also train afresh with this many new seeds, with and without the k
    # removed, to tell a gain of this run from a gain of the data
    device: str = "auto"  # where to train and sweep: "cpu", "cuda" (or "cuda:1"), or auto:
    # the GPU when torch sees one

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", tuple(self.methods))
        if self.ks is not None:
            object.__setattr__(self, "ks", tuple(self.ks))
        if self.model != "auto" and self.model not in MODELS:
            raise ConfigError(f"unknown model {self.model!r}; use auto or one of {list(MODELS)}")
        methods.check(self.methods, auto=True)
        if self.rounds is not None and self.rounds != "auto" and (
                isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or
                self.rounds < 1):
            raise ConfigError(f"rounds must be 'auto' or an int >= 1, got {self.rounds!r}")
        for name in ("max_removed", "max_trainings"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"{name} must be an int >= 1, got {v!r}")
        check_clip(Optimizer(self.optimizer, momentum=self.momentum, nesterov=self.nesterov,
                             max_grad_norm=self.max_grad_norm,
                             clip_grad_value=self.clip_grad_value),  # checks them
                   self.weight_decay > 0 and self.optimizer != "adamw")
        if isinstance(self.reliability, bool) or not isinstance(self.reliability, int) or \
                self.reliability < 0 or self.reliability == 1:
            raise ConfigError(f"reliability must be 0 (no check) or an int >= 2, got "
                              f"{self.reliability!r}")
        if self.retrain not in RETRAINS:
            raise ConfigError(f"retrain must be 'last', 'all' or 'fresh', got {self.retrain!r}")
        if self.augment not in AUGMENTS:
            raise ConfigError(f"augment must be one of {list(AUGMENTS)}, got {self.augment!r}")
        if not (self.device in ("auto", "cpu") or re.fullmatch(r"cuda(:\d+)?", self.device)):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device {self.device!r} asked for, but torch sees no CUDA device "
                              "here; use cpu (or auto)")
        if not 0 <= self.seed < SEEDS:
            raise ConfigError(f"seed must be in [0, {SEEDS - 1}], got {self.seed}")
        if self.fresh_seeds < 0:
            raise ConfigError(f"fresh_seeds must be >= 0, got {self.fresh_seeds}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        for name in ("val", "test"):
            v = getattr(self, name)
            if not (0 < v < 1 or (v >= 1 and float(v).is_integer())):
                raise ConfigError(f"{name} must be a fraction in (0, 1) or a count >= 1, got {v}")
        if self.ks is not None and (not self.ks or min(self.ks) < 1):
            raise ConfigError(f"ks must be numbers of instances >= 1, got {self.ks}")


@dataclass
class Splits:
    """Training, validation and test data; with a target, its two halves: ``target`` is
    the influence query, ``target_check`` (never queried) measures the target error that,
    with the validation error, chooses k."""

    train: Table
    val: Table
    test: Table
    target: Table | None = None
    target_check: Table | None = None


@dataclass
class Result:
    """Everything a report needs. ``curves[method][k] = (validation error, test error)`` after
    removing that method's k first instances (k = 0: the model as trained); with a target,
    ``target_curves[method][k]`` the error on its held-out half."""

    config: CleanseConfig
    splits: Splits
    run: Run
    model: str
    scores: dict[str, np.ndarray]
    curves: dict[str, dict[int, tuple[float, float]]]
    seconds: dict[str, float] = field(default_factory=dict)
    fresh: dict | None = None  # the check by fresh training, if asked for
    target_curves: dict[str, dict[int, float]] = field(default_factory=dict)
    # per method and k, which validation (then held-out target) instances are misclassified
    mistakes: dict[str, dict[int, np.ndarray]] = field(default_factory=dict, repr=False)
    reliability: dict | None = None  # sgi.reliability of the sgd scores, if checked
    diagnosis: Diagnosis | None = None  # what methods=auto saw in the data, and chose
    primary_method: str | None = None  # the method the report leads with
    repair: Repair | None = None  # with a target: the rounds of the primary method

    def order(self, method: str) -> np.ndarray:
        """Training positions, the first to remove first."""
        return np.argsort(self.scores[method], kind="stable")

    def removed(self) -> np.ndarray:
        """The training positions the report removes: every round's, or the primary method's
        first k at the k chosen on validation (and the target's held-out half)."""
        if self.repair is not None:
            return self.repair.removed
        method = primary(self)
        return self.order(method)[:best_k(self, method)]


    def training(self) -> dict:
        """How training went: the mean training loss of each epoch, the loss of predicting the
        training set's class frequencies (what a model that learned nothing reaches), and a
        warning when the last epoch is not clearly below both."""
        run = self.run
        ends = [*run.epoch_starts[1:], run.num_steps]
        curve = [float(np.mean(run.losses[a:b])) for a, b in zip(run.epoch_starts, ends,
                                                                      strict=True)]
        freq = np.bincount(self.splits.train.y) / len(self.splits.train.y)
        constant = float(-(freq[freq > 0] * np.log(freq[freq > 0])).sum())
        warning = None
        if len(curve) > 1 and curve[-1] >= curve[0]:
            warning = (f"training did not learn: the mean training loss of the last epoch "
                       f"({curve[-1]:.3g}) is not below the first epoch's ({curve[0]:.3g})")
        elif curve[-1] > 0.9 * constant:
            warning = (f"training barely learned: the mean training loss of the last epoch "
                       f"({curve[-1]:.3g}) is not clearly below {constant:.3g}, the loss of "
                       "predicting the class frequencies")
        if warning:
            warning += ("; the scores describe a model that did not learn. Try another learning "
                        "rate (too high a rate diverges, too low a rate does not move) or more "
                        "epochs")
        return {"epoch_loss": curve, "constant_predictor_loss": constant, "warning": warning}

    def to_json(self) -> dict:
        return {
            "config": asdict(self.config), "model": self.model, "training": self.training(),
            "reliability": self.reliability,
            "device": str(next(self.run.model.parameters()).device),
            "sizes": {s: len(t.y) for s in ("train", "val", "test", "target", "target_check")
                      if (t := getattr(self.splits, s)) is not None},
            "curves": {m: {str(k): {"val_error": v, "test_error": t,
                                    **({"target_error": self.target_curves[m][k]}
                                       if self.target_curves else {})}
                           for k, (v, t) in c.items()}
                       for m, c in self.curves.items()},
            "fresh": self.fresh,
            "primary": primary(self),
            "diagnosis": None if self.diagnosis is None else self.diagnosis.as_dict(),
            "removed": int(len(self.removed())),
            "repair": None if self.repair is None else self._repair_json(),
            "seconds": self.seconds,
        }

    def _repair_json(self) -> dict:
        """The rounds, with the removed rows named by their row in the input (or position in
        the dataset), as scores.csv names them."""
        assert self.repair is not None
        info = self.repair.as_dict()
        index = self.splits.train.index
        info["removed"] = index[self.repair.removed].tolist()
        for r, done in zip(info["rounds"], self.repair.rounds, strict=True):
            r["removed"] = index[done.removed].tolist()
        return info


def split(tables: dict[str, Table], cfg: CleanseConfig, val: Table | None = None,
          target: Table | None = None) -> Splits:
    """Train / validation / test: the source's test split if it has one, else ``cfg.test`` of
    the data; ``cfg.val`` of the rest for validation (stratified, seeded), or the given
    ``val`` table. A ``target`` (where the model must work) is halved at random: one half is
    the query, the other measures the target error; neither is trained on or validated on."""
    if "train" in tables and "test" in tables:
        pool, test = tables["train"], tables["test"]
    else:
        (data,) = tables.values()
        rest, held = _split(data, cfg.test, cfg.seed, "test")
        pool, test = data.take(rest), data.take(held)
    if val is None:
        rest, held = _split(pool, cfg.val, (cfg.seed + 1) % SEEDS, "val")
    else:
        rest, held = np.arange(len(pool.y)), np.empty(0, dtype=np.int64)
    if cfg.subset is not None:
        if not 1 <= cfg.subset <= len(rest):
            raise ConfigError(f"subset must be in [1, {len(rest)}], got {cfg.subset}")
        rng = np.random.default_rng(cfg.seed)
        rest = np.sort(rng.permutation(rest)[:cfg.subset])
        held = np.sort(rng.permutation(held)[:cfg.subset])  # a quick run evaluates quickly:
        if len(test.y) > cfg.subset:  # validation and test of at most the subset's size
            test = test.take(np.sort(rng.permutation(len(test.y))[:cfg.subset]))
    train, val = pool.take(rest), pool.take(held) if val is None else val
    halves = _halves(target, (cfg.seed + 2) % SEEDS) if target is not None else ()
    for t in (val, test, *halves):  # evaluated again and again; only training streams images
        if isinstance(t.X, ImageFiles):
            t.X = np.asarray(t.X)
    _check_classes(train)
    if not train.image:  # standardise tabular features with the training statistics
        scaler = StandardScaler().fit(train.X)
        for t in (train, val, test, *halves):
            t.X = scaler.transform(t.X).astype(np.float32)
    return Splits(train, val, test, *halves)


def _halves(target: Table, seed: int) -> tuple[Table, Table]:
    """The target's query half and its held-out half, at random."""
    n = len(target.y)
    if n < 2:
        raise DataError(f"the target set has {n} instance(s); it needs at least 2, half to "
                        "query and half to measure the target error")
    order = np.random.default_rng(seed).permutation(n)
    return target.take(np.sort(order[: n // 2])), target.take(np.sort(order[n // 2:]))


def _check_classes(train: Table) -> None:
    """Every class needs training instances; one alone is allowed, with a warning."""
    counts = np.bincount(train.y, minlength=len(train.classes))
    names = np.asarray(train.classes, dtype=object)
    if (counts == 0).any():
        raise DataError(f"the classes {names[counts == 0][:10].tolist()} have no training "
                        "instance once validation and test data are held out; drop their rows, "
                        "merge them into other classes, or use more data")
    if (counts == 1).any():
        warnings.warn(f"the classes {names[counts == 1][:10].tolist()} have a single training "
                      "instance each; the model can hardly learn them", stacklevel=3)


def _split(table: Table, size: float, seed: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    n = len(table.y)
    count = int(size) if size >= 1 else round(size * n)
    if not 1 <= count < n - 1:
        raise DataError(f"{name}={size} leaves no data: it asks for {count} of {n} instances")
    counts = np.bincount(table.y)
    stratify = table.y if counts[counts > 0].min() >= 2 and count >= len(counts) else None
    return train_test_split(np.arange(n), test_size=count, random_state=seed, stratify=stratify)


def device(cfg: CleanseConfig) -> torch.device:
    """Where the run trains: ``cfg.device``, auto being the GPU when torch sees one."""
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def choose_model(cfg: CleanseConfig, shape: tuple[int, ...]) -> tuple[str, RandomCrop | None]:
    """The model name, and the augmentation (crops for a CNN on images, flips for colour)."""
    name, image = cfg.model, len(shape) == 3
    if name == "auto":
        square = image and shape[1] == shape[2]
        name = ("cifar-cnn" if square and shape[0] == 3 and shape[1] % 8 == 0 else
                "mnist-cnn" if square and shape[1] >= MNIST_CNN_MIN_SIZE else "mlp")
    if name.endswith("cnn") and not image:
        raise ConfigError(f"model {name!r} needs images, and the data is a table (instances of "
                          f"{math.prod(shape)} features); use 'mlp' or 'logreg'")
    augment = cfg.augment
    if augment == "auto":
        augment = ("none" if not name.endswith("cnn") else
                   "crop+flip" if shape[0] == 3 else "crop")
    if augment != "none" and len(shape) != 3:
        raise DataError(f"augment {augment!r} needs images; the data has instances of shape "
                         f"{shape}")
    crop = None if augment == "none" else RandomCrop(padding=4 if shape[0] == 3 else 2,
                                                     flip=augment == "crop+flip")
    return name, crop


@torch.no_grad()
def outputs(model: torch.nn.Module, table: Table, chunk: int = 2048) -> torch.Tensor:
    """The outputs of ``model`` (in eval mode, no gradient) for each instance of ``table``,
    on the CPU: (N, classes)."""
    p = next(model.parameters())
    n = len(table.y)  # in chunks: images of a folder are read as they are needed
    with torch.no_grad(), mode(model, train=False):
        return torch.cat([model(torch.as_tensor(table.X[a:a + chunk]).to(p.device, p.dtype))
                          .cpu() for a in range(0, n, chunk)])


def wrong(model: torch.nn.Module, table: Table, chunk: int = 2048) -> np.ndarray:
    """Whether ``model`` (in eval mode) misclassifies each instance of ``table``: (N,)."""
    return outputs(model, table, chunk).argmax(1).numpy() != table.y


def error(model: torch.nn.Module, table: Table) -> float:
    """Misclassification rate of ``model`` (in eval mode) on ``table``."""
    return float(wrong(model, table).mean())


def cleanse(splits: Splits, cfg: CleanseConfig = CleanseConfig(), progress: bool = True) -> Result:
    """The whole job after :func:`split`: fit with recording, diagnose the problem (for
    ``auto``), score by each method, and for each k remove the k first instances, retrain on
    the identical schedule, measure error; for the method the report leads with, refine k by
    bisection, and with a target repair in rounds (:func:`sgdinfluence.repair`)."""
    train, val, target = splits.train, splits.val, splits.target
    n = len(train.y)
    ks = sorted(set(cfg.ks)) if cfg.ks is not None else [k for k in PAPER_KS if k <= n // 2]
    if ks and ks[-1] >= n:
        raise ConfigError(f"k = {ks[-1]} would remove the whole training set of {n} instances; "
                         f"choose k < {n}")
    rounds = (cfg.rounds if cfg.rounds is not None else
              "auto" if target is not None and cfg.retrain != "last" else 1)
    if target is None and (rounds != 1 or cfg.retrain == "fresh"):
        raise ConfigError("rounds other than 1 and retrain='fresh' repair a failure on a target "
                          "set, and there is none; give a target set, or leave them out")
    if target is not None and cfg.retrain == "last" and rounds != 1:
        raise ConfigError("rounds re-fit the kept rows and choose k by retraining all epochs; "
                          "with retrain='last' use rounds=1, or retrain 'all' or 'fresh'")
    name, crop = choose_model(cfg, train.X.shape[1:])
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    run = train_model(name, crop, train, cfg, cfg.seed, progress=progress)
    seconds["training"] = time.perf_counter() - start
    query = val if target is None else target
    scores: dict[str, np.ndarray] = {}
    checked = None

    def score_of(method: str) -> np.ndarray:
        """A method's scores, computed once (the diagnosis and the curves share them)."""
        nonlocal checked
        if method not in scores:
            began = time.perf_counter()
            if method == "sgd" and cfg.reliability:  # the same sweep, and what it means
                checked = reliability(run, (query.X, query.y), sample=min(cfg.reliability, n),
                                      progress=progress)
                scores[method] = checked.all_scores
            else:
                scores[method] = methods.score(run, method, (query.X, query.y),
                                               seed=cfg.seed, progress=progress)
            seconds[method] = time.perf_counter() - began
        return scores[method]

    diagnosis = None
    if AUTO in cfg.methods:
        began = time.perf_counter()
        diagnosis = diagnose(run, train, val, target, score_of, wrong)
        seconds["diagnosis"] = time.perf_counter() - began
    asked = list(dict.fromkeys(diagnosis.method if m == AUTO and diagnosis else m
                               for m in cfg.methods))
    for method in asked:
        score_of(method)
    for method in [m for m in scores if m not in asked]:  # the diagnosis' evidence only
        del scores[method]
    scores = {m: scores[m] for m in asked}
    lead = diagnosis.method if diagnosis else None
    result = Result(cfg, splits, run, name, scores, {}, seconds,
                    reliability=None if checked is None else checked.as_dict(),
                    diagnosis=diagnosis, primary_method=lead)
    lead = primary(result)
    check = splits.target_check  # misclassified on validation, then on the held-out target
    from_epoch = run.epochs - 1 if cfg.retrain == "last" else 0
    by_rounds = target is not None and cfg.retrain != "last"

    def measured(model: torch.nn.Module) -> Measured:
        return Measured(val=wrong(model, val), target=None if check is None else
                        wrong(model, check), test=error(model, splits.test))

    start = time.perf_counter()
    base = measured(run.model)
    grid_methods = [m for m in scores if not (by_rounds and m == lead)]
    bar = tqdm(total=len(ks) * len(grid_methods), desc=f"retraining ({cfg.retrain})",
               disable=not progress, leave=False)
    for method in grid_methods:
        order, curve = result.order(method), {0: base}
        for k in ks:
            curve[k] = measured(run.retrain(order[:k], from_epoch=from_epoch))
            bar.update()
        if method == lead and cfg.refine:  # bisect toward the smallest k as good as the best

            def removal(k: int, order=order) -> Measured:
                return measured(run.retrain(order[:k], from_epoch=from_epoch))

            curve = choose_k(removal, (), known=curve)[1]
        _keep_curve(result, method, curve)
    bar.close()
    seconds["retraining"] = time.perf_counter() - start
    if by_rounds:
        start = time.perf_counter()
        result.repair = _repair(result, lead, ks, rounds, name, crop, measured, progress)
        _keep_curve(result, lead, result.repair.rounds[0].curve if result.repair.rounds
                    else {0: base})
        seconds["rounds"] = time.perf_counter() - start
    result.curves = {m: result.curves[m] for m in scores}  # in the order asked
    if cfg.fresh_seeds:
        start = time.perf_counter()
        result.fresh = fresh_check(result, name, crop, progress)
        seconds["fresh training"] = time.perf_counter() - start
    return result


def _keep_curve(result: Result, method: str, curve: dict[int, Measured]) -> None:
    """A method's measurements as the result keeps them (curves, target curves, mistakes)."""
    curve = dict(sorted(curve.items()))
    result.curves[method] = {k: (m.val_error, float(m.test if m.test is not None else np.nan))
                             for k, m in curve.items()}
    result.mistakes[method] = {k: m.judged for k, m in curve.items()}
    if result.splits.target_check is not None:
        result.target_curves[method] = {k: float(m.target.mean()) for k, m in curve.items()
                                        if m.target is not None}


def _repair(result: Result, method: str, ks: list[int], rounds: int | str, name: str, crop,
            measured, progress: bool) -> Repair:
    """The target repaired in rounds by ``method``: each round ranks the run of the kept rows
    (the first, this result's), chooses k on the grid ``ks`` refined, and re-fits the kept
    rows (with retrain 'fresh': a new seed each round)."""
    cfg, splits, run = result.config, result.splits, result.run
    target = splits.target
    assert target is not None and splits.target_check is not None
    n = len(splits.train.y)
    trainings = [0]

    def rank(r: Run, query) -> np.ndarray:
        if r is run:
            return result.scores[method]
        return methods.score(r, method, query, seed=cfg.seed, progress=progress)

    rank.__name__ = method  # what results.json names the repair's method

    def refit(keep: np.ndarray) -> Run:
        trainings[0] += 1
        seed = cfg.seed if cfg.retrain != "fresh" else (cfg.seed + 1000 * trainings[0]) % SEEDS
        return train_model(name, crop, splits.train.take(keep), cfg, seed)

    limit = cfg.max_removed or min(n - 1, max(ks[-1] if ks else 0, n // 5))
    return repair(run, (target.X, target.y), splits.target_check, val=splits.val,
                  test=splits.test, method=rank, rounds=rounds, ks=ks or GRID,
                  refine=cfg.refine, retrain="fresh" if cfg.retrain == "fresh" else "all",
                  max_removed=limit, max_trainings=cfg.max_trainings,
                  mistakes=lambda model, table: wrong(model, table), refit=refit,
                  progress=progress)


def train_model(name: str, crop, table: Table, cfg: CleanseConfig, seed: int,
                store="memory", progress: bool = False) -> Run:
    """The model ``name`` initialised from ``seed`` and trained on ``table`` with the
    configuration's settings and that seed, recorded."""
    torch.manual_seed(seed)
    model = build(name, table.X.shape[1:], len(table.classes)).to(device(cfg))
    data = TableDataset(table) if isinstance(table.X, ImageFiles) else (table.X, table.y)
    return fit(model, data, epochs=cfg.epochs, batch_size=min(cfg.batch_size, len(table.y)),
               lr=cfg.lr, weight_decay=cfg.weight_decay, seed=seed, augment=crop,
               optimizer=cfg.optimizer, momentum=cfg.momentum, nesterov=cfg.nesterov,
               max_grad_norm=cfg.max_grad_norm, clip_grad_value=cfg.clip_grad_value,
               store=store, progress=progress)


def primary(result: Result) -> str:
    """The method a report leads with: the one ``auto`` chose, else the first influence
    method asked for."""
    chosen = getattr(result, "primary_method", None)
    if chosen is not None:
        return chosen
    return next((m for m in result.scores if methods.METHODS[m].kind == methods.INFLUENCE),
                next(iter(result.scores)))


def best_k(result: Result, method: str, z: float = 1.645) -> int:
    """The k removed (``sgdinfluence.core.repair.pick``): among k = 0 and the k whose removal
    turned significantly more of the judged instances (validation, then the target's held-out
    half) from wrong to right than from right to wrong (McNemar's test, one-sided, 5%), the
    best has the lowest validation error (with a target, the mean of the validation error
    and the error on the target's held-out half); the smallest of them that the best is not
    significantly better than is chosen. Chosen on data the query never saw, without looking
    at the test set: a gain of a few instances in a thousand is noise, and removing data on
    noise costs accuracy elsewhere."""
    n = len(next(iter(result.mistakes[method].values()))) if not result.target_curves else \
        len(result.splits.val.y)
    curve = {k: Measured(val=m[:n], target=m[n:] if result.target_curves else None)
             for k, m in result.mistakes[method].items()}
    return pick(curve, z)


def fresh_check(result: Result, name: str, crop, progress: bool) -> dict:
    """Test error of models trained afresh (new initialisation, shuffles and seeds) on all the
    training data and without the instances the report removes (its method, its k chosen on
    validation; with rounds, every round's): whether the gain belongs to the recorded run or
    carries over to the data."""
    cfg, train, test = result.config, result.splits.train, result.splits.test
    method = primary(result)
    gone = result.removed()
    k = len(gone)
    keep = np.setdiff1d(np.arange(len(train.y)), gone)
    errors: dict[str, list[float]] = {"all": [], "cleaned": []}
    for s in tqdm(range(1, cfg.fresh_seeds + 1), desc="fresh training", disable=not progress,
                  leave=False):
        for case, rows in (("all", np.arange(len(train.y))), ("cleaned", keep))[:2 if k else 1]:
            seed = (cfg.seed + 1000 * s) % SEEDS
            run = train_model(name, crop, train.take(rows), cfg, seed, store="replay")
            errors[case].append(error(run.model, test))
    if not k:  # nothing removed: the same trainings
        errors["cleaned"] = errors["all"]
    return {"method": method, "k": int(k), "seeds": cfg.fresh_seeds, "test_error": errors}
