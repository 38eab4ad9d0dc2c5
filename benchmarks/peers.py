"""The peers, measured in the project: Kronfluence and dattri beside SGD-influence, on the
same recorded runs, in one process.

(1) Sec 7.1 rows (``experiment estimation``'s protocol, ``one_seed``, unchanged): Kendall's τ of
    each method's scores against leave-one-out retraining of the mean validation loss.
(2) The paper's MNIST CNN on a subset of MNIST: the linear datamodeling score over random
    halves, against retraining on the identical schedule (``sgi.leave_out``) and against
    training afresh (new initialisation and shuffles) without each half.
(3) Wall time of every method, as a ratio to the time of training the run.

Every score is signed as the package's: the estimated change of the query when the instance
is left out (negative = harmful). Kronfluence's pairwise scores and dattri's attributions are
∇Q·H⁻¹∇ℓ_j (or a sum of gradient products): positive when the training instance lowers the
query's loss, so left out it would raise it; that is our sign as it is (checked: every peer's
τ against leave-one-out is printed, and a negative one is flagged). Scales differ, which τ and
the LDS (rank correlations) ignore.

Needs the ``peers`` extra (``pip install -c constraints.txt -c
benchmarks/peers-constraints.txt -e '.[peers]'``) and the data directory:

    OMP_NUM_THREADS=1 python benchmarks/peers.py --data-dir ../shared/data --out /tmp/peers
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # the peers' progress bars, before tqdm is imported

import argparse
import contextlib
import copy
import json
import math
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call
from torch.utils.data import DataLoader, TensorDataset

import sgdinfluence as sgi
from sgdinfluence import metrics
from sgdinfluence.app.data import load
from sgdinfluence.app.experiments import estimation
from sgdinfluence.app.methods import METHODS as REGISTRY
from sgdinfluence.app.models import mnist_cnn
from sgdinfluence.app.output import check_output, output_dir

OURS = ("sgd", "sgd-last", "sgd-nohessian", "tracin")
DAMPING = (None, 1e-3, 1e-2, 1e-1)  # None: the library's documented default
KRONFLUENCE = ("ekfac", "kfac", "identity")


# -- the problem as each library wants it described ----------------------------------------


def _per_instance(kind: str):
    """Each instance's loss (B,) from the model's outputs: ``bce`` (one logit) or ``ce``."""
    if kind == "bce":
        return lambda out, y: F.binary_cross_entropy_with_logits(
            out.reshape(-1), y.to(out.dtype), reduction="none")
    return lambda out, y: F.cross_entropy(out, y.long(), reduction="none")


def _sampled_labels(kind: str, out: torch.Tensor) -> torch.Tensor:
    """Labels drawn from the model's predictive distribution (Kronfluence's true Fisher)."""
    if kind == "bce":
        return torch.bernoulli(torch.sigmoid(out.reshape(-1)))
    return torch.multinomial(F.softmax(out, dim=-1), 1).reshape(-1)


def _kronfluence_task(kind: str):
    from kronfluence.task import Task

    loss = _per_instance(kind)

    class _Task(Task):  # Kronfluence sums the batch's losses; the measurement is the loss
        def compute_train_loss(self, batch, model, sample=False):
            x, y = batch
            out = model(x)
            if sample:
                with torch.no_grad():
                    y = _sampled_labels(kind, out.detach())
            return loss(out, y).sum()

        def compute_measurement(self, batch, model):
            x, y = batch
            return loss(model(x), y).sum()

    return _Task()


def _dattri_loss(model: torch.nn.Module, kind: str, shape: tuple, alpha: float):
    """dattri's ``f(params, data)``: the mean training objective of the batch, weight decay
    included as in the run (each instance carries (α/2)‖θ‖²). Per-instance calls come with or
    without a leading batch axis, hence the reshape; LiSSA hands the inputs over as float32,
    hence the cast to the parameters' dtype."""
    loss = _per_instance(kind)

    def f(params, data):
        x, y = data
        x = x.reshape(-1, *shape).to(next(iter(params.values())).dtype)
        out = functional_call(model, params, (x,))
        value = loss(out, y.reshape(-1)).mean()
        if alpha:
            value = value + alpha / 2 * sum((p**2).sum() for p in params.values())
        return value

    def target(params, data):  # the query: the validation loss, no weight decay
        x, y = data
        return loss(functional_call(model, params, (x.reshape(-1, *shape),)),
                    y.reshape(-1)).mean()

    return f, target


