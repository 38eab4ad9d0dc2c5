"""Estimators that might stay meaningful longer on deep nets (issue 22, part 2), side by side
on the same runs, with sgi.reliability's verdict on each run.

Per model, one run (seed 0) and its validation set's mean loss as the query Q. Rows:

- ``sgd (all epochs)``: Algorithm 2 over the whole run (today's default);
- ``sgd last epoch``: ``epochs=1``;
- ``sgd auto``: ``epochs="auto"``, the last k epochs over which ‖u‖ grows at most 10x
  (the rule and its 10 fixed before any measure was taken; k is printed);
- ``sgd at=epochs``: the query averaged over the ends of the epochs (a different quantity,
  compared with the same leave-one-out as the others);
- ``sgd damped c=…``: ``damping=λ`` with λ = c / (η_eff · steps per epoch), so that a step's
  term fades by about e^-c per later epoch; η_eff = η / (1 − momentum) under SGD and
  η / median(√v̂ + ε) at θ[T] under Adam(W); c = 1 (and 0.1) fixed in advance;
- ``seed average (S)``: the all-epoch scores of S runs recorded with seeds 0..S-1 (new
  initialisation, shuffles, dropout) on the same training set, averaged; ``seed average
  auto (S)``: the same runs' ``epochs="auto"`` scores, averaged.

Columns: Kendall's τ against literal leave-one-out on the identical schedule (a random sample
of instances); LDS (Spearman over random halves left out, the summed scores of the left-out
half against the change of Q) against identical-schedule retraining, and against fresh
training on the kept half with a new seed; cost in trainings of the base run (measured
wall time of the estimator over that of the training; the seed average counts its extra
trainings and sweeps). Results are written after every stage to OUT/results.json and
OUT/table.md, so a run that is cut still leaves its table.

    OMP_NUM_THREADS=1 python benchmarks/deep_estimators.py --data-dir ../shared/data \
        --out out/deep-estimators

Models (all float64 unless said): Sec 7.1's MLP 8-8 on 200 Adult rows (the control); tiny
BERT (deep_ratios.tiny_bert, AdamW lr 3e-3, 3 epochs on 256 sequences); the paper's MNIST CNN
on 1,000 images (3 epochs, batch 64, lr 0.05); ResNet-18 (deep_ratios.resnet18, Nesterov
momentum 0.9, weight decay 5e-4, lr 0.05, float32) on 64 random CIFAR-10 images, 2 epochs
of batch 16. Sizes are the defaults below, chosen to fit on one core; see --help.

Measured here (2026-12-03, one core of a shared machine; tables in docs/design.md, "Deep
models"): the default run took 1,336 s; `--models bert --bert-n 512` 391 s; `--models resnet
--resnet-lr 0.01 --resnet-loo 24 --resnet-halves 20 --resnet-seeds 3` 1,121 s. No estimator
beat the all-epoch sweep beyond its paired bootstrap error on τ or the identical-schedule
LDS; reliability held on the MLP and the CNN and did not on BERT and the ResNets.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import sgdinfluence as sgi
from deep_ratios import cifar_subset, resnet18, tiny_bert
from sgdinfluence.core import metrics
from sgdinfluence.core.estimators import MAX_GROWTH, _statistics, math_attention
from sgdinfluence.core.estimators.sgd import auto_epochs, sgd_influence
from sgdinfluence.core.queries import Query


@dataclass
class Setting:
    """One model's run and the sizes of its checks."""

    name: str
    make: object  # () -> nn.Module, initialised from torch's global seed
    train: tuple
    val: tuple
    fit: dict
    loo: int  # instances left out literally (random, without replacement)
    halves: int  # random halves for the LDS, identical schedule and fresh
    seeds: int  # runs averaged by the seed average
    dampings: tuple = (1.0, 0.1)
    base: int = 0  # the seed of the run measured; the seed average adds the next ones
    notes: list = field(default_factory=list)


