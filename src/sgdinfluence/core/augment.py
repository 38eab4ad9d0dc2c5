"""Data augmentation whose randomness is replayed: random crops and horizontal flips.

An augmentation is a callable on one input (C, H, W), as torchvision's transforms are,
applied to each input of a batch in turn (:func:`apply`); one marked ``batched = True``, as
:class:`RandomCrop` is, takes the whole batch (B, C, H, W) and draws per input itself. Either
draws from torch's default generator, which :func:`sgdinfluence.fit` seeds per step, so
training, retraining and the influence sweep all see the same crop of instance i at step t.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..errors import DataError


@dataclass(frozen=True)
class RandomCrop:
    """Pad by ``padding`` zeros and cut a random H x W window per image; with ``flip``, also
    mirror each image left-right with probability 1/2 (the paper's CIFAR-10 augmentation)."""

    padding: int = 2
    flip: bool = False
    batched: ClassVar[bool] = True  # draws a crop per image of the batch itself

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise DataError(f"RandomCrop takes images (B, C, H, W), got shape {tuple(x.shape)}")
        B, _, H, W = x.shape
        p = self.padding
        offsets = torch.randint(0, 2 * p + 1, (2, B), device=x.device)
        flips = torch.rand(B, device=x.device) < 0.5 if self.flip else None
        padded = F.pad(x, (p, p, p, p))
        rows = (offsets[0, :, None] + torch.arange(H, device=x.device))[:, :, None]  # (B, H, 1)
        cols = (offsets[1, :, None] + torch.arange(W, device=x.device))[:, None, :]  # (B, 1, W)
        if flips is not None:
            cols = torch.where(flips[:, None, None], cols.flip(-1), cols)
        b = torch.arange(B, device=x.device)[:, None, None]
        return padded.permute(0, 2, 3, 1)[b, rows, cols].permute(0, 3, 1, 2)


def apply(augment, x: torch.Tensor) -> torch.Tensor:
    """``augment`` on a batch x (B, ...): at once if it is ``batched``, else input by input,
    so that a transform written for one image (torchvision's) draws for each image, not one
    crop for the whole batch."""
    if getattr(augment, "batched", False):
        return augment(x)
    return torch.stack([augment(xi) for xi in x]) if len(x) else x
