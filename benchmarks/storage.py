"""Trajectory stores on the paper's MNIST setting: memory kept, peak memory of the sweep, time.

One invocation measures every store (memory, disk, replay), each in a fresh child process so
that peak resident memory is its own: the recording training, then the influence sweep on
the validation loss, with the sweep's peak RSS read from the kernel (VmHWM, reset after the
query gradient, just before the sweep). Sweep times of separate processes drift with the
machine, so the ratio to the memory store is measured again in this process, with the three
sweeps interleaved (median of 3) on ``--ratio-subset`` images.

    python benchmarks/storage.py --data-dir ../shared/data            # 50,000 images, 20 epochs
    python benchmarks/storage.py --data-dir ../shared/data --epochs 2  # a tenth of the steps
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import sgdinfluence as sgi
from sgdinfluence.app.data.sources import mnist
from sgdinfluence.app.models import mnist_cnn
from sgdinfluence.core.estimators.sgd import sgd_influence
from sgdinfluence.core.queries import query_matrix

MiB = 2**20
STORES = ("memory", "disk", "replay")


def rss(field: str = "VmRSS") -> int:
    """Resident memory of this process in bytes (VmRSS now, or VmHWM: the peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(args: argparse.Namespace) -> dict:
    """In the child: train with one store, sweep, report."""
    X, y = mnist("train", args.data_dir)
    train, val = (X[: args.subset], y[: args.subset]), (X[50_000:], y[50_000:])
    warm = sgi.fit(mnist_cnn(), (X[:640], y[:640]), epochs=1, batch_size=64, lr=0.05)
    sgi.influence(warm, val)  # warm up the kernels before anything is timed
    store = sgi.DiskStore(Path(args.workdir) / "run") if args.only == "disk" else args.only
    torch.manual_seed(0)
    start = time.perf_counter()
    run = sgi.fit(mnist_cnn(), train, epochs=args.epochs, batch_size=args.batch_size, lr=0.05,
                  store=store)
    t_fit = time.perf_counter() - start
    U, _ = query_matrix(run, val)
    before = rss()
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    start = time.perf_counter()
    scores = sgd_influence(run, U)
    t_sweep = time.perf_counter() - start
    np.save(Path(args.workdir) / f"{args.only}.npy", scores.numpy())
    files = Path(args.workdir).glob("run/*") if args.only == "disk" else []
    on_disk = sum(f.stat().st_size for f in files)
    return {"kept": run.store.nbytes(), "disk": on_disk, "before": before, "peak": rss("VmHWM"),
            "fit": t_fit, "sweep": t_sweep, "T": run.num_steps, "P": len(run.store[0])}


def interleaved_ratios(args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    """Sweep time of each store / the memory store's, the three sweeps interleaved."""
    X, y = mnist("train", args.data_dir)
    train, val = (X[: args.ratio_subset], y[: args.ratio_subset]), (X[50_000:], y[50_000:])
    runs = {}
    for name in STORES:
        torch.manual_seed(0)
        store = sgi.DiskStore(workdir / "ratio") if name == "disk" else name
        runs[name] = sgi.fit(mnist_cnn(), train, epochs=2, batch_size=args.batch_size, lr=0.05,
                             store=store)
    U, _ = query_matrix(runs["memory"], val)
    times: dict[str, list[float]] = {name: [] for name in STORES}
    for _ in range(3):
        for name, run in runs.items():
            start = time.perf_counter()
            sgd_influence(run, U)
            times[name].append(time.perf_counter() - start)
    median = {name: float(np.median(t)) for name, t in times.items()}
    return {name: median[name] / median["memory"] for name in STORES}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--subset", type=int, default=50_000, help="training images (default 50,000)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--ratio-subset", type=int, default=3200,
                    help="images for the interleaved sweep-time ratio (default 3,200)")
    ap.add_argument("--only", choices=STORES, help=argparse.SUPPRESS)  # the child's mode
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.only:
        print(json.dumps(measure(args)))
        return

    rows = {}
    with tempfile.TemporaryDirectory() as workdir:
        for name in STORES:
            cmd = [sys.executable, __file__, *sys.argv[1:], "--only", name, "--workdir", workdir]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            rows[name] = json.loads(out.splitlines()[-1])
        same = all(np.array_equal(np.load(f"{workdir}/{n}.npy"), np.load(f"{workdir}/memory.npy"))
                   for n in STORES)
        ratio = interleaved_ratios(args, Path(workdir))
    r = rows["memory"]
    print(f"MNIST CNN, {args.subset} images, {args.epochs} epochs, batch {args.batch_size}: "
          f"T = {r['T']} steps, P = {r['P']} parameters; one process per store")
    print(f"{'store':8}{'kept in memory':>16}{'on disk':>12}{'RSS before':>12}"
          f"{'sweep peak RSS':>16}{'training s':>12}{'sweep s':>10}{'sweep / memory':>16}")
    for name, r in rows.items():
        print(f"{name:8}{r['kept'] / MiB:13.1f} MB{r['disk'] / MiB:9.1f} MB"
              f"{r['before'] / MiB:9.0f} MB{r['peak'] / MiB:13.0f} MB{r['fit']:12.1f}"
              f"{r['sweep']:10.1f}{ratio[name]:16.2f}")
    print(f"scores identical across stores: {same}; 'sweep / memory' from interleaved sweeps "
          f"in one process on {args.ratio_subset} images, 2 epochs, median of 3")


if __name__ == "__main__":
    main()
