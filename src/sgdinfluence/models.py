"""The paper's models: logistic regression, the MLP of Sec 7.1, the MNIST CNN of Sec 7.2."""

from __future__ import annotations

from torch import nn


def logistic_regression(num_features: int, num_classes: int = 2) -> nn.Module:
    """Multinomial logistic regression: one linear layer; use with ``loss="cross_entropy"``."""
    return nn.Linear(num_features, num_classes)


def mlp(num_features: int, num_classes: int = 2, hidden: tuple[int, ...] = (8, 8),
        dropout: float = 0.0) -> nn.Module:
    """ReLU MLP; the paper's Sec 7.1 network has two hidden layers of 8 units."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = num_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        layers += [nn.Dropout(dropout)] if dropout else []
        width = h
    return nn.Sequential(*layers, nn.Linear(width, num_classes))


def mnist_cnn(num_classes: int = 10, channels: int = 1) -> nn.Module:
    """The paper's MNIST CNN: conv 20@5x5 - pool - conv 20@5x5 - pool - linear (28x28 input).

    13,750 parameters for 10 classes.
    """
    return nn.Sequential(
        nn.Conv2d(channels, 20, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(20, 20, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(20 * 4 * 4, num_classes),
    )
