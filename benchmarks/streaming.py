"""Data that does not fit in memory: peak resident memory of fit and of the sweep, for a
Dataset read lazily, by index, at two sizes.

The Dataset computes each 32x32 colour image from its index (a seeded generator; nothing is
stored), with a label from the image, and a small CNN (two 3x3 convolutions with pooling)
trains on it for one epoch (batch 64, momentum 0.9), recording to a DiskStore, then sweeps
for the mean loss of 256 validation images. Each size runs in a fresh child process so that
its peak RSS (VmHWM, reset before each phase) is its own.

    OMP_NUM_THREADS=1 python benchmarks/streaming.py                  # N = 20,000 and 200,000
    OMP_NUM_THREADS=1 python benchmarks/streaming.py --sizes 2000,20000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

import sgdinfluence as sgi

MiB = 2**20


class Generated(Dataset):
    """N images (3, 32, 32) computed from the index; label 1 if the red channel is brighter
    than the blue, else 0."""

    def __init__(self, n: int, offset: int = 0):
        self.n, self.offset = n, offset

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(self.offset + i)
        x = torch.rand(3, 32, 32, generator=g)
        return x, int(x[0].mean() > x[2].mean())


def cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(8 * 8 * 8, 2))


def peak() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM not in /proc/self/status")


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def measure(n: int, workdir: str) -> dict:
    """In the child: fit and sweep on N generated images."""
    val = Generated(256, offset=10**9)
    X_val = torch.stack([val[i][0] for i in range(len(val))])
    y_val = torch.tensor([val[i][1] for i in range(len(val))])
    sgi.influence(sgi.fit(cnn(), Generated(128), epochs=1, batch_size=64, lr=0.05),
                  (X_val, y_val))  # warm up the kernels
    torch.manual_seed(0)
    reset_peak()
    start = time.perf_counter()
    run = sgi.fit(cnn(), Generated(n), epochs=1, batch_size=64, lr=0.05, momentum=0.9,
                  store=sgi.DiskStore(Path(workdir) / f"run-{n}"))
    t_fit, fit_peak = time.perf_counter() - start, peak()
    reset_peak()
    start = time.perf_counter()
    scores = sgi.influence(run, (X_val, y_val))
    t_sweep, sweep_peak = time.perf_counter() - start, peak()
    return {"n": n, "steps": run.num_steps, "fit_s": t_fit, "sweep_s": t_sweep,
            "fit_peak_mib": fit_peak / MiB, "sweep_peak_mib": sweep_peak / MiB,
            "trajectory_mib": (Path(workdir) / f"run-{n}" / "thetas.npy").stat().st_size / MiB,
            "scores": len(scores)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="20000,200000", help="comma-separated N")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.workdir)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for n in (int(s) for s in args.sizes.split(",")):
            out = subprocess.run([sys.executable, __file__, "--child", str(n), "--workdir",
                                  workdir], capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{torch.get_num_threads()} threads; a Dataset generated from the index, one epoch, "
          "DiskStore")
    print(f"{'N':>9}{'steps':>7}{'fit s':>8}{'sweep s':>9}{'fit peak MiB':>14}"
          f"{'sweep peak MiB':>16}{'trajectory on disk MiB':>24}")
    for r in rows:
        print(f"{r['n']:9d}{r['steps']:7d}{r['fit_s']:8.1f}{r['sweep_s']:9.1f}"
              f"{r['fit_peak_mib']:14.0f}{r['sweep_peak_mib']:16.0f}{r['trajectory_mib']:24.0f}")


if __name__ == "__main__":
    main()
