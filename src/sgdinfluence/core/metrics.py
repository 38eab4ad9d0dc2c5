"""Agreement between two score vectors (estimated vs true), as small pure functions."""

from __future__ import annotations

import numpy as np
from scipy import stats


def kendall_tau(estimated: np.ndarray, true: np.ndarray) -> float:
    return float(stats.kendalltau(estimated, true).statistic)


def spearman(estimated: np.ndarray, true: np.ndarray) -> float:
    return float(stats.spearmanr(estimated, true).statistic)


def pearson(estimated: np.ndarray, true: np.ndarray) -> float:
    return float(stats.pearsonr(estimated, true).statistic)


def extremes(scores: np.ndarray, k: int = 10) -> set[int]:
    """The k most negative together with the k most positive instances."""
    order = np.argsort(scores, kind="stable")
    return set(order[:k].tolist()) | set(order[-k:].tolist())


def jaccard(estimated: np.ndarray, true: np.ndarray, k: int = 10) -> float:
    """The paper's Jaccard index: overlap of the k most negative and k most positive."""
    a, b = extremes(estimated, k), extremes(true, k)
    return len(a & b) / len(a | b)


def precision_at_k(scores: np.ndarray, relevant: np.ndarray, k: int) -> float:
    """Fraction of the k most harmful (most negative) instances that are in ``relevant``."""
    top = np.argsort(scores, kind="stable")[:k]
    return float(np.isin(top, relevant).mean())


def lds(predicted: np.ndarray, actual: np.ndarray) -> float:
    """The linear datamodeling score (Park et al., TRAK, 2023): for each query (column),
    Spearman's correlation over K subsets (rows) between the predicted and the actual outcome;
    their mean over the queries. predicted, actual: (K,) or (K, M)."""
    predicted, actual = np.atleast_2d(predicted.T).T, np.atleast_2d(actual.T).T
    return float(np.nanmean([stats.spearmanr(p, a).statistic
                             for p, a in zip(predicted.T, actual.T, strict=True)]))
