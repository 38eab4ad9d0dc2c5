"""The paper's Sec 7.2 CIFAR-10 curve at full size on the CPU, in stages that survive an
interruption: run the same command again and it continues where it stopped.

    OMP_NUM_THREADS=1 python benchmarks/cifar_full.py --data-dir ../shared/data --jobs 2

40,000 training and 10,000 validation images (the JPEG copy of CIFAR-10; the test split's
10,000 for test error), the authors' network and settings (20 epochs of SGD, batch 64,
lr 0.05, random crops and flips), as ``sgdinfluence experiment cleansing --dataset cifar10``
runs them in one go. Each stage's result is kept in ``--work`` (default out/cifar-full):

  run/               the recorded run (a DiskStore: 12,500 states of 307,946 parameters)
  scores-<m>.npz     each method's scores; the all-epoch sweep saves its state at each epoch
                     start in sweep.pt (``sgi.influence(..., checkpoint=)``)
  last/<m>-<k>.npz   validation mistakes and loss, and test error, after removing the k first
                     of m and retraining the last epoch (the paper's "retrain last")
  all/<case>.npz     for the chosen k: SGD-influence's k removed and all 20 epochs retrained;
                     2 fresh trainings (new seeds) with everything and with the k removed
  results.json       the table, printed beside the paper's 16.8% -> 15.6% at k = 300-600
                     (``--status``: what is done and under way, and the curve so far)

Methods: SGD-influence over all epochs and over the last epoch, and random removal (3 draws,
for the noise band). k: the paper's list up to a fifth of the training set. The chosen k is
the report's rule (:func:`sgdinfluence.app.cleanse.best_k`: the smallest k whose removal fixed
significantly more validation images than it broke and that the best such k does not beat
significantly).

Processes running this script side by side share the stages: each claims a stage before
computing it (``<stage>.claim`` holds its pid; a claim whose process has ended is taken over),
does whatever no other process holds and its inputs allow (the last-epoch sweep and the random
curves while another process sweeps all epochs), and waits for the rest. ``--jobs n`` starts n
of them (with OMP_NUM_THREADS=1 on 2 cores, 2 processes of one thread retrain about twice as
fast as one of two); the last trains the fresh seeds on all data first (``--fresh-first``), so
that these long trainings, which need no k, overlap the short curve stages.
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
from sgdinfluence.app.cleanse import PAPER_KS, Result, best_k, choose_model, error, outputs, split
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


def save_json(path: Path, value: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=1))
    os.replace(tmp, path)


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs. A process that has ended but is not yet reaped
    (a zombie: its parent waits on a sibling first) answers signals, so on Linux its state
    in /proc decides."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc: trust the signal


def claim(path: Path) -> Path | None:
    """``<path>.claim`` made this process's (its pid, linked into place atomically), or None
    while another living process holds it; the claim of a process that has ended is taken
    over."""
    lock = path.with_name(path.name + ".claim")
    mine = path.with_name(f".{path.name}.{os.getpid()}")
    mine.write_text(str(os.getpid()))
    try:
        while True:
            try:
                os.link(mine, lock)
                return lock
            except FileExistsError:
                try:
                    holder = int(lock.read_text())
                except (FileNotFoundError, ValueError):
                    continue  # released, or being replaced: try again
                if holder != os.getpid() and alive(holder):
                    return None
                lock.unlink(missing_ok=True)  # its process has ended: take the stage over
    finally:
        mine.unlink()


def stage(path: Path, what: str, compute, clock: dict) -> dict | None:
    """The arrays saved at ``path``: computed (and timed, the time saved with them) unless
    an earlier run saved them, or None while another process computes them."""
    if not path.exists():
        lock = claim(path)
        if lock is None:
            return None
        try:
            if not path.exists():  # (saved between the look and the claim)
                start = time.perf_counter()
                print(f"{time.strftime('%H:%M:%S')} {what} ...", flush=True)
                arrays = compute()
                seconds = time.perf_counter() - start
                save_npz(path, seconds=np.float64(seconds), **arrays)
                print(f"{time.strftime('%H:%M:%S')} {what}: {seconds:.0f} s", flush=True)
        finally:
            lock.unlink(missing_ok=True)
    arrays = dict(np.load(path))
    if "seconds" in arrays:
        clock[what] = float(arrays.pop("seconds"))
    return arrays


def record(work: Path, splits, cfg, clock: dict) -> sgi.Run | None:
    """Fit with recording into work/run, or load the run an earlier call recorded; None
    while another process records it."""
    name, crop = choose_model(cfg, splits.train.X.shape[1:])
    if (work / "run" / "run.pt").is_file():
        return sgi.load_run(work / "run")
    lock = claim(work / "run")
    if lock is None:
        return None
    start = time.perf_counter()
    print(f"{time.strftime('%H:%M:%S')} training {cfg.epochs} epochs, recording ...", flush=True)
    torch.manual_seed(cfg.seed)
    model = build(name, splits.train.X.shape[1:], len(splits.train.classes))
    run = sgi.fit(model, (splits.train.X, splits.train.y), epochs=cfg.epochs,
                  batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                  seed=cfg.seed, augment=crop, store=sgi.DiskStore(work / "run", overwrite=True),
                  progress=True)
    clock["training"] = time.perf_counter() - start
    lock.unlink()
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
    return measure(run.model, splits)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--work", default="out/cifar-full", type=Path)
    ap.add_argument("--subset", type=int, default=None, help="a quick check of the stages")
    ap.add_argument("--epochs", type=int, default=None, help="likewise")
    ap.add_argument("--stop-after", choices=["training", "scores", "last"], default=None,
                    help="stop once this stage is done (the next call continues)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="start this many processes, sharing the stages (the last of them "
                    "with --fresh-first)")
    ap.add_argument("--fresh-first", action="store_true",
                    help="train the fresh seeds on all data (they need no k) before taking "
                    "curve stages, so that these long trainings overlap the short ones")
    ap.add_argument("--status", action="store_true",
                    help="print the stages done and under way, the curve so far and, once "
                    "finished, the table; no work")
    args = ap.parse_args()
    if args.status:
        return status(args.work)
    if args.jobs > 1:
        return together(args.jobs)
    work: Path = args.work
    for sub in ("last", "all"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    clock_file = work / "seconds.json"
    clock = json.loads(clock_file.read_text()) if clock_file.exists() else {}

    cfg = CleansingConfig("cifar10", subset=args.subset, epochs=args.epochs).cleanse_config(0)
    splits = split(load_data("cifar10", root=args.data_dir), cfg)
    splits.train.X = np.asarray(splits.train.X)  # decoded once: 40,000 x 3 x 32 x 32 floats
    n = len(splits.train.y)
    ks = [k for k in PAPER_KS if k <= n // 5]
    print(f"{n:,} training, {len(splits.val.y):,} validation, {len(splits.test.y):,} test "
          f"images; k = {ks}; torch threads {torch.get_num_threads()}", flush=True)
    while (run := record(work, splits, cfg, clock)) is None:
        time.sleep(60)  # another process records it
    stops = {"training": 0, "scores": 1, "last": 2, None: 3}[args.stop_after]
    while (base := stage(work / "base.npz", "the model as trained",
                         lambda: measure(run.model, splits), clock)) is None:
        time.sleep(10)
    if args.fresh_first and stops == 3:
        fresh_all_data(work, splits, cfg, clock)
    while (done := step(run, base, work, splits, cfg, clock, ks, stops)) is None:
        time.sleep(60)  # the stages left are other processes' (or wait for theirs)
    save_json(clock_file, clock)
    if done:
        save_json(work / "results.json", done)
        print(table(done))


def step(run: sgi.Run, base: dict, work: Path, splits, cfg, clock: dict, ks: list[int],
         stops: int) -> dict | None:
    """One pass over the stages after training up to ``stops`` (1 scores, 2 the retrain-last
    curve, 3 the chosen k's trainings), doing each that no other process holds and whose
    inputs are there: None while some are left, then the summary ({} if stopped early)."""
    if stops == 0:
        return {}
    order, summed = {}, {}
    for m in METHODS:
        s = stage(work / f"scores-{m}.npz", f"scores {m}",
                  lambda m=m: {"scores": scores(run, m, splits.val, work)}, clock)
        if s is not None:
            order[m] = np.argsort(s["scores"], kind="stable")
            summed[m] = np.cumsum(np.r_[0, s["scores"][order[m]]])  # what its k first predict
    if len(order) < len(METHODS) and stops == 1:
        return None
    if stops == 1:
        return {}

    mistakes = {m: {0: base["val_wrong"]} for m in METHODS}
    curves = {m: {0: (float(base["val_wrong"].mean()), float(base["test"]))} for m in METHODS}
    losses = {m: {0: float(base.get("val_loss", np.nan))} for m in METHODS}  # (where recorded)
    # k by k, every method, the paper's best k first
    for k in sorted(ks, key=lambda k: (k not in (300, 600), k not in (100, 1000), k)):
        for m in order:
            r = stage(work / "last" / f"{m}-{k}.npz", f"retrain last, {m}, k = {k}",
                      lambda m=m, k=k: _after(run, order[m][:k], run.epochs - 1, splits), clock)
            if r is not None:
                mistakes[m][k] = r["val_wrong"]
                curves[m][k] = (float(r["val_wrong"].mean()), float(r["test"]))
                losses[m][k] = float(r.get("val_loss", np.nan))
    if any(k not in curves[m] for k in ks for m in METHODS):
        if stops == 3:  # nothing of the curve to take now: a fresh training needs no k
            fresh_all_data(work, splits, cfg, clock)
        return None
    if stops == 2:
        return {}

    result = Result(cfg, splits, run, "cifar-cnn", {}, curves, mistakes=mistakes)
    k = best_k(result, "sgd")
    chosen = k or min(ks, key=lambda j: (curves["sgd"][j][0], j))  # none significant: say so
    removed = order["sgd"][:chosen]
    after = {"retrain all": stage(work / "all" / f"sgd-{chosen}.npz",
                                  f"retrain all, sgd, k = {chosen}",
                                  lambda: _after(run, removed, 0, splits), clock)}
    for s in FRESH_SEEDS:
        for case, rows in (("all data", removed[:0]), (f"k = {chosen} removed", removed)):
            after[f"fresh seed {s}, {case}"] = stage(
                work / "all" / f"fresh-{s}-{len(rows)}.npz", f"fresh seed {s}, {case}",
                lambda rows=rows, s=s: fresh(splits, cfg, rows, s), clock)
    if any(r is None for r in after.values()):
        return None
    return {
        "train": len(splits.train.y), "val": len(splits.val.y), "test": len(splits.test.y),
        "ks": ks,
        "test_error": {m: {str(j): curves[m][j][1] for j in curves[m]} for m in METHODS},
        "val_error": {m: {str(j): curves[m][j][0] for j in curves[m]} for m in METHODS},
        "val_loss": {m: {str(j): None if np.isnan(v) else v for j, v in losses[m].items()}
                     for m in METHODS},
        "val_loss_predicted": {m: {str(j): losses[m][0] + float(summed[m][j]) for j in [0, *ks]}
                               for m in ("sgd", "sgd-last")},
        "chosen_k": int(chosen), "significant": bool(k),
        "after": {c: float(r["test"]) for c, r in after.items()}, "seconds": clock,
        "paper": PAPER["cifar10"],
    }


def status(work: Path) -> None:
    """What is done (test error after retraining the last epoch, per method and k), what is
    under way (the live claims) and what the all-epoch sweep's checkpoint holds."""
    done = sorted(p.relative_to(work) for p in work.rglob("*.npz") if not p.name.startswith("."))
    print(f"{len(done)} stages done in {work}")
    if (work / "base.npz").exists():
        base = dict(np.load(work / "base.npz"))
        print(f"  the model as trained: test error {100 * float(base['test']):.2f}%" + (
            f" (val. loss {float(base['val_loss']):.4f})" if "val_loss" in base else ""))
    for m in METHODS:
        row = {int(p.stem.rsplit("-", 1)[1]): dict(np.load(p))
               for p in (work / "last").glob(f"{m}-*.npz")
               if p.stem.rsplit("-", 1)[0] == m}
        points = ", ".join(f"k={k} {100 * float(r['test']):.2f}%" + (
            f" (val. loss {float(r['val_loss']):.4f})" if "val_loss" in r else "")
            for k, r in sorted(row.items()))
        print(f"  {m}: {'scores' if (work / f'scores-{m}.npz').exists() else 'no scores'}; "
              f"test error, retrain last: {points or '-'}")
    for p in sorted((work / "all").glob("*.npz")):  # the chosen k's and fresh trainings
        print(f"  {p.relative_to(work)}: test error {100 * float(np.load(p)['test']):.2f}%")
    for lock in sorted(work.rglob("*.claim")):
        holder = int(lock.read_text() or 0)
        print(f"  under way: {lock.relative_to(work).with_suffix('')} (process {holder}"
              f"{'' if alive(holder) else ', ended: the next call takes it over'})")
    if (work / "sweep.pt").exists():
        print("  the all-epoch sweep has a checkpoint (sweep.pt)")
    if (work / "results.json").exists():
        print("\n" + table(json.loads((work / "results.json").read_text())))


def fresh_all_data(work: Path, splits, cfg, clock: dict) -> None:
    """The fresh trainings with all the data, those that no other process holds."""
    for s in FRESH_SEEDS:
        stage(work / "all" / f"fresh-{s}-0.npz", f"fresh seed {s}, all data",
              lambda s=s: fresh(splits, cfg, np.arange(0), s), clock)


def together(jobs: int) -> None:
    """``--jobs n``: n processes of this script (the same arguments), sharing the stages."""
    argv, skip = [], False
    for a in sys.argv[1:]:
        if not skip and not a.startswith("--jobs"):
            argv.append(a)
        skip = a == "--jobs"
    children = [subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *argv,
                                  *(["--fresh-first"] if i == jobs - 1 else [])])
                for i in range(jobs)]
    if any([c.wait() for c in children]):
        raise SystemExit("a process failed (its error is above); run the command again to "
                         "continue")


