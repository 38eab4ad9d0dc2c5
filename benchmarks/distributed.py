"""Training and sweep under torch.distributed (gloo, CPU): time per step with 1 and 2
processes, and the bytes each step all-reduces, in one run.

The paper's MNIST CNN on MNIST-shaped synthetic images, batch 64 (split between the ranks),
one epoch of plain SGD and of momentum SGD, one thread per process. Each configuration runs
in its own process group (``torch.multiprocessing.spawn``); rank 0 reports. The bytes are
counted by wrapping ``torch.distributed.all_reduce``.

    python benchmarks/distributed.py            # --n 3200 images
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import sgdinfluence as sgi
from sgdinfluence.app.models import mnist_cnn


def worker(rank: int, size: int, init: str, out: str, n: int, options: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=size)
    torch.set_num_threads(1)
    sent = {"bytes": 0, "calls": 0}
    real = dist.all_reduce

    def counting(t, *args, **kwargs):
        sent["bytes"] += t.numel() * t.element_size()
        sent["calls"] += 1
        return real(t, *args, **kwargs)

    dist.all_reduce = counting
    g = torch.Generator().manual_seed(0)
    X, y = torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)
    val = (torch.rand(256, 1, 28, 28, generator=g), torch.randint(0, 10, (256,), generator=g))
    torch.manual_seed(0)
    sgi.influence(sgi.fit(mnist_cnn(), (X[:128], y[:128]), epochs=1, batch_size=64, lr=0.05,
                          **options), val)  # warm-up
    dist.barrier()
    sent.update(bytes=0, calls=0)
    start = time.perf_counter()
    run = sgi.fit(mnist_cnn(), (X, y), epochs=1, batch_size=64, lr=0.05, **options)
    t_fit, fit_sent = time.perf_counter() - start, dict(sent)
    sent.update(bytes=0, calls=0)
    start = time.perf_counter()
    sgi.influence(run, val)
    t_sweep = time.perf_counter() - start
    if rank == 0:
        steps = run.num_steps
        Path(out).write_text(json.dumps({
            "processes": size, "steps": steps, "fit_ms": 1e3 * t_fit / steps,
            "sweep_ms": 1e3 * t_sweep / steps,
            "fit_bytes": fit_sent["bytes"] / steps, "sweep_bytes": sent["bytes"] / steps,
            "parameters": sum(p.numel() for p in run.model.parameters())}))
    dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=3200, help="training images (default 3200)")
    args = ap.parse_args()
    rows = []
    for label, options in (("sgd", {}), ("momentum 0.9", {"momentum": 0.9})):
        for size in (1, 2):
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "out.json"
                mp.spawn(worker, args=(size, str(Path(tmp) / "init"), str(out), args.n, options),
                         nprocs=size, join=True)
                rows.append({"optimizer": label, **json.loads(out.read_text())})
    print(f"MNIST CNN ({rows[0]['parameters']:,} parameters), {args.n} images, batch 64, "
          "gloo on the CPU, 1 thread per process")
    print(f"{'optimizer':14}{'processes':>10}{'train ms/step':>15}{'sweep ms/step':>15}"
          f"{'train bytes/step':>18}{'sweep bytes/step':>18}")
    for r in rows:
        print(f"{r['optimizer']:14}{r['processes']:10d}{r['fit_ms']:15.2f}{r['sweep_ms']:15.2f}"
              f"{r['fit_bytes']:18,.0f}{r['sweep_bytes']:18,.0f}")


if __name__ == "__main__":
    main()
