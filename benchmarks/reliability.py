"""Does sgi.reliability flag the runs whose scores do not mean leave-one-out? The MLP control
(Sec 7.1's 8-8 MLP on 200 rows of a noisy linear problem, lr 0.1) against a tiny BERT from a
config (AdamW lr 3e-3, 3 epochs on 512 synthetic sequences) and a ResNet-18 (Nesterov, weight
decay 5e-4, 1 epoch on 512 CIFAR-10 images; its 8 leave-outs are 8 retrainings).

    python benchmarks/reliability.py --data-dir ../shared/data   # ~20 min on 2 cores

Measured here (2 cores, 2026-12-03): MLP holds (Spearman 0.93, scale 0.57, growth 5.7x);
tiny BERT does not hold (Spearman -0.62, scale -86, growth 273x). The ResNet-18 run then
took the first 576 images, which are all one class: every leave-out rounded to no change of
the validation loss ("cannot tell"), which says nothing of CIFAR-10; the subset is now drawn
at random, and that run is still to be made.
"""

from __future__ import annotations

import argparse
import time

import torch

import sgdinfluence as sgi
from deep_ratios import cifar_subset, resnet18, tiny_bert
from sgdinfluence.app.models import mlp


def report(name: str, run, val) -> None:
    start = time.perf_counter()
    r = sgi.reliability(run, val)
    print(f"{name}: {r.verdict}; Spearman {r.spearman:.2f}, scale {r.scale:.3g}, adjoint "
          f"growth up to {max(r.growth):.3g}x ({time.perf_counter() - start:.0f} s)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    X = torch.randn(400, 10, generator=g, dtype=torch.float64)
    y = (X[:, 0] + 0.5 * X[:, 1] + 0.5 * torch.randn(400, generator=g, dtype=torch.float64)
         > 0).long()
    torch.manual_seed(0)
    run = sgi.fit(mlp(10).double(), (X[:200], y[:200]), epochs=10, batch_size=20, lr=0.1,
                  weight_decay=1e-3)
    report("MLP 8-8 (control)", run, (X[200:], y[200:]))
    bert = tiny_bert(generator=g)
    if bert is not None:
        make, tokens, labels = bert
        torch.manual_seed(0)
        run = sgi.fit(make(), (tokens[:512], labels[:512]), epochs=3, batch_size=32, lr=3e-3,
                      optimizer="adamw", weight_decay=0.01)
        report("tiny BERT", run, (tokens[512:], labels[512:]))
    X, y = cifar_subset(args.data_dir)
    torch.manual_seed(0)
    run = sgi.fit(resnet18(), (X[:512], y[:512]), epochs=1, batch_size=64, lr=0.05,
                  momentum=0.9, nesterov=True, weight_decay=5e-4)
    report("ResNet-18", run, (X[512:], y[512:]))


if __name__ == "__main__":
    main()
