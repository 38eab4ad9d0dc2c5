"""The demo: scikit-learn's digits with 10% of the training labels flipped. Does
SGD-influence find them, and does removing what it flags help? (No download.)"""

from __future__ import annotations

import textwrap
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ...errors import ConfigError
from .. import report
from ..cleanse import CleanseConfig, best_k, cleanse, split
from ..data import load
from ..data.files import flip_labels
from ..methods import METHODS

NOISE = 0.1
SHOWN = 10
WIDTH = 92  # printed lines


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
                                ks=(30, 60, 120), retrain="all", refine=False)  # the
    # table compares every method at the same k; refined k would be sgd's alone
    splits = split(load("digits"), cleanse_cfg)
    train = splits.train
    true = train.y.copy()
    train.y, flipped = flip_labels(true, NOISE, 10, np.random.default_rng(cfg.seed))
    train.notes = np.where(np.isin(np.arange(len(true)), flipped),
                           np.char.add("flipped; true label ", true.astype(str)), "")
    result = cleanse(splits, cleanse_cfg, progress=progress)

    story = tell(result, true, flipped)
    report.write(result, out, title="sgdinfluence demo: digits with flipped labels",
                 notes=story["notes"], overwrite=overwrite, command="demo")
    return {"config": asdict(cfg), "text": story["text"], "summary": report.summary(result),
            "warning": report.training_warning(result), "found": story["found"]["sgd"],
            "flipped": len(flipped)}


def tell(result, true: np.ndarray, flipped: np.ndarray) -> dict:
    """The demo's one story, from the run's own numbers: which images SGD-influence flags,
    how many flipped labels each method finds, the test error after removing each method's k
    first (marked: the k its validation error chooses; SGD-influence's is the report's k and
    sentence), the noise at this test size, and what it means. Returns {"text" to print,
    "notes" (the meaning, for the report), "found" (flipped labels found, per method)}."""
    train, test = result.splits.train, result.splits.test
    m, n_test = len(flipped), len(test.y)
    order = result.order("sgd")
    label = {meth: METHODS[meth].label for meth in result.curves}
    width = max(map(len, label.values()))
    found = {meth: int(np.isin(result.order(meth)[:m], flipped).sum()) for meth in result.curves}
    lines = [*_wrap(f"digits: {len(train.y):,} training images, {m} of them with a flipped "
                    f"label; {len(result.splits.val.y)} validation and {n_test} test images, "
                    f"labels untouched; an MLP, {result.run.num_steps} SGD steps."), "",
             f"the {SHOWN} training images SGD-influence flags as most harmful",
             "(leaving one out of the run lowers validation loss most):",
             f"{'rank':>4} {'index':>6} {'score':>11} {'label':>6} {'true':>5}"]
    for r, j in enumerate(order[:SHOWN]):
        mark = "  <- flipped" if j in flipped else ""
        lines.append(f"{r + 1:4d} {train.index[j]:6d} {result.scores['sgd'][j]:11.3e} "
                     f"{train.y[j]:6d} {true[j]:5d}{mark}")
    lines += ["", f"flipped labels among the {m} images each method puts first:"]
    lines += [f"  {label[meth]:<{width}} {found[meth]:4d}  ({found[meth] / m:.0%})"
              for meth in sorted(found, key=lambda meth: -found[meth])]
    ks = sorted(result.curves["sgd"])
    chosen = {meth: best_k(result, meth) for meth in result.curves}
    before = result.curves["sgd"][0][1]
    band = report.interval(before, n_test)
    lines += ["", "test error after removing each method's k first and retraining:",
              f"  {'k':<{width}}" + "".join(f"{k:>8}" for k in ks)]
    for meth, curve in result.curves.items():
        lines.append(f"  {label[meth]:<{width}}" + "".join(
            f"{curve[k][1]:7.2%}" + ("*" if k == chosen[meth] else " ") for k in ks))
    lines += _wrap(f"* the k that method's validation error chooses (0: no removal passed its "
                   f"significance test). {n_test} test images: one "
                   f"is {1 / n_test:.2%}, and another draw of {n_test} could put the error of "
                   f"{before:.2%} anywhere from {band[0]:.2%} to {band[1]:.2%} (95%).", "  ")
    notes = meaning(result, found, chosen, band)
    lines += ["", *_wrap(report.summary(result))]
    for note in notes:
        lines += ["", *_wrap(note)]
    return {"text": "\n".join(lines), "notes": notes, "found": found}


