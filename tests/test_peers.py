"""benchmarks/peers.py maps each peer's sign to ours: on a small logistic regression every
peer's ranking agrees with leave-one-out (positive Kendall's τ). Skipped unless the `peers`
extra (Kronfluence, dattri) is installed; CI does not install it."""

import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("kronfluence")
pytest.importorskip("dattri")

import sgdinfluence as sgi  # noqa: E402
from sgdinfluence import metrics  # noqa: E402

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import peers  # noqa: E402


def test_every_peer_agrees_with_leave_one_out_in_sign():
    torch.manual_seed(0)
    X = torch.randn(60, 5, dtype=torch.float64)
    y = (X[:, 0] + 0.5 * torch.randn(60, dtype=torch.float64) > 0).double()
    run = sgi.fit(torch.nn.Linear(5, 1).double(), (X, y), loss="bce", epochs=3, batch_size=5,
                  lr=0.1, weight_decay=0.01, seed=0)
    val = X[:20], y[:20]
    loo = sgi.influence(run, val, method="loo")
    scores = peers.kronfluence_scores(run, (X, y), val, "bce", (None,))
    scores |= peers.dattri_scores(run, (X, y), val, "bce", (None,), solvers=("explicit", "cg"))
    assert len(scores) == 7
    for name, (s, _) in scores.items():
        assert s.shape == (20, 60)
        assert metrics.kendall_tau(s.mean(0), loo) > 0.5, name
