"""The paper's Sec 7.2 CIFAR-10 curve at full size on the CPU, in stages that survive an
interruption: run the same command again and it continues where it stopped.

    OMP_NUM_THREADS=1 python benchmarks/cifar_full.py --data-dir ../shared/data [--jobs 2]

40,000 training and 10,000 validation images (the JPEG copy of CIFAR-10; the test split's
10,000 for test error), the authors' network and settings (20 epochs of SGD, batch 64,
lr 0.05, random crops and flips), as ``sgdinfluence experiment cleansing --dataset cifar10``
runs them in one go. Each stage's result is kept in ``--work`` (default out/cifar-full):

  run/               the recorded run (a DiskStore: 12,500 states of 307,946 parameters)
  scores-<m>.npy     each method's scores; the all-epoch sweep saves its state at each epoch
                     start in sweep.pt (``sgi.influence(..., checkpoint=)``)
  last/<m>-<k>.npz   validation mistakes and test error after removing the k first of m and
                     retraining the last epoch (the paper's "retrain last")
  all/<case>.npz     for the chosen k: SGD-influence's k removed and all 20 epochs retrained;
                     2 fresh trainings (new seeds) with everything and with the k removed
  results.json       the table, printed beside the paper's 16.8% -> 15.6% at k = 300-600

Methods: SGD-influence over all epochs and over the last epoch, and random removal (3 draws,
for the noise band). k: the paper's list up to a fifth of the training set. The chosen k is
the report's rule (:func:`sgdinfluence.app.cleanse.best_k`: the smallest k whose removal fixed
significantly more validation images than it broke and that the best such k does not beat
significantly).

``--jobs n`` shares the retraining stages among n processes (each one thread where
OMP_NUM_THREADS=1: on this machine's 2 cores, 2 processes of one thread retrain about twice as
fast as one of two); training and the sweeps stay in one process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import sgdinfluence as sgi
from sgdinfluence.app.cleanse import PAPER_KS, Result, best_k, choose_model, error, split, wrong
from sgdinfluence.app.data import load_data
from sgdinfluence.app.experiments.cleansing import PAPER, CleansingConfig
from sgdinfluence.app.models import build

METHODS = ("sgd", "sgd-last", "random-0", "random-1", "random-2")
FRESH_SEEDS = (1, 2)


def save_npz(path: Path, **arrays) -> None:
    """Atomically: a stage is either there whole or not at all."""
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def stage(path: Path, what: str, compute, clock: dict):
    """The arrays saved at ``path``, computed (and timed, the time saved with them) unless an
    earlier run saved them."""
    if not path.exists():
        start = time.perf_counter()
        print(f"{time.strftime('%H:%M:%S')} {what} ...", flush=True)
        arrays = compute()
        seconds = time.perf_counter() - start
        save_npz(path, seconds=np.float64(seconds), **arrays)
        print(f"{time.strftime('%H:%M:%S')} {what}: {seconds:.0f} s", flush=True)
    arrays = dict(np.load(path))
    if "seconds" in arrays:
        clock[what] = float(arrays.pop("seconds"))
    return arrays


def drive(jobs: int) -> None:
    """``--jobs n``: this script again, in stages: one process trains and sweeps, n retrain
    (each its share of the curve, then of the chosen k's trainings), one gathers the table."""
    argv, skip = [], False
    for a in sys.argv[1:]:
        if not skip and not a.startswith("--jobs"):
            argv.append(a)
        skip = a == "--jobs"
    stop = argv[argv.index("--stop-after") + 1] if "--stop-after" in argv else None
    me = [sys.executable, str(Path(__file__).resolve()), *argv]

    def together(*runs: list[str]) -> None:
        children = [subprocess.Popen(me + extra) for extra in runs]
        if any(c.wait() for c in children):
            raise SystemExit("a job failed (its error is above); run the command again to "
                             "continue")

    if stop in ("training", "scores"):
        return together([])
    together(["--stop-after", "scores"])
    shares = [f"{i}/{jobs}" for i in range(jobs)]
    together(*[["--share", s, "--stop-after", "last"] for s in shares])
    if stop != "last":
        together(*[["--share", s] for s in shares])
        together([])


def record(work: Path, splits, cfg, clock: dict) -> sgi.Run:
    """Fit with recording into work/run, or load the run an earlier call recorded."""
    name, crop = choose_model(cfg, splits.train.X.shape[1:])
    if (work / "run" / "run.pt").is_file():
        return sgi.load_run(work / "run")
    start = time.perf_counter()
    print(f"{time.strftime('%H:%M:%S')} training 20 epochs, recording ...", flush=True)
    torch.manual_seed(cfg.seed)
    model = build(name, splits.train.X.shape[1:], len(splits.train.classes))
    run = sgi.fit(model, (splits.train.X, splits.train.y), epochs=cfg.epochs,
                  batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                  seed=cfg.seed, augment=crop, store=sgi.DiskStore(work / "run", overwrite=True),
                  progress=True)
    clock["training"] = time.perf_counter() - start
    return run


def scores(run: sgi.Run, method: str, val, work: Path) -> np.ndarray:
    q = (val.X, val.y)
    if method == "sgd":
        return sgi.influence(run, q, checkpoint=work / "sweep.pt", progress=True)
    if method == "sgd-last":
        return sgi.influence(run, q, epochs=1, progress=True)
    draw = int(method.split("-")[1])  # random: a permutation, most "harmful" first
    return np.random.default_rng(draw).permutation(run.num_train).astype(np.float64)


def fresh(splits, cfg, removed: np.ndarray, seed: int) -> dict:
    """Test error of a model trained afresh (new seed) without ``removed``."""
    name, crop = choose_model(cfg, splits.train.X.shape[1:])
    keep = np.setdiff1d(np.arange(len(splits.train.y)), removed)
    torch.manual_seed(seed)
    model = build(name, splits.train.X.shape[1:], len(splits.train.classes))
    run = sgi.fit(model, (splits.train.X[keep], splits.train.y[keep]), epochs=cfg.epochs,
                  batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                  seed=seed, augment=crop, store="replay", progress=True)
    return {"test": error(run.model, splits.test), "val_wrong": wrong(run.model, splits.val)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--work", default="out/cifar-full", type=Path)
    ap.add_argument("--subset", type=int, default=None, help="a quick check of the stages")
    ap.add_argument("--epochs", type=int, default=None, help="likewise")
    ap.add_argument("--stop-after", choices=["training", "scores", "last"], default=None,
                    help="stop after this stage (the next call continues)")
    ap.add_argument("--jobs", type=int, default=1, help="processes for the retraining stages")
    ap.add_argument("--share", default=None, help=argparse.SUPPRESS)  # "i/n": a job's share
    args = ap.parse_args()
    if args.jobs > 1:
        return drive(args.jobs)
    share = tuple(map(int, args.share.split("/"))) if args.share else None

    def mine(i: int, path: Path) -> bool:
        """Whether this process computes (or reads) stage i: all of them, or its share."""
        return share is None or i % share[1] == share[0] or path.exists()
    work: Path = args.work
    for sub in ("last", "all"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    clock_file = work / "seconds.json"
    clock = json.loads(clock_file.read_text()) if clock_file.exists() else {}

    def tick() -> None:  # (jobs keep their times in their stages' files)
        if share is None:
            clock_file.write_text(json.dumps(clock, indent=1))

    cfg = CleansingConfig("cifar10", subset=args.subset, epochs=args.epochs).cleanse_config(0)
    splits = split(load_data("cifar10", root=args.data_dir), cfg)
    splits.train.X = np.asarray(splits.train.X)  # decoded once: 40,000 x 3 x 32 x 32 floats
    n = len(splits.train.y)
    ks = [k for k in PAPER_KS if k <= n // 5]
    print(f"{n:,} training, {len(splits.val.y):,} validation, {len(splits.test.y):,} test "
          f"images; k = {ks}; torch threads {torch.get_num_threads()}", flush=True)

    run = record(work, splits, cfg, clock)
    tick()
    if args.stop_after == "training":
        return
    order = {}
    for m in METHODS:
        s = stage(work / f"scores-{m}.npz", f"scores {m}",
                  lambda m=m: {"scores": scores(run, m, splits.val, work)}, clock)["scores"]
        order[m] = np.argsort(s, kind="stable")
        tick()
    if args.stop_after == "scores":
        return

    base = {"val_wrong": wrong(run.model, splits.val), "test": error(run.model, splits.test)}
    mistakes = {m: {0: base["val_wrong"]} for m in METHODS}
    curves = {m: {0: (float(base["val_wrong"].mean()), base["test"])} for m in METHODS}
    # k by k, every method (a stopped run has whole columns), the paper's best k first
    first = sorted(ks, key=lambda k: (k not in (300, 600), k not in (100, 1000), k))
    for i, (k, m) in enumerate((k, m) for k in first for m in METHODS):
        path = work / "last" / f"{m}-{k}.npz"
        if not mine(i, path):
            continue
        r = stage(path, f"retrain last, {m}, k = {k}",
                  lambda m=m, k=k: _after(run, order[m][:k], run.epochs - 1, splits), clock)
        mistakes[m][k] = r["val_wrong"]
        curves[m][k] = (float(r["val_wrong"].mean()), float(r["test"]))
        tick()
    if args.stop_after == "last" or any(k not in curves[m] for k in ks for m in METHODS):
        return  # (a job's share of the curve is not the curve)

    result = Result(cfg, splits, run, "cifar-cnn", {}, curves, mistakes=mistakes)
    k = best_k(result, "sgd")
    chosen = k or min(ks, key=lambda j: (curves["sgd"][j][0], j))  # none significant: say so
    removed = order["sgd"][:chosen]
    cases = {"retrain all": (work / "all" / f"sgd-{chosen}.npz",
                             lambda: _after(run, removed, 0, splits))}
    for s in FRESH_SEEDS:
        for case, rows in (("all data", removed[:0]), (f"k = {chosen} removed", removed)):
            cases[f"fresh seed {s}, {case}"] = (work / "all" / f"fresh-{s}-{len(rows)}.npz",
                                                lambda rows=rows, s=s: fresh(splits, cfg,
                                                                             rows, s))
    what = {"retrain all": f"retrain all, sgd, k = {chosen}"}
    after = {case: stage(path, what.get(case, case), compute, clock)
             for i, (case, (path, compute)) in enumerate(cases.items()) if mine(i, path)}
    tick()
    if share or len(after) < len(cases):
        return  # (the table is the gathering process's)
    summary = {
        "train": n, "val": len(splits.val.y), "test": len(splits.test.y), "ks": ks,
        "test_error": {m: {str(j): curves[m][j][1] for j in curves[m]} for m in METHODS},
        "val_error": {m: {str(j): curves[m][j][0] for j in curves[m]} for m in METHODS},
        "chosen_k": int(chosen), "significant": bool(k),
        "after": {c: float(r["test"]) for c, r in after.items()}, "seconds": clock,
        "paper": PAPER["cifar10"],
    }
    (work / "results.json").write_text(json.dumps(summary, indent=1))
    print(table(summary))


def _after(run: sgi.Run, removed: np.ndarray, from_epoch: int, splits) -> dict:
    model = run.retrain(removed, from_epoch=from_epoch)
    return {"val_wrong": wrong(model, splits.val), "test": error(model, splits.test)}


def table(s: dict) -> str:
    ks = ["0"] + [str(k) for k in s["ks"]]
    rand = np.array([[s["test_error"][f"random-{d}"][k] for k in ks] for d in range(3)])
    rows = [("SGD-influence, all epochs", s["test_error"]["sgd"]),
            ("SGD-influence, last epoch", s["test_error"]["sgd-last"])]
    out = ["| test error, retrain last | " + " | ".join(ks) + " |",
           "|---|" + "---|" * len(ks)]
    out += [f"| {name} | " + " | ".join(f"{100 * row[k]:.2f}%" for k in ks) + " |"
            for name, row in rows]
    band = zip(rand.mean(0), rand.std(0), strict=True)
    out.append("| random, 3 draws (mean ± std) | "
               + " | ".join(f"{100 * m:.2f} ± {100 * d:.2f}%" for m, d in band) + " |")
    sig = "" if s["significant"] else " (no k significant on validation: the lowest)"
    out.append(f"\nchosen k = {s['chosen_k']}{sig}; test error after:")
    out += [f"- {case}: {100 * e:.2f}%" for case, e in s["after"].items()]
    out.append(f"\npaper (Hara et al. 2019, Fig. 3): {s['paper']}")
    return "\n".join(out)


if __name__ == "__main__":
    main()
