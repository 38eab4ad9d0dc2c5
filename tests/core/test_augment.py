"""Random crops and flips: windows of the padded image, drawn from the seeded generator."""

import pytest
import torch

from sgdinfluence.core.augment import RandomCrop


def test_crops_are_windows_of_the_padded_image_and_replay_from_the_seed():
    x = torch.randn(16, 3, 6, 6)
    torch.manual_seed(0)
    out = RandomCrop(padding=2)(x)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(16):  # each output is one of the 25 windows of its own padded image
        windows = [padded[i, :, r:r + 6, c:c + 6] for r in range(5) for c in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)
    assert len({out[i].sum().item() for i in range(16)}) > 1
    torch.manual_seed(0)
    assert torch.equal(RandomCrop(padding=2)(x), out)
    assert torch.equal(RandomCrop(padding=0)(x), x)


def test_flips_mirror_about_half_the_images():
    x = torch.randn(400, 1, 4, 4)
    torch.manual_seed(1)
    out = RandomCrop(padding=0, flip=True)(x)
    flipped = torch.tensor([torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x, strict=True)])
    kept = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x, strict=True)])
    assert (flipped | kept).all() and 150 < flipped.sum() < 250


def test_needs_images():
    with pytest.raises(ValueError, match=r"RandomCrop takes images \(B, C, H, W\)"):
        RandomCrop()(torch.randn(5, 10))
