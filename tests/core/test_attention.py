"""A model with scaled_dot_product_attention (transformers' default attention): the sweep
differentiates each step twice, which the fused CPU kernel cannot; influence runs attention
with the math kernel, says so once, and equals the oracle (itself on the math kernel)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

import sgdinfluence as sgi
from oracle import unrolled_optimizer
from sgdinfluence.core import estimators


class TinyAttention(nn.Module):
    """Two heads of self-attention over 5 tokens of 4 features, mean-pooled, a linear head:
    (B, heads, tokens, features) inputs, which take the fused kernel on the CPU."""

    def __init__(self):
        super().__init__()
        self.q, self.k, self.v = (nn.Linear(4, 8) for _ in range(3))
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        h = x.view(len(x), 5, 4)
        q, k, v = (f(h).view(len(x), 5, 2, 4).transpose(1, 2) for f in (self.q, self.k, self.v))
        a = F.scaled_dot_product_attention(q, k, v)  # (B, 2, 5, 4)
        return self.out(a.transpose(1, 2).reshape(len(x), 5, 8).mean(1))


def test_attention_is_differentiated_twice_with_the_math_kernel(monkeypatch):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(50, 20, generator=g, dtype=torch.float64)
    y = (X[:, 0] + X[:, 5] > 0).long()
    torch.manual_seed(0)
    model = TinyAttention().double()
    train, val = (X[:30], y[:30]), (X[30:], y[30:])
    run = sgi.fit(model, train, epochs=2, batch_size=6, lr=0.3, momentum=0.9)
    monkeypatch.setattr(estimators, "_said", set())
    with pytest.warns(UserWarning, match=r"the model has attention \(TinyAttention\): "
                      "influence runs scaled_dot_product_attention with PyTorch's math kernel"):
        scores = sgi.influence(run, val)
    query = lambda forward: F.cross_entropy(forward(val[0]), val[1])  # noqa: E731
    with sdpa_kernel(SDPBackend.MATH):
        expected, _ = unrolled_optimizer(model, *train, lambda o, t: F.cross_entropy(
            o, t, reduction="none"), run.batches, run.lrs, query, momentum=0.9)
    assert np.abs(expected.numpy()).max() > 1e-4
    assert np.abs(scores - expected.numpy()).max() / np.abs(expected.numpy()).max() < 1e-9
