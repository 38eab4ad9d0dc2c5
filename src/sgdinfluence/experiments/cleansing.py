"""The paper's Sec 7.2 as a command: data cleansing on MNIST and CIFAR-10 with CNNs.

Per seed: train the paper's CNN (20 epochs of SGD, batch 64, lr 0.05, random crops, plus
flips on CIFAR-10) on 50,000 / 40,000 images with 10,000 held out for validation, score the
training images, remove the k most harmful for the paper's k, retrain, and measure test
error. Each seed's full report goes to ``seed-<s>/``; ``results.json`` holds the mean curves.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from .. import report
from .._output import output_dir
from ..cleanse import PAPER_KS, CleanseConfig, cleanse, split
from ..data.files import load_data
from ..errors import ConfigError
from ..methods import METHODS

SETTINGS = {
    "mnist": CleanseConfig(model="mnist-cnn", val=10000, augment="crop"),
    "cifar10": CleanseConfig(model="cifar-cnn", val=10000, augment="crop+flip"),
}
# read from the authors' figure (retrain all): test misclassification, nothing removed -> best
PAPER = {"mnist": "0.0086 with nothing removed -> 0.0075 at k = 30",
         "cifar10": "0.168 with nothing removed -> 0.156 at k = 300-600"}


def run_cleansing(dataset: str, out: str | Path, seeds: int = 1, subset: int | None = None,
                  retrain: str = "last", methods=("sgd", "sgd-last", "random"), ks=None,
                  lr: float | None = None, epochs: int | None = None, data_dir=None,
                  overwrite: bool = False, progress: bool = True) -> dict:
    """Run ``seeds`` seeds and write their reports and the mean curves into ``out``.
    ``lr`` / ``epochs`` replace the paper's 0.05 / 20 when given."""
    if dataset not in SETTINGS:
        raise ConfigError(f"unknown dataset {dataset!r}; use one of {list(SETTINGS)}")
    tables = load_data(dataset, root=data_dir)
    curves: dict[str, dict[int, list[float]]] = {}
    runs = []
    with output_dir(out, overwrite) as tmp:
        for seed in range(seeds):
            cfg = replace(SETTINGS[dataset], seed=seed, subset=subset, retrain=retrain,
                          methods=tuple(methods), ks=tuple(ks) if ks else None,
                          lr=lr or SETTINGS[dataset].lr, epochs=epochs or SETTINGS[dataset].epochs)
            if cfg.ks is None:
                n = subset or len(tables["train"].y) - cfg.val
                cfg = replace(cfg, ks=tuple(k for k in PAPER_KS if k <= n // 5))
            result = cleanse(split(tables, cfg), cfg, progress=progress)
            report.write(result, tmp / f"seed-{seed}", title=f"Cleansing {dataset}, seed {seed}")
            runs.append(result.to_json())
            for m, curve in result.curves.items():
                for k, (_, test) in curve.items():
                    curves.setdefault(m, {}).setdefault(k, []).append(test)
        summary = {
            "dataset": dataset, "seeds": seeds, "subset": subset, "retrain": retrain,
            "train_size": runs[0]["sizes"]["train"], "paper": PAPER[dataset],
            "config": runs[0]["config"],
            "test_error": {m: {str(k): {"mean": float(np.mean(v)), "std": float(np.std(v))}
                               for k, v in c.items()} for m, c in curves.items()},
            "seconds": [r["seconds"] for r in runs],
        }
        (tmp / "results.json").write_text(json.dumps(summary, indent=2))
    return summary


def format_table(summary: dict) -> str:
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
