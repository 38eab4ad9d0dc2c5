"""The paper's Sec 7.2 as a command: data cleansing on MNIST and CIFAR-10 with CNNs.

Per seed: train the paper's CNN (20 epochs of SGD, batch 64, lr 0.05, random crops, plus
flips on CIFAR-10) on 50,000 / 40,000 images with 10,000 held out for validation, score the
training images, remove the k most harmful for the paper's k, retrain, and measure test
error. Each seed's full report goes to ``seed-<s>/``; ``results.json`` holds the mean curves.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ...errors import ConfigError
from .. import report
from ..cleanse import PAPER_KS, CleanseConfig, cleanse, split
from ..data import load_data
from ..methods import METHODS
from ..output import check_output, output_dir

SETTINGS = {  # the paper's fixed list of k: no bisection between them
    "mnist": CleanseConfig(model="mnist-cnn", val=10000, augment="crop", refine=False),
    "cifar10": CleanseConfig(model="cifar-cnn", val=10000, augment="crop+flip", refine=False),
}
# read from the authors' figure (retrain all): test misclassification, nothing removed -> best
PAPER = {"mnist": "0.0086 with nothing removed -> 0.0075 at k = 30",
         "cifar10": "0.168 with nothing removed -> 0.156 at k = 300-600"}


@dataclass(frozen=True)
class CleansingConfig:
    """One Sec 7.2 setting; ``lr`` / ``epochs`` None take the paper's 0.05 / 20."""

    dataset: str
    seeds: int = 1
    subset: int | None = None  # train on this many images (quick runs)
    retrain: str = "last"
    methods: tuple[str, ...] = ("sgd", "sgd-last", "random")
    ks: tuple[int, ...] | None = None  # None: the paper's k up to a fifth of the training set
    lr: float | None = None
    epochs: int | None = None
    optimizer: str = "sgd"
    momentum: float = 0.0
    nesterov: bool = False
    device: str = "auto"  # as CleanseConfig's: the GPU when torch sees one

    def __post_init__(self) -> None:
        if self.dataset not in SETTINGS:
            raise ConfigError(f"unknown dataset {self.dataset!r}; use one of {list(SETTINGS)}")
        if self.seeds < 1:
            raise ConfigError(f"seeds must be >= 1, got {self.seeds}")
        object.__setattr__(self, "methods", tuple(self.methods))
        # the rest is checked as the cleanse command checks its own options
        self.cleanse_config(seed=0)

    def cleanse_config(self, seed: int) -> CleanseConfig:
        """The cleanse command's configuration for one seed: the paper's, with these options."""
        paper = SETTINGS[self.dataset]
        return replace(paper, seed=seed, subset=self.subset, retrain=self.retrain,
                       methods=self.methods, ks=self.ks, lr=self.lr or paper.lr,
                       epochs=self.epochs or paper.epochs, optimizer=self.optimizer,
                       momentum=self.momentum, nesterov=self.nesterov, device=self.device)


def default_out(cfg: CleansingConfig) -> str:
    return f"out/cleansing-{cfg.dataset}"


def run(cfg: CleansingConfig, out: str | Path, *, data_dir=None, overwrite: bool = False,
        progress: bool = True) -> dict:
    """Run ``cfg.seeds`` seeds and write their reports and the mean curves into ``out``."""
    check_output(out, overwrite)  # before any work
    tables = load_data(cfg.dataset, root=data_dir)
    curves: dict[str, dict[int, list[float]]] = {}
    runs = []
    with output_dir(out, overwrite, command="experiment cleansing") as tmp:
        for seed in range(cfg.seeds):
            seed_cfg = cfg.cleanse_config(seed)
            if seed_cfg.ks is None:
                n = cfg.subset or len(tables["train"].y) - seed_cfg.val
                seed_cfg = replace(seed_cfg, ks=tuple(k for k in PAPER_KS if k <= n // 5))
            result = cleanse(split(tables, seed_cfg), seed_cfg, progress=progress)
            report.write(result, tmp / f"seed-{seed}",
                         title=f"Cleansing {cfg.dataset}, seed {seed}")
            runs.append(result.to_json())
            grid = {0, *seed_cfg.ks}  # the k refined for the leading method are its own
            for m, curve in result.curves.items():
                for k, (_, test) in curve.items():
                    if k not in grid:
                        continue
                    curves.setdefault(m, {}).setdefault(k, []).append(test)
        summary = {
            "dataset": cfg.dataset, "seeds": cfg.seeds, "subset": cfg.subset,
            "retrain": cfg.retrain, "experiment": asdict(cfg),
            "train_size": runs[0]["sizes"]["train"], "paper": PAPER[cfg.dataset],
            "config": runs[0]["config"],
            "test_error": {m: {str(k): {"mean": float(np.mean(v)), "std": float(np.std(v))}
                               for k, v in c.items()} for m, c in curves.items()},
            "seconds": [r["seconds"] for r in runs],
        }
        (tmp / "results.json").write_text(json.dumps(summary, indent=2))
    return summary


def format_summary(summary: dict) -> str:
    """Mean test misclassification per method (rows) and k (columns)."""
    errors = summary["test_error"]
    ks = list(next(iter(errors.values())))
    width = max(len(METHODS[m].label) for m in errors) + 2
    lines = [f"{summary['dataset']}: {summary['train_size']:,} training images, "
             f"{summary['seeds']} seed(s), retrain {summary['retrain']}; test misclassification",
             f"{'k':<{width}}" + "".join(f"{k:>8}" for k in ks)]
    for m, row in errors.items():
        lines.append(f"{METHODS[m].label:<{width}}" + "".join(f"{row[k]['mean']:8.4f}" for k in ks))
    lines.append(f"paper (Hara et al. 2019, Fig. 3): {summary['paper']}")
    return "\n".join(lines)
