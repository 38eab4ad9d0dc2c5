"""Which method when (``methods=("auto", ...)``): what kind of problem the trained model and
its data show, and the method that fits it.

Two measurements, both from the run as trained, neither touching the target's held-out half
nor the test set:

- the training rows the model misfits (predicts another class than their label; the highest
  training losses), against its validation error: a model disagrees with more of its
  training labels than it gets wrong on validation when the training labels are worse than
  the validation labels (label noise);
- the share of the harm SGD-influence estimates for the query that those misfit rows carry
  (the estimated change of the query when the m misfit rows are left out, over that of the
  m rows SGD-influence ranks most harmful): a target failure the high-loss rows explain is
  label noise; one they do not is target-specific (a backdoor's poisoned rows, a shortcut's
  marked ones and a class mislabelled as another are fitted, so their loss is low).

The kinds and the method each runs:

- ``target``, target-specific harm: the target's error (its query half) is significantly
  above the validation error and the misfit rows carry less than half the estimated harm:
  SGD-influence on the target over the epochs' ends (``sgd-epochs``, what ``sgi.select``
  ranks by);
- ``noise``, label noise: otherwise, when the misfit training rows are significantly more
  than the validation error, or carry at least half the estimated harm: the training loss,
  highest first (``training-loss``), the detector that ranks flipped labels best here;
- ``none``, no clear failure: SGD-influence on the query (``sgd-epochs`` on a target, the
  paper's ``sgd`` on validation); k is then chosen only where a removal helps significantly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from ..core.repair import Z, exceeds
from ..core.train import Run
from .data.files import Table

EXPLAINED = 0.5  # the share of the estimated harm that makes the high-loss rows its cause
KINDS = {"target": "target-specific harm", "noise": "label noise", "none": "no clear failure"}


@dataclass(frozen=True)
class Diagnosis:
    """The kind of problem (a key of ``KINDS``), the method ``auto`` runs, the sentence that
    says why, and the numbers behind it."""

    kind: str
    method: str
    reason: str
    val_error: float
    target_error: float | None  # on the target's query half
    target_above: bool  # significantly above the validation error
    misfit: float  # the share of training rows the model misfits
    misfit_above: bool  # significantly above the validation error
    misfit_classes: dict[str, float]  # the labels of the misfit rows: class -> share
    explained: float  # the share of the estimated harm the misfit rows carry
    influence_method: str  # whose estimate that is

    def as_dict(self) -> dict:
        return {"kind_name": KINDS[self.kind], **asdict(self)}


def diagnose(run: Run, train: Table, val: Table, target: Table | None,
             scores: Callable[[str], np.ndarray],
             wrong: Callable[[object, Table], np.ndarray], z: float = Z) -> Diagnosis:
    """The diagnosis of ``run`` (trained on ``train``); ``scores(method)`` gives a
    registered method's scores (cached by the caller: the method chosen reuses them),
    ``wrong(model, table)`` a model's mistakes."""
    val_wrong = wrong(run.model, val)
    train_wrong = wrong(run.model, train)
    target_wrong = None if target is None else wrong(run.model, target)
    influence_method = "sgd-epochs" if target is not None else "sgd"
    s, loss = scores(influence_method), scores("training-loss")
    n = len(train_wrong)
    m = int(np.clip(train_wrong.sum(), 1, max(1, n // 4)))
    harm = np.sort(s)[:m].sum()
    explained = float(min(1.0, s[np.argsort(loss, kind="stable")[:m]].sum() / harm)) \
        if harm < 0 else 0.0
    target_above = target_wrong is not None and exceeds(target_wrong, val_wrong, z)
    misfit_above = exceeds(train_wrong, val_wrong, z)
    labels = train.y[train_wrong]
    shares = np.bincount(labels, minlength=len(train.classes)) / max(1, len(labels))
    classes = {str(train.classes[c]): float(shares[c]) for c in np.argsort(-shares)
               if shares[c] > 0}
    ev, et, mf = float(val_wrong.mean()), None if target_wrong is None else \
        float(target_wrong.mean()), float(train_wrong.mean())
    carried = (f"the {m:,} training row{'s' * (m != 1)} of highest loss (as many as the model "
               f"misfits, at least one) carr{'y' if m != 1 else 'ies'} {max(explained, 0):.0%} "
               "of the harm SGD-influence estimates")
    if target_above and explained < EXPLAINED:
        kind, method = "target", "sgd-epochs"
        reason = (f"The target's error ({et:.1%} on its query half) is significantly above "
                  f"the validation error ({ev:.1%}), and {carried} for it: a target-specific "
                  "failure (a backdoor, a shortcut, a class mislabelled as another), whose "
                  "rows the model fits, so loss-based detectors miss them; SGD-influence on "
                  "the target ranks them.")
    elif misfit_above or explained >= EXPLAINED:
        kind, method = "noise", "training-loss"
        why = (f"it misfits {mf:.1%} of its training rows, significantly more than its "
               f"validation error ({ev:.1%})" if misfit_above else
               f"{carried} for the {'target' if target is not None else 'validation loss'}")
        reason = (f"Label noise: {why}, labelled {_spread(classes)}. Training labels that "
                  "disagree with what the model learned are ranked best by the training "
                  "loss, highest first.")
    else:
        kind = "none"
        method = influence_method
        said = (f"the target's error ({et:.1%}) is not significantly above the validation "
                f"error ({ev:.1%}), and {carried}" if target is not None else
                f"the model misfits {mf:.1%} of its training rows, not more than its "
                f"validation error ({ev:.1%}), and {carried}")
        reason = (f"No clear failure: {said}. SGD-influence on the "
                  f"{'target' if target is not None else 'validation loss'} ranks; rows are "
                  "removed only where that helps significantly.")
    return Diagnosis(kind, method, reason, ev, et, bool(target_above), mf, misfit_above,
                     classes, explained, influence_method)


def _spread(classes: dict[str, float]) -> str:
    """Where the misfit rows' labels lie, in words."""
    if not classes:
        return "in no class"
    top = list(classes.items())[:3]
    said = ", ".join(f"{name} {share:.0%}" for name, share in top)
    more = f" and {len(classes) - 3} more classes" if len(classes) > 3 else ""
    return f"{said}{more}"