def _wrap(text: str, indent: str = "") -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=indent,
                         break_on_hyphens=False)


def meaning(result, found: dict[str, int], chosen: dict[str, int],
            band: tuple[float, float]) -> list[str]:
    """What the numbers say, in words that follow this run's numbers: what the loss ranking
    finds, what SGD-influence adds, and whether removing either's picks helped beyond chance
    (``band``: the 95% interval of the test error as trained, at this test size)."""
    train, n_test = result.splits.train, len(result.splits.test.y)
    sgd, loss = found["sgd"], found.get("training-loss")
    after = {meth: result.curves[meth][k][1] for meth, k in chosen.items()}
    before = result.curves["sgd"][0][1]
    said = []
    if loss is not None and loss > sgd:
        said.append(f"The training loss finds more of the flipped labels ({loss} against {sgd}): "
                    "a flipped label is hard to fit, so its loss stays high. To detect plain "
                    "label noise, rank by loss, or by cleanlab (sgdinfluence experiment "
                    "noisy-labels compares them).")
    elif loss is not None:
        said.append(f"SGD-influence finds {'as many of the' if sgd == loss else 'more'} flipped "
                    f"labels {'as' if sgd == loss else 'than'} the training loss ({sgd} against "
                    f"{loss}).")
    text = ("SGD-influence asks a different question from the loss: which images, left out "
            "of this very run, lower the validation loss.")
    order = result.order("sgd")[:SHOWN]
    clean = [r for r, j in enumerate(order) if train.notes is None or not train.notes[j]]
    if clean:
        text += (f" So it also flags correctly labelled images it estimates to hurt: "
                 f"{len(clean)} of its first {SHOWN} (rank{'s' if len(clean) > 1 else ''} "
                 f"{', '.join(str(r + 1) for r in clean)}).")
        checked = result.reliability or {}
        literal = [(r, checked["truth"][checked["checked"].index(int(order[r]))])
                   for r in clean if int(order[r]) in checked.get("checked", [])]
        if literal:  # left out of the run for real by the reliability check
            text += (" Left out for real and retrained: " + "; ".join(
                f"rank {r + 1} {'lowers' if t < 0 else 'raises'} validation loss by {abs(t):.3f}"
                for r, t in literal) + ".")
    if chosen["sgd"]:
        text += (f" Removing its {chosen['sgd']} first takes test error from {before:.2%} to "
                 f"{after['sgd']:.2%}, " + ("below" if after["sgd"] < band[0] else "inside") +
                 " the interval chance leaves.")
    else:
        text += " Its validation error found no k worth removing."
    if loss is not None and chosen["training-loss"]:
        gap = round((after["training-loss"] - after["sgd"]) * n_test)
        half = (band[1] - band[0]) / 2
        text += (f" The training loss's {chosen['training-loss']} first give "
                 f"{after['training-loss']:.2%}, {abs(gap)} test image"
                 f"{'s' if abs(gap) != 1 else ''} {'more' if gap >= 0 else 'fewer'} wrong: "
                 + ("within" if abs(gap) / n_test <= half else "beyond") + " chance here.")
    said.append(text)
    said.append("Where the harm shows only on some examples, such as a backdoor's triggered "
                "inputs or a shortcut, the model fits the poisoned rows easily and their loss is "
                "low; SGD-influence with those examples as its query is the tool for that: "
                "sgdinfluence cleanse DATA --target FILE (sgdinfluence experiment scenarios "
                "measures both).")
    return said

def format_summary(summary: dict) -> str:
    return summary["text"]
