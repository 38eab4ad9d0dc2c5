"""Random crops and flips: windows of the padded image, drawn from the seeded generator; a
transform of one image is applied image by image."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import sgdinfluence as sgi
from oracle import unrolled_optimizer
from problems import small_problem
from sgdinfluence.core.augment import RandomCrop, apply


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


def test_a_transform_of_one_image_draws_for_each_image_and_replays():
    """A transform written for one image (as torchvision's are) is applied image by image:
    each image gets its own draw, not one for the whole batch, and the sweep replays them
    (the oracle applies it the same way from the same seeds)."""
    def jitter(image):  # one random shift of one image
        return image + 0.5 * torch.randn(())

    batch = apply(jitter, torch.zeros(6, 5))
    assert len(set(batch[:, 0].tolist())) == 6 and torch.equal(batch, batch[:, :1].expand(6, 5))
    model, train, val = small_problem()
    run = sgi.fit(model, train, epochs=2, batch_size=8, lr=0.3, augment=jitter)
    for p, q in zip(run.retrain([]).parameters(), run.model.parameters(), strict=True):
        assert torch.equal(p, q)
    query = lambda forward: F.cross_entropy(forward(val[0]), val[1])  # noqa: E731
    expected, _ = unrolled_optimizer(
        model, *train, lambda o, t: F.cross_entropy(o, t, reduction="none"), run.batches,
        run.lrs, query, seeds=run.seeds, inputs=lambda t, x: torch.stack([jitter(i) for i in x]))
    scores = sgi.influence(run, val)
    assert np.abs(scores - expected.numpy()).max() / np.abs(expected.numpy()).max() < 1e-9
