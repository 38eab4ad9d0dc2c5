"""The demo: scikit-learn's digits with 10% of the training labels flipped. Does
SGD-influence find them, and does removing what it flags help? (No download.)"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ...errors import ConfigError
from .. import report
from ..cleanse import CleanseConfig, cleanse, split
from ..data import load
from ..data.files import flip_labels

NOISE = 0.1
SHOWN = 10


@dataclass(frozen=True)
class DemoConfig:
    epochs: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")


def default_out(cfg: DemoConfig) -> str:
    return "out/demo"


def run(cfg: DemoConfig, out: str | Path, *, data_dir=None, overwrite: bool | str = "demo",
        progress: bool = True) -> dict:
    """Train an MLP on the noisy digits, score, remove, retrain, and write the report to
    ``out`` (replacing a previous demo's, and no other result unless ``overwrite`` is True).
    Returns {"text": what to print, "summary"}."""
    cleanse_cfg = CleanseConfig(model="mlp", epochs=cfg.epochs, batch_size=32, lr=0.1,
                                weight_decay=1e-4, seed=cfg.seed, val=0.15, test=0.2,
                                methods=("sgd", "sgd-last", "training-loss", "random"),
                                ks=(30, 60, 120), retrain="all")
    splits = split(load("digits"), cleanse_cfg)
    train = splits.train
    true = train.y.copy()
    train.y, flipped = flip_labels(true, NOISE, 10, np.random.default_rng(cfg.seed))
    train.notes = np.where(np.isin(np.arange(len(true)), flipped),
                           np.char.add("flipped; true label ", true.astype(str)), "")
    result = cleanse(splits, cleanse_cfg, progress=progress)

    m = len(flipped)
    order = result.order("sgd")
    found = np.isin(order[:m], flipped)
    lines = [f"digits: {len(train.y)} training images, {m} with a flipped label; MLP, "
             f"{result.run.num_steps} SGD steps", "",
             f"the {SHOWN} most harmful training instances (removing them lowers validation "
             "loss most):",
             f"{'rank':>4} {'index':>6} {'score':>11} {'label':>6} {'true':>5}"]
    for r, j in enumerate(order[:SHOWN]):
        mark = "  <- flipped" if j in flipped else ""
        lines.append(f"{r + 1:4d} {train.index[j]:6d} {result.scores['sgd'][j]:11.3e} "
                     f"{train.y[j]:6d} {true[j]:5d}{mark}")
    by_method = ", ".join(f"{name} {np.isin(result.order(meth)[:m], flipped).sum()}"
                          for meth, name in (("sgd-last", "SGD-influence last epoch"),
                                             ("training-loss", "highest training loss"),
                                             ("random", "random")))
    notes = [f"{m} of the {len(train.y)} training labels were flipped at random. Among the "
             f"{m} instances SGD-influence flags as most harmful, {found.sum()} are flipped "
             f"(precision {found.mean():.0%}; random flagging finds about {NOISE:.0%}). The "
             f"same count for the other methods: {by_method}."]
    before, after = result.curves["sgd"][0][1], result.curves["sgd"][120][1]
    lines += ["", f"flipped labels among the {m} most harmful: {found.sum()} (precision "
                  f"{found.mean():.0%}; random would find about {NOISE:.0%}); {by_method}",
              f"test accuracy: {1 - before:.1%} as trained, {1 - after:.1%} after removing the "
              "120 most harmful and retraining on the same schedule",
              report.summary(result)]
    report.write(result, out, title="sgdinfluence demo: digits with flipped labels",
                 notes=notes, overwrite=overwrite, command="demo")
    return {"config": asdict(cfg), "text": "\n".join(lines), "summary": report.summary(result),
            "warning": report.training_warning(result), "found": int(found.sum()),
            "flipped": m}


def format_summary(summary: dict) -> str:
    return summary["text"]
