import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer


@pytest.fixture(scope="session")
def cancer():
    """Breast cancer (embedded in scikit-learn), standardised: 200 train / 200 validation."""
    X, y = load_breast_cancer(return_X_y=True)
    perm = np.random.default_rng(0).permutation(len(X))
    X, y = X[perm], y[perm]
    X = (X - X[:200].mean(0)) / X[:200].std(0)
    t = torch.tensor
    return (t(X[:200]), t(y[:200])), (t(X[200:400]), t(y[200:400]))
