"""MNIST, retrain all: does removing SGD-influence's k most harmful help this run, and runs
trained afresh on the cleaned data?

The paper's split (50,000 / 10,000, official test), the MNIST CNN, 20 epochs of SGD (batch 64,
lr 0.05, crops), seed 0. For k in --ks, SGD-influence's (all epochs) and random k are removed
and the run is retrained from the start on the identical schedule; then models are trained
afresh (new initialisation and shuffles, seeds 1..--seeds) on all the data and without each
removed set. Prints each test error as it comes and writes --out (JSON).

    OMP_NUM_THREADS=1 python benchmarks/retrain_fresh.py --data-dir ../shared/data  # ~30 min
    # the README's table: --ks 10,30,100,300 --seeds 3 (75 min)
"""
import argparse
import json
import time

import numpy as np
import torch

import sgdinfluence as sgi
from sgdinfluence.app.cleanse import error, split
from sgdinfluence.app.data import load
from sgdinfluence.app.experiments.cleansing import SETTINGS
from sgdinfluence.app.models import mnist_cnn
from sgdinfluence.core.augment import RandomCrop

ap = argparse.ArgumentParser(description=__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--data-dir", default=None)
ap.add_argument("--ks", default="30,300")
ap.add_argument("--seeds", type=int, default=2)
ap.add_argument("--out", default="retrain_fresh.json")
args = ap.parse_args()
ks = [int(k) for k in args.ks.split(",")]
torch.set_num_threads(1)
splits = split(load("mnist", args.data_dir), SETTINGS["mnist"])
tr, va, te = splits.train, splits.val, splits.test
crop = RandomCrop(padding=2)
opts = dict(epochs=20, batch_size=64, lr=0.05, augment=crop)
t0 = time.perf_counter()
torch.manual_seed(0)
run = sgi.fit(mnist_cnn(), (tr.X, tr.y), seed=0, **opts)
base = error(run.model, te)
print(f"trained: test error {base:.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
scores = sgi.influence(run, (va.X, va.y))
orders = {"sgd": np.argsort(scores, kind="stable"),
          "random": np.random.default_rng(0).permutation(len(tr.y))}
print(f"swept ({time.perf_counter() - t0:.0f} s)", flush=True)
out = {"base": base, "same_run": {}, "fresh": {}}
for k in ks:
    for m, order in orders.items():
        out["same_run"][f"{m}-{k}"] = error(run.retrain(order[:k], from_epoch=0), te)
        print(f"same run, {m} k={k}: {out['same_run'][f'{m}-{k}']:.4f} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
for s in range(1, args.seeds + 1):
    cases = {"none-0": np.arange(0)} | {f"{m}-{k}": o[:k] for k in ks
                                          for m, o in orders.items()}
    for name, removed in cases.items():
        keep = np.setdiff1d(np.arange(len(tr.y)), removed)
        torch.manual_seed(s)
        fresh = sgi.fit(mnist_cnn(), (tr.X[keep], tr.y[keep]), seed=s, store="replay", **opts)
        out["fresh"].setdefault(name, []).append(error(fresh.model, te))
        print(f"fresh seed {s}, {name}: {out['fresh'][name][-1]:.4f} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
with open(args.out, "w") as f:
    json.dump(out, f, indent=1)
