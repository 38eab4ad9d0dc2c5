"""Sweep time / training time on the deep models of issues 21 and 22, side by side in one
process: a ResNet-18 (CIFAR variant: 3x3 stem, batch norm, Nesterov momentum 0.9, weight
decay 5e-4) on 512 CIFAR-10 images, and a tiny BERT built from a config (2 layers, hidden
64, 2 heads, dropout 0.1, sdpa attention; AdamW lr 3e-3) on 512 synthetic token sequences
of length 32. One epoch each, batch 64 / 32, float32, the mean loss of 64 held-out
instances as the query. The ResNet's sweep includes batch norm's running statistics.

    python benchmarks/deep_ratios.py --data-dir ../shared/data   # ~8 min on 2 cores

Measured here (2 cores, 2026-12-03): ResNet-18 training 70.9 s, sweep 403.9 s: 5.7x (on the
first 576 images, all one class, before the subset was drawn at random: the same shapes and
so the same arithmetic, but rerun to confirm); tiny BERT training 0.2 s, sweep 0.8 s: 3.4x.

Needs transformers for the BERT (the 'integrations' extra); CIFAR-10 from the data
directory, else random images of its shape (said in the output).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

import sgdinfluence as sgi


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                   nn.BatchNorm2d(cout)) if stride != 1 or cin != cout
                     else nn.Identity())

    def forward(self, x):
        return torch.relu(self.body(x) + self.skip(x))


def resnet18(classes: int = 10) -> nn.Module:
    """ResNet-18 for 32x32 images (torchvision's does not import with the CPU wheel here)."""
    layers: list[nn.Module] = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64),
                               nn.ReLU()]
    width = 64
    for w, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [Block(width, w, stride), Block(w, w, 1)]
        width = w
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes))


def measure(name: str, model: nn.Module, train, val, **fit) -> None:
    start = time.perf_counter()
    run = sgi.fit(model, train, epochs=1, **fit)
    trained = time.perf_counter() - start
    print(f"{name}: trained in {trained:.1f} s", flush=True)
    start = time.perf_counter()
    scores = sgi.influence(run, val, progress=True)
    swept = time.perf_counter() - start
    print(f"{name}: {sum(p.numel() for p in model.parameters()):,} parameters, "
          f"{run.num_steps} steps; training {trained:.1f} s, sweep {swept:.1f} s: "
          f"{swept / trained:.1f}x (scores finite: {bool(np.isfinite(scores).all())})", flush=True)


def cifar_subset(data_dir, n: int = 576) -> tuple[torch.Tensor, torch.Tensor]:
    """n CIFAR-10 training images drawn at random (seed 0: the files list the images class
    by class, so the first n are all airplanes), or random images of their shape (said)."""
    try:
        from sgdinfluence.app.data import load

        table = load("cifar10", data_dir)["train"]
        rows = np.random.default_rng(0).choice(len(table.y), n, replace=False)
        return torch.as_tensor(table.X[rows]).float(), torch.as_tensor(table.y[rows]).long()
    except Exception as e:  # noqa: BLE001 (a benchmark runs on stand-in data then)
        print(f"CIFAR-10 not found ({e}); random images stand in")
        return torch.rand(n, 3, 32, 32), torch.randint(0, 10, (n,))


def tiny_bert(generator: torch.Generator | None = None):
    """A BERT maker (2 layers, hidden 64, 2 heads) and 576 synthetic sequences of 32 tokens
    labelled by which half has the larger mean token id; None without transformers."""
    try:
        import transformers
    except ImportError:
        print("tiny BERT: transformers is not installed (pip install '.[integrations]')")
        return None
    config = transformers.BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=128,
                                     max_position_embeddings=32, num_labels=2)
    tokens = torch.randint(1, 1000, (576, 32), generator=generator)
    labels = (tokens[:, :16].float().mean(1) > tokens[:, 16:].float().mean(1)).long()
    return (lambda: transformers.BertForSequenceClassification(config)), tokens, labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    X, y = cifar_subset(args.data_dir)
    measure("ResNet-18, 512 CIFAR-10 images", resnet18(), (X[:512], y[:512]),
            (X[512:], y[512:]), batch_size=64, lr=0.05, momentum=0.9, nesterov=True,
            weight_decay=5e-4)
    bert = tiny_bert()
    if bert is None:
        return
    make, tokens, labels = bert
    measure("tiny BERT, 512 sequences", make(), (tokens[:512], labels[:512]),
            (tokens[512:], labels[512:]), batch_size=32, lr=3e-3, optimizer="adamw",
            weight_decay=0.01)


if __name__ == "__main__":
    main()