def _checkpoint(run, t: int) -> dict[str, torch.Tensor]:
    """θ before step t (t = T: the trained model) as a state dict."""
    if t == run.num_steps:
        return {k: v.detach().clone() for k, v in run.model.state_dict().items()}
    objective = run.objective()
    P = sum(objective.sizes)
    objective.load(run.store[t][:P])
    return {k: v.detach().clone() for k, v in objective.model.state_dict().items()}


# -- the peers -------------------------------------------------------------------------------


def kronfluence_scores(run, train, val, kind: str, damping=DAMPING) -> dict:
    """Kronfluence's pairwise scores (M, N) for each strategy and damping; seconds include
    fitting the factors once per strategy."""
    from kronfluence.analyzer import Analyzer, prepare_model
    from kronfluence.arguments import FactorArguments, ScoreArguments

    dtype = next(run.model.parameters()).dtype
    out = {}
    N, M = len(train[0]), len(val[0])
    for strategy in KRONFLUENCE:
        # inside a container: Kronfluence wraps child modules (a bare Linear recursed forever)
        model = torch.nn.Sequential(copy.deepcopy(run.model)).eval()
        model = prepare_model(model, _kronfluence_task(kind))
        with tempfile.TemporaryDirectory() as tmp, _quiet():
            analyzer = Analyzer(analysis_name="peers", model=model, task=_kronfluence_task(kind),
                                cpu=True, disable_tqdm=True, output_dir=tmp)
            start = time.perf_counter()
            factor_args = FactorArguments(
                strategy=strategy, activation_covariance_dtype=dtype,
                gradient_covariance_dtype=dtype, per_sample_gradient_dtype=dtype,
                lambda_dtype=dtype)
            analyzer.fit_all_factors("f", TensorDataset(*train), per_device_batch_size=min(N, 256),
                                     factor_args=factor_args, overwrite_output_dir=True)
            fitted = time.perf_counter() - start
            for d in damping:
                start = time.perf_counter()
                score_args = ScoreArguments(damping_factor=d, per_sample_gradient_dtype=dtype,
                                            precondition_dtype=dtype, score_dtype=dtype)
                analyzer.compute_pairwise_scores(
                    f"s{d}", "f", TensorDataset(*val), TensorDataset(*train),
                    per_device_query_batch_size=min(M, 256),
                    per_device_train_batch_size=min(N, 256), score_args=score_args,
                    overwrite_output_dir=True)
                scores = analyzer.load_pairwise_scores(f"s{d}")["all_modules"]
                out[f"kronfluence-{strategy}-d{_fmt(d)}"] = (
                    scores.double().numpy(), fitted + time.perf_counter() - start)
    return out


def dattri_scores(run, train, val, kind: str, damping=DAMPING, *,
                  solvers=("explicit", "cg"), dvemb: bool = True) -> dict:
    """dattri's influence functions (explicit Hessian, CG, LiSSA), TracInCP over the ends of
    the epochs, and DVEmb over every recorded step: scores (M, N) and seconds."""
    model = copy.deepcopy(run.model).eval()
    with _default_dtype(next(model.parameters()).dtype):
        return _dattri_scores(run, model, train, val, kind, damping, solvers, dvemb)


def _dattri_scores(run, model, train, val, kind, damping, solvers, dvemb):
    from dattri.algorithm.influence_function import (
        IFAttributorCG,
        IFAttributorExplicit,
        IFAttributorLiSSA,
    )
    from dattri.algorithm.tracin import TracInAttributor
    from dattri.task import AttributionTask

    shape = tuple(train[0].shape[1:])
    if sum(p.numel() for p in model.parameters()) > estimation.EXACT_HESSIAN_MAX:
        solvers = [s for s in solvers if s != "explicit"]  # its Hessian filled 23 GB (MLP)
    alpha = float(run.config.weight_decay)
    f, target = _dattri_loss(model, kind, shape, alpha)
    N, M = len(train[0]), len(val[0])
    loader = lambda data, b: DataLoader(TensorDataset(*data), batch_size=b,  # noqa: E731
                                        shuffle=False)
    final = _checkpoint(run, run.num_steps)
    out = {}
    classes = {"explicit": (IFAttributorExplicit, "regularization"),
               "cg": (IFAttributorCG, "regularization"), "lissa": (IFAttributorLiSSA, "damping")}
    for name in solvers:
        cls, key = classes[name]
        for d in damping:
            task = AttributionTask(loss_func=f, model=model, checkpoints=final, target_func=target)
            start = time.perf_counter()
            with _quiet():
                attributor = cls(task=task, device="cpu", **({key: d} if d is not None else {}))
                attributor.cache(loader(train, N))
                scores = attributor.attribute(loader(train, min(N, 256)), loader(val, M))
            out[f"dattri-if-{name}-d{_fmt(d)}"] = (scores.detach().T.double().numpy(),
                                                  time.perf_counter() - start)
    # TracInCP: the checkpoints at the end of each epoch, weighted by the epoch's last rate
    ends = [*run.epoch_starts[1:], run.num_steps]
    task = AttributionTask(loss_func=f, model=model, target_func=target,
                           checkpoints=[_checkpoint(run, t) for t in ends])
    start = time.perf_counter()
    with _quiet():
        attributor = TracInAttributor(task=task, weight_list=torch.tensor(
            [float(run.lrs[t - 1]) for t in ends]), normalized_grad=False)
        scores = attributor.attribute(loader(train, min(N, 256)), loader(val, M))
    out["dattri-tracincp"] = (scores.detach().T.double().numpy(), time.perf_counter() - start)
    if dvemb:
        out["dattri-dvemb"] = _dvemb(run, f, model, train, val, loader)
    return out


