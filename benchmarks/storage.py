"""Trajectory stores on the paper's MNIST setting: memory kept, peak memory of the sweep, time.

For each store (memory, disk, replay), in one process, one after the other: the recording
training, then the influence sweep on the validation loss, with the peak resident memory of
the sweep read from the kernel (VmHWM, reset before the sweep, after the query gradient).

    python benchmarks/storage.py --data-dir ../shared/data            # 50,000 images, 20 epochs
    python benchmarks/storage.py --data-dir ../shared/data --subset 5000 --epochs 2   # quick
"""

from __future__ import annotations

import argparse
import gc
import shutil
import tempfile
import time
from pathlib import Path

import torch

import sgdinfluence as sgi
from sgdinfluence.data import mnist
from sgdinfluence.estimators.sgd import sgd_influence
from sgdinfluence.models import mnist_cnn
from sgdinfluence.queries import query_matrix

MiB = 2**20


def rss(field: str = "VmRSS") -> int:
    """Resident memory of this process in bytes (VmRSS now, or VmHWM: the peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--subset", type=int, default=50_000, help="training images (default 50,000)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workdir", default=None, help="where the disk store writes (default: tmp)")
    args = ap.parse_args()

    X, y = mnist("train", args.data_dir)
    train, val = (X[: args.subset], y[: args.subset]), (X[50_000:], y[50_000:])
    workdir = Path(tempfile.mkdtemp(dir=args.workdir))
    stores = {"memory": lambda: "memory", "disk": lambda: sgi.DiskStore(workdir / "run"),
              "replay": lambda: "replay"}
    rows, scores = {}, {}
    warm = sgi.fit(mnist_cnn(), (X[:640], y[:640]), epochs=1, batch_size=64, lr=0.05)
    sgi.influence(warm, val)  # warm up the kernels before anything is timed
    try:
        for name, make in stores.items():
            torch.manual_seed(0)
            t0 = time.perf_counter()
            run = sgi.fit(mnist_cnn(), train, epochs=args.epochs, batch_size=args.batch_size,
                          lr=0.05, store=make(), progress=True)
            t_fit = time.perf_counter() - t0
            U, _ = query_matrix(run, val)  # u = ∇ validation loss, outside the measurement
            gc.collect()
            before = rss()
            reset_peak()
            t0 = time.perf_counter()
            scores[name] = sgd_influence(run, U, progress=True)
            t_sweep = time.perf_counter() - t0
            on_disk = sum(f.stat().st_size for f in workdir.rglob("*") if f.is_file())
            shutil.rmtree(workdir / "run", ignore_errors=True)
            rows[name] = (run.store.nbytes(), on_disk, before, rss("VmHWM"), t_fit, t_sweep)
            T, P = run.num_steps, run.store[0].numel()
            del run
            gc.collect()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\nMNIST CNN, {args.subset} images, {args.epochs} epochs, batch {args.batch_size}: "
          f"T = {T} steps, P = {P} parameters, θ[t] = {P * 4} bytes; "
          f"{torch.get_num_threads()} threads")
    print(f"{'store':8}{'kept in memory':>16}{'on disk':>12}{'RSS before':>12}"
          f"{'sweep peak RSS':>16}{'training s':>12}{'sweep s':>10}{'sweep / memory':>16}")
    for name, (kept, disk, before, peak, t_fit, t_sweep) in rows.items():
        print(f"{name:8}{kept / MiB:13.1f} MB{disk / MiB:9.1f} MB{before / MiB:9.0f} MB"
              f"{peak / MiB:13.0f} MB{t_fit:12.1f}{t_sweep:10.1f}"
              f"{t_sweep / rows['memory'][5]:16.2f}")
    same = all(torch.equal(scores[n], scores["memory"]) for n in scores)
    print(f"scores identical across stores: {same}")


if __name__ == "__main__":
    main()
