"""Does a run's SGD-influence mean leave-one-out? A measure that says so with the scores.

The sweep is the exact derivative of the run; how far that derivative predicts leaving an
instance out depends on how nonlinear the run is in its data, which a deep network with a
large rate can make it. Two readings, both cheap beside the sweep itself:

- the adjoint's growth: ‖u‖ at the start of each epoch over ‖u‖ at θ[T], taken during the
  sweep. A first-order estimate carried through a sweep that multiplies u by 10³ amplifies
  every nonlinearity it meets by as much;
- agreement: the instances with the most negative and the most positive scores (those a user
  acts on) are left out literally, on the identical schedule, all at once (vectorised
  leave-one-out), and compared with their scores: Spearman's correlation, and the scale (the
  least-squares slope of the scores on the truth: 1 when the sizes agree).

The verdict: "holds" (Spearman ≥ 0.8 and a scale in [0.5, 2]), "ranking only" (Spearman ≥
0.8 but a scale outside: the order holds, the sizes do not) or "does not hold"; "cannot tell"
where no checked leave-out moves the query beyond its float precision (a float32 deep run:
check it in float64). The advice names what to do. Eight instances make a rough check:
``sample=`` takes more.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ...errors import Error
from .. import metrics
from ..queries import PerExample, Query
from ..train import Run

HOLDS, RANKING, NOT = "holds", "ranking only", "does not hold"
UNRESOLVED = "cannot tell"  # leaving out any checked instance changes Q below its precision


@dataclass
class Reliability:
    """What a run's scores mean; ``as_dict()`` is what results.json keeps."""

    growth: list[float]  # ‖u‖ at the start of each epoch, epochs in order, over ‖u(θ[T])‖
    checked: list[int]  # the instances left out literally
    scores: list[float]  # their SGD-influence
    truth: list[float]  # their leave-one-out change of the query, on the identical schedule
    spearman: float
    scale: float
    verdict: str
    advice: str
    all_scores: np.ndarray = field(repr=False)  # (N,) the sweep's scores, for the caller

    def as_dict(self) -> dict:
        out = asdict(self)
        del out["all_scores"]
        return out


def reliability(run: Run, query, *, sample: int = 8, progress: bool = False) -> Reliability:
    """The sweep's scores for ``query`` (a single query: a validation set's mean loss or a
    callable) with what they mean on this run: the adjoint's growth and their agreement with
    literal leave-one-out on ``sample`` instances (half the most harmful, half the most
    helpful). ``reliability(...).all_scores`` are the scores ``influence`` gives."""
    from . import _statistics, math_attention
    from .loo import leave_out
    from .sgd import sgd_influence

    if not isinstance(run, Run):
        raise TypeError(f"run must be a Run from sgi.fit or sgi.load_run, got {type(run).__name__}")
    run.check()
    if isinstance(query, (list, PerExample)):
        raise Error("reliability takes a single query (a validation set's mean loss or a "
                    "callable), not a list or PerExample")
    if isinstance(sample, bool) or not isinstance(sample, int) or not 2 <= sample <= run.num_train:
        raise Error(f"sample must be an int in [2, {run.num_train}], got {sample!r}")
    q = Query(run, query)
    norms: list[torch.Tensor] = []
    with math_attention(run):
        U = q.gradients(q.objective.flatten())
        scores = sgd_influence(run, U, progress=progress, statistics=_statistics(run, q),
                               norms=norms)[0].detach().cpu().numpy()
        order = np.argsort(scores, kind="stable")
        checked = sorted(set(order[: sample // 2].tolist()) |
                         set(order[len(order) - (sample - sample // 2):].tolist()))
        truth = leave_out(run, q, [torch.tensor([j]) for j in checked]
                          )[0].detach().cpu().numpy()
    start = float(norms[0][0])
    growth = [float(n[0]) / start if start else float("nan") for n in reversed(norms[1:])]
    mine = scores[checked]
    if not truth.any():  # every change below the query's float precision
        return Reliability(growth, checked, mine.tolist(), truth.tolist(), float("nan"),
                           float("nan"), UNRESOLVED,
                           f"leaving any of the {len(checked)} instances out changes the query "
                           f"by less than its {str(truth.dtype)} precision, so the check "
                           "cannot tell whether the scores mean leave-one-out: check the run "
                           "in float64 (model.double())", scores)
    rho = metrics.spearman(mine, truth)
    scale = float(mine @ truth / (truth @ truth))
    verdict = HOLDS if rho >= 0.8 and 0.5 <= scale <= 2 else RANKING if rho >= 0.8 else NOT
    return Reliability(growth, checked, mine.tolist(), truth.tolist(), rho, scale, verdict,
                       _advice(verdict, rho, scale, max(growth, default=1.0), len(checked)),
                       scores)


def _advice(verdict: str, rho: float, scale: float, growth: float, n: int) -> str:
    said = (f"on {n} instances left out literally, Spearman's r {rho:.2f} and scale "
            f"{scale:.2g} (the adjoint grew {growth:.3g}x over the sweep)")
    if verdict == HOLDS:
        return f"the scores estimate leaving an instance out of this run: {said}"
    if verdict == RANKING:
        return (f"the scores rank the instances as leaving them out does, but their sizes are "
                f"off: {said}; read them as a ranking")
    return (f"the scores do not predict leaving an instance out of this run: {said}; the "
            "sweep is exact, the run is too nonlinear for a first-order estimate: take them as "
            "a first guess and confirm a removal by retraining (sgi.leave_out), or try "
            "epochs='auto' (the last epochs before the adjoint grows 10x; closer on ResNet-18, "
            "not on BERT: docs/design.md, 'Deep models')")