def _dvemb(run, f, model, train, val, loader):
    """DVEmb (Wang et al. 2024) fed the recorded trajectory: each step's batch at θ[t]."""
    try:
        from dattri.algorithm.dvemb import DVEmbAttributor
    except ImportError:  # not in this dattri
        return None
    from dattri.task import AttributionTask

    task = AttributionTask(loss_func=f, model=model, checkpoints=_checkpoint(run, run.num_steps))
    start = time.perf_counter()
    with _quiet():
        attributor = DVEmbAttributor(task=task)
        objective = run.objective(model=model)
        P = sum(objective.sizes)
        epoch = 0
        for t, idx in enumerate(run.batches):
            while epoch + 1 < run.epochs and t >= run.epoch_starts[epoch + 1]:
                epoch += 1
            objective.load(run.store[t][:P])
            attributor.cache_gradients(epoch, (train[0][idx], train[1][idx]), idx,
                                       float(run.lrs[t]))
        attributor.cache()
        objective.load(_flat(run.model))
        scores = attributor.attribute(loader(val, len(val[0])))
    return scores.detach().T.double().numpy(), time.perf_counter() - start


def _flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters() if p.requires_grad])


def _fmt(d) -> str:
    return "default" if d is None else f"{d:g}"


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    """dattri makes some tensors in the default dtype; the Sec 7.1 runs are float64."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings():  # the peers' notices about defaults and devices
        warnings.simplefilter("ignore")
        yield


def peer_scores(run, train, val, kind, damping, **dattri_options) -> dict:
    """Every peer's (M, N) scores and seconds; a peer that fails is reported, not fatal."""
    out = {}
    for name, fn in (("kronfluence", kronfluence_scores), ("dattri", dattri_scores)):
        try:
            out |= fn(run, train, val, kind, damping,
                      **(dattri_options if name == "dattri" else {}))
        except Exception as e:  # noqa: BLE001 - a peer's failure is a result to report
            print(f"  {name} failed: {type(e).__name__}: {e}", flush=True)
    return {k: v for k, v in out.items() if v is not None}


# -- (1) Sec 7.1: Kendall's τ against leave-one-out -----------------------------------------


@contextlib.contextmanager
def _watch(module, name: str, calls: list):
    """Record the calls to ``module.name`` (arguments, result, seconds) while inside."""
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        result = original(*args, **kwargs)
        calls.append((args, kwargs, result, time.perf_counter() - start))
        return result

    setattr(module, name, wrapper)
    try:
        yield calls
    finally:
        setattr(module, name, original)


