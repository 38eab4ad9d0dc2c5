"""The paper's models: logistic regression, the MLP of Sec 7.1, the CNNs of Sec 7.2.

Every model is an ``nn.Sequential`` whose last layer is the classifier, so that
``features(model, X)`` (the penultimate layer's output) is defined for all of them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..core.objective import mode
from ..errors import ConfigError


def logistic_regression(num_features: int, num_classes: int = 2) -> nn.Module:
    """Multinomial logistic regression: one linear layer; use with ``loss="cross_entropy"``."""
    return nn.Sequential(nn.Flatten(), nn.Linear(num_features, num_classes))


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


CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)  # the authors'


class Normalize(nn.Module):
    """(x - mean) / std per channel, with fixed mean and std (buffers, not parameters): input
    preprocessing inside the model, so that data and reports stay in [0, 1]."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).reshape(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).reshape(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


MNIST_CNN_MIN_SIZE = 16  # the smallest side leaving one pixel: ((16 - 4) // 2 - 4) // 2 = 1


def mnist_cnn(num_classes: int = 10, channels: int = 1, size: int = 28) -> nn.Module:
    """The paper's MNIST CNN: conv 20@5x5 - pool - conv 20@5x5 - pool - linear, with inputs
    in [0, 1] mapped to [-1, 1] as the authors' code does ((x - 0.5) / 0.5).

    13,750 parameters for 10 classes on 28x28 images; images of side at least
    ``MNIST_CNN_MIN_SIZE`` (each 5x5 convolution takes 4 pixels, each pooling halves).
    """
    side = ((size - 4) // 2 - 4) // 2
    if side < 1:
        raise ConfigError(f"mnist-cnn needs images of at least {MNIST_CNN_MIN_SIZE}x"
                          f"{MNIST_CNN_MIN_SIZE} pixels, got {size}x{size}")
    return nn.Sequential(
        Normalize((0.5,) * channels, (0.5,) * channels),
        nn.Conv2d(channels, 20, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(20, 20, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(20 * side * side, num_classes),
    )


def cifar_cnn(num_classes: int = 10, channels: int = 3, size: int = 32,
              widths: tuple[int, int, int] = (32, 64, 128)) -> nn.Module:
    """The paper's CIFAR-10 network as the authors' code builds it: three pairs of 3x3
    convolutions (32, 64, 128 channels), batch norm after the first of each pair, ReLU, 2x2
    max pooling after each pair, then a linear classifier (307,946 parameters); colour inputs
    normalised per channel with the authors' CIFAR-10 mean and std."""
    if size % 8:
        raise ConfigError(f"cifar-cnn needs a side divisible by 8, got {size}x{size}")
    layers: list[nn.Module] = [Normalize(CIFAR_MEAN, CIFAR_STD)] if channels == 3 else []
    width = channels
    for w in widths:
        layers += [nn.Conv2d(width, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
                   nn.Conv2d(w, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        width = w
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(width * (size // 8) ** 2, num_classes))


MODELS = ("logreg", "mlp", "mnist-cnn", "cifar-cnn")


def build(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The model ``name`` for instances of ``input_shape`` ((D,) or (C, H, W))."""
    if name in ("logreg", "mlp"):
        d = math.prod(input_shape)
        return logistic_regression(d, num_classes) if name == "logreg" else \
            mlp(d, num_classes, hidden=(64,))
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; use one of {list(MODELS)}")
    if len(input_shape) != 3 or input_shape[1] != input_shape[2]:
        raise ConfigError(f"{name} takes square images (C, H, W); the data has instances of "
                         f"shape {tuple(input_shape)}")
    c, size = input_shape[0], input_shape[1]
    cnn = mnist_cnn if name == "mnist-cnn" else cifar_cnn
    return cnn(num_classes, channels=c, size=size)


@torch.no_grad()
def features(model: nn.Sequential, X: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """The penultimate layer's output (N, F): every layer but the classifier, in eval mode."""
    with mode(model, train=False):
        return torch.cat([model[:-1](x).flatten(1) for x in X.split(chunk)])