def settings(args) -> list[Setting]:
    from sgdinfluence.app.data import load
    from sgdinfluence.app.models import mlp, mnist_cnn

    out = []
    rng = np.random.default_rng(0)
    if "mlp" in args.models:
        table = load("adult", args.data_dir)["train"]
        rows = rng.choice(len(table.y), 400, replace=False)
        X = torch.as_tensor(table.X[rows], dtype=torch.float64)
        y = torch.as_tensor(table.y[rows]).long()
        d = X.shape[1]
        out.append(Setting("MLP 8-8, Adult (control)", lambda: mlp(d, hidden=(8, 8)).double(),
                           (X[:200], y[:200]), (X[200:], y[200:]),
                           dict(epochs=10, batch_size=20, lr=0.1, weight_decay=1e-3),
                           loo=200, halves=args.halves, seeds=args.seeds))
    if "bert" in args.models:
        bert = tiny_bert(generator=torch.Generator().manual_seed(0))
        if bert is not None:
            make, tokens, labels = bert
            n = args.bert_n
            out.append(Setting("tiny BERT (AdamW)", lambda: make().double(),
                               (tokens[:n], labels[:n]), (tokens[512:], labels[512:]),
                               dict(epochs=3, batch_size=32, lr=3e-3, optimizer="adamw",
                                    weight_decay=0.01),
                               loo=args.loo, halves=args.halves, seeds=args.seeds))
    if "cnn" in args.models:
        table = load("mnist", args.data_dir)["train"]
        rows = rng.choice(len(table.y), args.cnn_n + 500, replace=False)
        X = torch.as_tensor(table.X[rows], dtype=torch.float64)
        y = torch.as_tensor(table.y[rows]).long()
        n = args.cnn_n
        out.append(Setting(f"MNIST CNN, {n} images", lambda: mnist_cnn().double(),
                           (X[:n], y[:n]), (X[n:], y[n:]),
                           dict(epochs=3, batch_size=64, lr=0.05),
                           loo=args.loo, halves=args.halves, seeds=args.seeds))
    if "resnet" in args.models:
        n = args.resnet_n
        X, y = cifar_subset(args.data_dir, n + 128)
        dt = torch.float64 if args.resnet_dtype == "float64" else torch.float32
        X = X.to(dt)
        out.append(Setting(f"ResNet-18, {n} CIFAR-10 images, lr {args.resnet_lr:g} "
                           f"({args.resnet_dtype})",
                           lambda: resnet18().to(dt), (X[:n], y[:n]), (X[n:], y[n:]),
                           dict(epochs=args.resnet_epochs, batch_size=args.resnet_batch,
                                lr=args.resnet_lr, momentum=0.9, nesterov=True,
                                weight_decay=5e-4),
                           loo=args.resnet_loo, halves=args.resnet_halves,
                           seeds=args.resnet_seeds, dampings=(1.0,)))
    return out


def record(s: Setting, seed: int):
    """The run of ``s`` with ``seed`` (initialisation, shuffles, dropout) and its seconds."""
    torch.manual_seed(seed)
    start = time.perf_counter()
    run = sgi.fit(s.make(), s.train, seed=seed, **s.fit)
    return run, time.perf_counter() - start


def full_sweep(run, val):
    """One full sweep: its scores, the scores of every last-k sweep (k = 1..E) and the
    adjoint's growth per epoch; the seconds it took."""
    q = Query(run, val)
    kept: dict[int, np.ndarray] = {}
    norms: list[torch.Tensor] = []
    start = time.perf_counter()
    with math_attention(run):
        U = q.gradients(q.objective.flatten())
        full = sgd_influence(run, U, statistics=_statistics(run, q), norms=norms,
                             save=lambda st: kept.__setitem__(
                                 st["t"], st["scores"][0].detach().cpu().numpy().copy()))
    seconds = time.perf_counter() - start
    last = {run.epochs - e: kept[run.epoch_starts[e]] for e in range(run.epochs)}
    k = int(auto_epochs(norms, MAX_GROWTH)[0])
    growth = [float(n[0] / norms[0][0]) for n in norms[1:]]  # after 1, 2, ... epochs swept
    return full[0].detach().cpu().numpy(), last, k, growth, seconds