def sec71(dataset: str, model: str, seeds: list[int], data_dir, damping, rows: list,
          solvers=("explicit", "cg")) -> None:
    """``estimation.one_seed`` as the experiment runs it (split, settings, training, LOO and
    our estimators); the run and validation set it used are taken from its calls, and the
    peers score that run."""
    cfg = estimation.EstimationConfig(dataset, model, lds_subsets=0).resolved()
    table = load(dataset, data_dir)["train"]
    for seed in seeds:
        fits, infl = [], []
        with _watch(estimation, "fit", fits), _watch(estimation, "influence", infl):
            r = estimation.one_seed(cfg, (table.X, table.y), seed)
        (_, _, run, train_seconds), = fits
        val = next(args[1] for args, kw, *_ in infl if kw.get("method") == "loo")
        base = {"part": "sec7.1", "row": f"{dataset} {model}", "seed": seed,
                "train_seconds": train_seconds}
        for m in (*OURS, "influence-function"):
            rows.append(base | {"method": m, "kendall_tau": metrics.kendall_tau(r[m], r["true"]),
                                "seconds": r[f"{m}_seconds"]})
        train = run.train.X, run.train.y
        peers = peer_scores(run, train, val, "bce", damping, solvers=solvers)
        for name, (scores, seconds) in peers.items():
            tau = metrics.kendall_tau(scores.mean(0), r["true"])  # the mean validation loss
            rows.append(base | {"method": name, "kendall_tau": tau, "seconds": seconds})
        print(f"{dataset} {model} seed {seed}: done", flush=True)


# -- (2) the MNIST CNN: the linear datamodeling score ---------------------------------------