def _after(run: sgi.Run, removed: np.ndarray, from_epoch: int, splits) -> dict:
    return measure(run.retrain(removed, from_epoch=from_epoch), splits)


def measure(model: torch.nn.Module, splits) -> dict:
    """Validation mistakes, the query itself (mean validation cross-entropy, what the scores
    estimate the change of) and test error, in eval mode."""
    logits = outputs(model, splits.val)
    y = torch.as_tensor(splits.val.y, dtype=torch.long)
    return {"val_wrong": (logits.argmax(1) != y).numpy(),
            "val_loss": float(torch.nn.functional.cross_entropy(logits, y)),
            "test": error(model, splits.test)}


def table(s: dict) -> str:
    """Markdown: test error and the query (validation loss) after retraining the last epoch,
    per method and k, the random draws as mean ± std; then the chosen k's trainings."""
    ks = ["0"] + [str(k) for k in s["ks"]]
    out = []
    for key, what, fmt in (("test_error", "test error", lambda v: f"{100 * v:.2f}%"),
                           ("val_loss", "validation loss", lambda v: f"{v:.4f}")):
        def cell(v, fmt=fmt):
            return "–" if v is None else fmt(v)
        rand = np.array([[np.nan if (v := s[key][f"random-{d}"].get(k)) is None else v
                          for k in ks] for d in range(3)])
        out += [f"\n| {what}, retrain last | " + " | ".join(ks) + " |",
                "|---|" + "---|" * len(ks)]
        for name, m in (("SGD-influence, all epochs", "sgd"),
                        ("SGD-influence, last epoch", "sgd-last")):
            out.append(f"| {name} | " + " | ".join(cell(s[key][m].get(k)) for k in ks) + " |")
            if key == "val_loss" and "val_loss_predicted" in s:  # the scores' sum, for contrast
                out.append("| … as the sum of its k scores predicts | " + " | ".join(
                    cell(s["val_loss_predicted"][m][k]) for k in ks) + " |")
        band = zip(rand.mean(0), rand.std(0), strict=True)
        out.append("| random, 3 draws (mean ± std) | " + " | ".join(
            "–" if np.isnan(m) else f"{cell(m)} ± {cell(d)}" for m, d in band) + " |")
    sig = "" if s["significant"] else " (no k significant on validation: the lowest)"
    out.append(f"\nchosen k = {s['chosen_k']}{sig}; test error after:")
    out += [f"- {case}: {100 * e:.2f}%" for case, e in s["after"].items()]
    out.append(f"\npaper (Hara et al. 2019, Fig. 3): {s['paper']}")
    return "\n".join(out).lstrip()


if __name__ == "__main__":
    main()
