"""The checks to run on a CUDA machine: exactness in float64 and speed, in one short script.

1. Exactness (float64, on the GPU): influence against the oracle unrolled through training
   (tests/oracle.py) for plain SGD, momentum and Adam on a small MLP; the replay store and
   retraining with nothing left out repeat the run bit for bit (deterministic kernels).
2. Speed (float32): sweep time / training time for the paper's MNIST CNN (plain SGD,
   momentum 0.9, Adam; 10,000 synthetic images shaped like MNIST, batch 64, one epoch) and a
   ResNet-18-sized network (11M parameters; 2,560 synthetic 32x32 colour images, batch 128),
   measured side by side with the device synchronised, after a warm-up.

    python benchmarks/gpu_check.py                 # on a CUDA machine; writes $OUT/gpu.json
    python benchmarks/gpu_check.py --device cpu --quick   # a dry run of the script here
"""

from __future__ import annotations

import os

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before CUDA starts

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import sgdinfluence as sgi  # noqa: E402
from sgdinfluence.app.models import mlp, mnist_cnn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from oracle import unrolled_optimizer  # noqa: E402


def exactness(device: str) -> dict:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(70, 5, generator=g, dtype=torch.float64)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).long()
    train, val = (X[:40].to(device), y[:40].to(device)), (X[40:].to(device), y[40:].to(device))
    out = {}
    for name, options in {"sgd": {}, "momentum": {"momentum": 0.9},
                          "adam": {"optimizer": "adam"}}.items():
        torch.manual_seed(0)
        model = mlp(5, hidden=(8, 8)).double().to(device)
        run = sgi.fit(model, train, epochs=3, batch_size=7, lr=lambda t: 0.1 / np.sqrt(t + 1),
                      weight_decay=0.01, **options)
        expected, _ = unrolled_optimizer(
            model, *train, lambda o, t: F.cross_entropy(o, t, reduction="none"), run.batches,
            run.lrs, lambda forward: F.cross_entropy(forward(val[0]), val[1]),
            weight_decay=0.01, **{"optimizer": "sgd", **options})
        expected = expected.cpu().numpy()
        scores = sgi.influence(run, val)
        out[f"{name}_rel_error"] = float(np.abs(scores - expected).max() / np.abs(expected).max())
    torch.manual_seed(0)
    model = mlp(5, hidden=(16,), dropout=0.3).double().to(device)
    memory = sgi.fit(model, train, epochs=3, batch_size=7, lr=0.1, momentum=0.9)
    replay = sgi.fit(model, train, epochs=3, batch_size=7, lr=0.1, momentum=0.9, store="replay")
    out["replay_bit_exact"] = all(torch.equal(memory.store[t], replay.store[t])
                                  for t in range(memory.num_steps))
    out["retrain_bit_exact"] = all(torch.equal(p, q) for p, q in zip(
        memory.retrain([]).parameters(), memory.model.parameters(), strict=True))
    return out


def resnet18(classes: int = 10) -> nn.Module:
    """ResNet-18 for 32x32 images (BasicBlocks 2-2-2-2, widths 64-512): 11.2M parameters."""
    def block(cin, cout, stride):
        body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                             nn.ReLU(), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                             nn.BatchNorm2d(cout))
        skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                if stride != 1 or cin != cout else nn.Identity())
        return Residual(body, skip)

    layers: list[nn.Module] = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64),
                               nn.ReLU()]
    width = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [block(width, cout, stride), block(cout, cout, 1)]
        width = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes))


class Residual(nn.Module):
    def __init__(self, body: nn.Module, skip: nn.Module):
        super().__init__()
        self.body, self.skip = body, skip

    def forward(self, x):
        return F.relu(self.body(x) + self.skip(x))


def ratio(make, data, val, device, reps: int, **options) -> dict:
    """Median seconds of training and of the sweep (one query), interleaved, synchronised."""
    def timed(fn):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start, out

    torch.manual_seed(0)
    model = make().to(device)
    fits, sweeps = [], []
    for rep in range(reps + 1):  # the first is the warm-up
        t_fit, run = timed(lambda: sgi.fit(model, data, epochs=1, **options))
        t_sweep, _ = timed(lambda r=run: sgi.influence(r, val))
        if rep:
            fits.append(t_fit)
            sweeps.append(t_sweep)
    fit, sweep = float(np.median(fits)), float(np.median(sweeps))
    return {"steps": run.num_steps, "fit_s": fit, "sweep_s": sweep, "ratio": sweep / fit,
            "parameters": sum(p.numel() for p in model.parameters())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="small sizes, to try the script")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here; run with --device cpu --quick to try the script")
    dev = args.device
    g = torch.Generator().manual_seed(0)
    n_cnn, n_res = (640, 256) if args.quick else (10_000, 2_560)
    mnist = (torch.rand(n_cnn, 1, 28, 28, generator=g), torch.randint(0, 10, (n_cnn,),
                                                                       generator=g))
    mnist_val = (torch.rand(256, 1, 28, 28, generator=g), torch.randint(0, 10, (256,),
                                                                         generator=g))
    cifar = (torch.rand(n_res, 3, 32, 32, generator=g), torch.randint(0, 10, (n_res,),
                                                                       generator=g))
    cifar_val = (torch.rand(128, 3, 32, 32, generator=g), torch.randint(0, 10, (128,),
                                                                         generator=g))
    report: dict = {"device": torch.cuda.get_device_name() if dev == "cuda" else "cpu",
                    "torch": torch.__version__}
    report["exactness"] = exactness(dev)
    print("exactness (float64):", json.dumps(report["exactness"]))
    speed = {}
    for name, options in {"MNIST CNN, sgd": {"lr": 0.05},
                          "MNIST CNN, momentum 0.9": {"lr": 0.05, "momentum": 0.9},
                          "MNIST CNN, Adam": {"lr": 1e-3, "optimizer": "adam"}}.items():
        speed[name] = ratio(mnist_cnn, mnist, mnist_val, dev, args.reps, batch_size=64,
                            **options)
    speed["ResNet-18, momentum 0.9"] = ratio(resnet18, cifar, cifar_val, dev, args.reps,
                                             batch_size=128, lr=0.05, momentum=0.9)
    report["speed"] = speed
    for name, r in speed.items():
        print(f"{name:26}{r['parameters']:>11,} params{r['steps']:6d} steps  training "
              f"{r['fit_s']:7.2f} s  sweep {r['sweep_s']:7.2f} s  sweep/training "
              f"{r['ratio']:5.2f}")
    out = Path(os.environ.get("OUT", "."))
    (out / "gpu.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