def cnn(args, rows: list) -> None:
    table = load("mnist", args.data_dir)["train"]
    perm = np.random.default_rng(0).permutation(len(table.y))
    tr, va = perm[: args.cnn_train], perm[args.cnn_train: args.cnn_train + args.cnn_val]
    train = torch.as_tensor(table.X[tr]), torch.as_tensor(table.y[tr])
    val = torch.as_tensor(table.X[va]), torch.as_tensor(table.y[va])
    opts = {"epochs": args.cnn_epochs, "batch_size": 64, "lr": 0.05}
    start = time.perf_counter()
    torch.manual_seed(0)
    run = sgi.fit(mnist_cnn(), train, seed=0, **opts)
    train_seconds = time.perf_counter() - start
    print(f"CNN trained on {len(tr)} images ({train_seconds:.0f} s)", flush=True)
    each = sgi.PerExample(val)
    scores = {}
    for m in OURS:
        start = time.perf_counter()
        scores[m] = (sgi.influence(run, each, **REGISTRY[m].options), time.perf_counter() - start)
    scores |= peer_scores(run, train, val, "ce", args.damping,
                          solvers=("cg",) if args.cnn_cg else (), dvemb=args.cnn_dvemb)
    rng = np.random.default_rng(1)
    N = len(tr)
    masks = np.stack([rng.permutation(N) < N // 2 for _ in range(args.lds_subsets)])
    start = time.perf_counter()
    identical = sgi.leave_out(run, each, list(masks)).T  # (K, M)
    truth = {"identical": identical}
    print(f"identical-schedule truth: {time.perf_counter() - start:.0f} s", flush=True)
    if args.fresh_seeds:
        start = time.perf_counter()
        fresh = []
        for k, m in enumerate(masks):  # new initialisation and shuffles for every half
            losses = []
            for s in range(args.fresh_seeds):
                seed = 1000 + args.fresh_seeds * k + s
                torch.manual_seed(seed)
                model = sgi.fit(mnist_cnn(), (train[0][~m], train[1][~m]), seed=seed,
                                store="replay", **opts).model.eval()
                with torch.no_grad():
                    losses.append(F.cross_entropy(model(val[0]), val[1], reduction="none"))
            fresh.append(torch.stack(losses).mean(0).numpy())
        truth["fresh"] = np.stack(fresh)
        print(f"fresh-training truth: {time.perf_counter() - start:.0f} s", flush=True)
    ranks = {name: s.mean(0) for name, (s, _) in scores.items()}
    for name, (s, seconds) in scores.items():
        predicted = masks.astype(np.float64) @ s.T  # (K, M): the summed estimates of each half
        row = {"part": "cnn", "row": f"mnist-cnn {N}", "seed": 0, "method": name,
               "train_seconds": train_seconds, "seconds": seconds,
               "tau_vs_sgd": metrics.kendall_tau(ranks[name], ranks["sgd"])}
        for kind, actual in truth.items():
            row[f"lds_{kind}"] = metrics.lds(predicted, actual)
            row[f"lds_{kind}_se"] = _se(predicted, actual)
        rows.append(row)


def _se(predicted, actual) -> float:
    """The standard error of the LDS over the queries."""
    from scipy import stats

    r = [stats.spearmanr(p, a).statistic for p, a in zip(predicted.T, actual.T, strict=True)]
    return float(np.nanstd(r) / math.sqrt(np.sum(np.isfinite(r))))


# -- the tables ------------------------------------------------------------------------------


def tables(rows: list) -> str:
    lines = []
    for row_name in dict.fromkeys(r["row"] for r in rows if r["part"] == "sec7.1"):
        rs = [r for r in rows if r["row"] == row_name]
        train = np.mean([r["train_seconds"] for r in rs])
        n = len({r["seed"] for r in rs})
        lines += ["", f"{row_name}: Kendall's tau against leave-one-out, {n} seeds "
                  f"(training {train:.2f} s)",
                  f"{'method':34}{'tau mean':>10}{'std':>8}{'seconds':>10}{'x training':>12}"]
        for m in dict.fromkeys(r["method"] for r in rs):
            mr = [r for r in rs if r["method"] == m]
            tau = [r["kendall_tau"] for r in mr]
            sec = np.mean([r["seconds"] for r in mr])
            flag = "  <- negative: sign?" if np.mean(tau) < 0 else ""
            lines.append(f"{m:34}{np.mean(tau):10.3f}{np.std(tau):8.3f}{sec:10.2f}"
                         f"{sec / train:12.1f}{flag}")
    rs = [r for r in rows if r["part"] == "cnn"]
    if rs:
        kinds = [k for k in ("identical", "fresh") if f"lds_{k}" in rs[0]]
        lines += ["", f"{rs[0]['row']} images: LDS (Spearman per validation example, mean "
                  "± s.e.), tau of the mean-loss ranking against ours (sgd), wall time "
                  f"(training {rs[0]['train_seconds']:.0f} s)",
                  f"{'method':34}" + "".join(f"{'LDS ' + k:>20}" for k in kinds)
                  + f"{'tau vs sgd':>12}{'seconds':>10}{'x training':>12}"]
        for r in rs:
            cells = "".join(f"{r[f'lds_{k}']:12.3f} ± {r[f'lds_{k}_se']:.3f}" for k in kinds)
            lines.append(f"{r['method']:34}{cells}{r['tau_vs_sgd']:12.3f}{r['seconds']:10.1f}"
                         f"{r['seconds'] / r['train_seconds']:12.1f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default="/tmp/peers")
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--rows", default="mnist-1v7:mlp,adult:logreg",
                    help="Sec 7.1 rows dataset:model, comma-separated ('' for none)")
    ap.add_argument("--seeds", default="3,4,5", help="Sec 7.1 seeds")
    ap.add_argument("--damping", default="default,0.001,0.01,0.1",
                    help="the damping grid ('default': each library's own)")
    ap.add_argument("--cnn-train", type=int, default=2000, help="0: skip the CNN")
    ap.add_argument("--cnn-val", type=int, default=100)
    ap.add_argument("--cnn-epochs", type=int, default=3)
    ap.add_argument("--cnn-cg", action="store_true",
                    help="dattri's CG influence functions on the CNN too (slow: 110 s for 300 "
                         "images and 20 queries, per damping)")
    ap.add_argument("--cnn-dvemb", action="store_true",
                    help="dattri's DVEmb on the CNN too (a 13,750² matrix product per step)")
    ap.add_argument("--lissa", action="store_true",
                    help="dattri's LiSSA on the Sec 7.1 rows (on the MLP its memory grew past "
                         "9 GB within a minute, 200 queries)")
    ap.add_argument("--lds-subsets", type=int, default=40)
    ap.add_argument("--fresh-seeds", type=int, default=1,
                    help="models trained afresh per half (0: identical schedule only)")
    args = ap.parse_args()
    args.damping = [None if d == "default" else float(d) for d in args.damping.split(",")]
    check_output(args.out, args.overwrite)
    torch.set_num_threads(1)
    start, rows = time.perf_counter(), []
    for spec in filter(None, args.rows.split(",")):
        dataset, model = spec.split(":")
        sec71(dataset, model, [int(s) for s in args.seeds.split(",")], args.data_dir,
              args.damping, rows, ("explicit", "cg", "lissa") if args.lissa else
              ("explicit", "cg"))
        print(tables(rows), flush=True)
    if args.cnn_train:
        cnn(args, rows)
    text = tables(rows)
    print(text)
    with output_dir(args.out, args.overwrite) as tmp:
        keys = list(dict.fromkeys(k for r in rows for k in r))
        import csv

        with open(tmp / "results.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
        (tmp / "results.json").write_text(json.dumps(
            {"args": {k: v for k, v in vars(args).items()}, "rows": rows,
             "wall_seconds": time.perf_counter() - start}, indent=1, default=str))
        (tmp / "tables.txt").write_text(text + "\n")
    print(f"wrote {Path(args.out)} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
