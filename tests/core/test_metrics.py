import numpy as np
import pytest

from sgdinfluence.core import metrics


def test_rank_correlations():
    a = np.array([0.1, -0.3, 0.2, 0.5, -1.0])
    assert metrics.kendall_tau(a, a) == pytest.approx(1.0)
    assert metrics.kendall_tau(a, -a) == pytest.approx(-1.0)
    assert metrics.spearman(a, 2 * a + 1) == pytest.approx(1.0)
    assert metrics.pearson(a, 3 * a) == pytest.approx(1.0)
    b = np.array([0.1, -0.3, 0.5, 0.2, -1.0])  # one swapped pair out of 10
    assert metrics.kendall_tau(a, b) == pytest.approx(0.8)


def test_jaccard_of_the_extremes():
    a = np.arange(30.0)
    assert metrics.extremes(a, k=2) == {0, 1, 28, 29}
    b = a.copy()
    b[[0, 15]] = b[[15, 0]]  # 0 leaves the bottom two, 15 enters: 3 shared of 5
    assert metrics.jaccard(a, b, k=2) == pytest.approx(3 / 5)
    assert metrics.jaccard(a, a) == 1.0


def test_precision_at_k():
    scores = np.array([-3.0, 1.0, -2.0, 0.5, -1.0])
    assert metrics.precision_at_k(scores, np.array([0, 4]), k=2) == 0.5
    assert metrics.precision_at_k(scores, np.array([0, 2, 4]), k=3) == 1.0