def eta_eff(run) -> float:
    """The run's effective step size at its end: η / (1 − momentum) under SGD, η over the
    median of √v̂ + ε before the last step under Adam(W)."""
    opt = run.optimizer
    lr = run.rate(run.num_steps - 1)
    if opt.name == "sgd":
        return lr / (1 - (opt.momentum or 0.0))
    _, (_, v) = run.unpack(run.store[run.num_steps - 1])  # before the last step
    vhat = v / (1 - opt.betas[1] ** (run.num_steps - 1))
    return lr / float((vhat.sqrt() + opt.eps).median())


def query_value(run, val) -> float:
    q = Query(run, val)
    with math_attention(run):
        return float(q.values(q.objective.flatten())[0])


def measure(s: Setting, results: dict, save, out: Path) -> None:
    raw: dict[str, np.ndarray] = {}
    slug = "".join(c if c.isalnum() else "-" for c in s.name.split(",")[0].lower())

    def keep() -> None:  # the raw vectors, for the bootstrap and any later reading
        np.savez(out / f"{slug}.npz", **raw, **{f"score:{n}": v for n, v in scores.items()})
        save()

    res = results.setdefault(s.name, {"fit": {k: str(v) for k, v in s.fit.items()},
                                      "rows": {}, "sizes": {}})
    rows = res["rows"]
    run, trained = record(s, s.base)
    res["train_seconds"] = trained
    res["sizes"] = dict(train=len(s.train[1]), val=len(s.val[1]), steps=run.num_steps,
                        loo=min(s.loo, len(s.train[1])), halves=s.halves, seeds=s.seeds)
    print(f"\n== {s.name}: trained in {trained:.1f} s ({run.num_steps} steps)", flush=True)

    start = time.perf_counter()
    r = sgi.reliability(run, s.val, sample=8)
    res["reliability"] = r.as_dict() | {"seconds": time.perf_counter() - start}
    print(f"reliability: {r.verdict}; Spearman {r.spearman:.2f}, scale {r.scale:.3g}, growth "
          f"{', '.join(f'{g:.3g}' for g in r.growth)} ({time.perf_counter() - start:.0f} s)",
          flush=True)
    save()

    scores: dict[str, np.ndarray] = {}
    cost: dict[str, float] = {}
    full, last, k, growth, swept = full_sweep(run, s.val)
    res["sweep_vs_reliability"] = float(np.abs(full - r.all_scores).max())  # expected 0
    res["growth"], res["auto_k"] = growth, k
    scores["sgd (all epochs)"], cost["sgd (all epochs)"] = full, swept
    scores[f"sgd auto (k={k})"], cost[f"sgd auto (k={k})"] = last[k], swept
    start = time.perf_counter()
    scores["sgd last epoch"] = sgi.influence(run, s.val, epochs=1)
    cost["sgd last epoch"] = time.perf_counter() - start
    res["last_vs_kept"] = float(np.abs(scores["sgd last epoch"] - last[1]).max())  # 0
    start = time.perf_counter()
    scores["sgd at=epochs"] = sgi.influence(run, s.val, at="epochs")
    cost["sgd at=epochs"] = time.perf_counter() - start
    steps_per_epoch = run.num_steps / run.epochs
    eff = eta_eff(run)
    res["eta_eff"] = eff
    for c in s.dampings:
        lam = c / (eff * steps_per_epoch)
        name = f"sgd damped c={c:g} (λ={lam:.3g})"
        start = time.perf_counter()
        scores[name] = sgi.influence(run, s.val, damping=lam)
        cost[name] = time.perf_counter() - start
    print(f"estimates: sweep {swept:.1f} s; auto k = {k} of {run.epochs}", flush=True)

    # seed average: runs recorded with other seeds on the same training set
    extra, alls, autos = 0.0, [full], [last[k]]
    for seed in range(s.base + 1, s.base + s.seeds):
        other, t = record(s, seed)
        f, lst, ko, _, sw = full_sweep(other, s.val)
        extra += t + sw
        alls.append(f)
        autos.append(lst[ko])
    if s.seeds > 1:
        scores[f"seed average ({s.seeds})"] = np.mean(alls, axis=0)
        cost[f"seed average ({s.seeds})"] = swept + extra
        scores[f"seed average auto ({s.seeds})"] = np.mean(autos, axis=0)
        cost[f"seed average auto ({s.seeds})"] = swept + extra
    for name in scores:
        rows.setdefault(name, {})["cost"] = cost[name] / trained
    res["finite"] = {n: bool(np.isfinite(v).all()) for n, v in scores.items()}
    keep()

    # truths: literal leave-one-out on a random sample, then random halves both ways
    n = len(s.train[1])
    rng = np.random.default_rng(1)
    sample = np.sort(rng.choice(n, min(s.loo, n), replace=False))
    start = time.perf_counter()
    truth = sgi.leave_out(run, s.val, [[int(j)] for j in sample])
    res["loo_seconds"] = time.perf_counter() - start
    res["loo_nonzero"] = int(np.count_nonzero(truth))
    raw |= {"sample": sample, "truth": truth}
    for name, v in scores.items():
        rows[name]["tau"] = metrics.kendall_tau(v[sample], truth)
    bootstrap(res, scores, raw)
    print(f"leave-one-out of {len(sample)} ({res['loo_seconds']:.0f} s)", flush=True)
    keep()

    masks = [rng.permutation(n) < n // 2 for _ in range(s.halves)]
    start = time.perf_counter()
    identical = sgi.leave_out(run, s.val, masks)
    res["identical_seconds"] = time.perf_counter() - start
    M = np.stack(masks).astype(np.float64)
    raw |= {"masks": M, "identical": identical}
    for name, v in scores.items():
        rows[name]["lds_identical"] = metrics.lds(M @ v, identical)
    bootstrap(res, scores, raw)
    print(f"identical-schedule halves ({res['identical_seconds']:.0f} s)", flush=True)
    keep()

    start = time.perf_counter()
    fresh = []
    for i, m in enumerate(masks):
        torch.manual_seed(1000 + i)
        sub = (s.train[0][~m], s.train[1][~m])
        r_fresh = sgi.fit(s.make(), sub, seed=1000 + i, **s.fit)
        fresh.append(query_value(r_fresh, s.val))
    res["fresh_seconds"] = time.perf_counter() - start
    raw["fresh"] = np.array(fresh)
    for name, v in scores.items():
        rows[name]["lds_fresh"] = metrics.lds(M @ v, np.array(fresh))
    bootstrap(res, scores, raw)
    print(f"fresh halves ({res['fresh_seconds']:.0f} s)", flush=True)
    keep()


def bootstrap(res: dict, scores: dict[str, np.ndarray], raw: dict, draws: int = 1000) -> None:
    """Each measure's bootstrap standard error (instances, or halves, drawn again with
    replacement), and that of its difference from the first row (today's default) on the
    same draws: ``se`` and ``se_diff`` beside each measure in ``res["rows"]``."""
    rng = np.random.default_rng(2)
    names = list(scores)
    measures = {}
    if "truth" in raw:
        def tau(v, i):
            return metrics.kendall_tau(v[raw["sample"]][i], raw["truth"][i])
        measures["tau"] = (len(raw["truth"]), tau)
    for key in ("identical", "fresh"):
        if key in raw:
            def lds(v, i, key=key):
                return metrics.lds((raw["masks"] @ v)[i], raw[key][i])
            measures[f"lds_{key}"] = (len(raw["masks"]), lds)
    for m, (n, fn) in measures.items():
        draws_ = [rng.integers(0, n, n) for _ in range(draws)]
        values = np.array([[fn(scores[name], i) for i in draws_] for name in names])
        for name, v in zip(names, values, strict=True):
            res["rows"][name][f"{m}_se"] = float(np.nanstd(v))
            res["rows"][name][f"{m}_se_diff"] = float(np.nanstd(v - values[0]))


def table(results: dict) -> str:
    lines = []
    for name, res in results.items():
        rel = res.get("reliability")
        lines.append(f"\n### {name}\n")
        sz = res.get("sizes", {})
        lines.append(f"{sz.get('train')} training, {sz.get('val')} validation, "
                     f"{sz.get('steps')} steps; training {res.get('train_seconds', 0):.1f} s; "
                     f"τ on {sz.get('loo')} instances, LDS over {sz.get('halves')} halves; "
                     f"adjoint growth after 1, 2, … epochs swept: "
                     f"{', '.join(f'{g:.3g}' for g in res.get('growth', []))}\n")
        if rel:
            lines.append(f"reliability (sample 8): **{rel['verdict']}**, Spearman "
                         f"{rel['spearman']:.2f}, scale {rel['scale']:.3g}, growth up to "
                         f"{max(rel['growth'], default=float('nan')):.3g}x "
                         f"({rel['seconds']:.0f} s)\n")
        lines.append("(± the bootstrap standard error over instances / halves)\n")
        lines.append("| estimator | τ vs LOO | LDS identical | LDS fresh | cost (trainings) |")
        lines.append("|---|---|---|---|---|")
        for row, m in res.get("rows", {}).items():
            cells = [(f"{m[k]:.2f} ± {m.get(k + '_se', float('nan')):.2f}" if m[k] == m[k]
                      else "nan") if k in m else "–"
                     for k in ("tau", "lds_identical", "lds_fresh")]
            lines.append(f"| {row} | {' | '.join(cells)} | {m.get('cost', float('nan')):.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default="out/deep-estimators")
    ap.add_argument("--models", default="mlp,bert,cnn,resnet")
    ap.add_argument("--loo", type=int, default=32, help="instances left out (BERT, CNN)")
    ap.add_argument("--halves", type=int, default=20)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--base-seed", type=int, default=0, help="the measured run's seed")
    ap.add_argument("--bert-n", type=int, default=256)
    ap.add_argument("--cnn-n", type=int, default=1000)
    ap.add_argument("--resnet-n", type=int, default=64)
    ap.add_argument("--resnet-epochs", type=int, default=2)
    ap.add_argument("--resnet-batch", type=int, default=16)
    ap.add_argument("--resnet-lr", type=float, default=0.05)
    ap.add_argument("--resnet-dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--resnet-loo", type=int, default=12)
    ap.add_argument("--resnet-halves", type=int, default=12)
    ap.add_argument("--resnet-seeds", type=int, default=2)
    args = ap.parse_args()
    args.models = args.models.split(",")
    warnings.filterwarnings("ignore", message=".*constant.*")  # a bootstrap draw of ties
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    begun = time.perf_counter()

    def save() -> None:
        results["_wall_seconds"] = time.perf_counter() - begun
        body = {k: v for k, v in results.items() if not k.startswith("_")}
        for name, text in (("results.json", json.dumps(results, indent=1, default=float)),
                           ("table.md", table(body))):
            tmp = out / f".{name}.tmp"
            tmp.write_text(text)
            os.replace(tmp, out / name)

    for s in settings(args):
        s.base = args.base_seed
        measure(s, results, save, out)
        print(table({s.name: results[s.name]}), flush=True)
    save()
    print(f"wall time {time.perf_counter() - begun:.0f} s")


if __name__ == "__main__":
    main()
