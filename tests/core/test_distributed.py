"""Under torch.distributed (gloo, 2 and 3 processes on the CPU): training, the sweep,
retraining and leave-one-out equal one process; a rank that dies leaves a run that is
refused."""

import os
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import Dataset, TensorDataset

import sgdinfluence as sgi
from problems import small_problem
from sgdinfluence.errors import RunFileError

CASES = {"sgd-memory": ({}, "memory"), "momentum-memory": ({"momentum": 0.9}, "memory"),
         "sgd-replay": ({}, "replay"), "momentum-replay": ({"momentum": 0.9}, "replay"),
         "adam-memory": ({"optimizer": "adam", "lr": 0.01}, "memory"),
         "momentum-disk": ({"momentum": 0.9}, "disk"),  # written by rank 0, read by all
         # a Dataset read by index, and a last batch of one: some ranks' shares are empty
         "streamed-small-batch": ({"momentum": 0.9, "batch_size": 13}, "streamed")}


def problem():
    return small_problem()


def results(options: dict, store: str, where: Path) -> dict:
    model, train, val = problem()
    if store == "streamed":
        train, store = TensorDataset(*train), "memory"
    store = sgi.DiskStore(where / "disk-run") if store == "disk" else store
    options = {"lr": 0.1, "batch_size": 7, **options}
    run = sgi.fit(model, train, epochs=2, weight_decay=0.01, store=store, **options)
    return {"theta": torch.cat([p.detach().reshape(-1) for p in run.model.parameters()]),
            "scores": sgi.influence(run, val), "last": sgi.influence(run, val, epochs=1),
            "loo": sgi.influence(run, val, method="loo", indices=[0, 5, 17, 30]),
            "tracin": sgi.influence(run, val, method="tracin"),
            "if": sgi.influence(run, val, method="influence-function", damping=0.1),
            "retrained": torch.cat([p.detach().reshape(-1)
                                    for p in run.retrain([3, 8], from_epoch=1).parameters()])}


def worker(rank: int, size: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=size,
                            timeout=timedelta(seconds=60))
    torch.set_num_threads(1)
    found = {name: results(*case, Path(out).parent) for name, case in CASES.items()}
    if rank == 0:
        torch.save(found, out)
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    where = tmp_path_factory.mktemp("single")
    return {name: results(*case, where) for name, case in CASES.items()}


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.mark.parametrize("size", [2, 3])
def test_a_process_group_computes_what_one_process_does(size, single, tmp_path):
    mp.spawn(worker, args=(size, str(tmp_path / "init"), str(tmp_path / "out.pt")),
             nprocs=size, join=True)
    found = torch.load(tmp_path / "out.pt", weights_only=False)
    for name, expected in single.items():
        for key, value in expected.items():
            assert rel(found[name][key], value) < 1e-10, (name, key)


class Dying(Dataset):
    """Training data whose reads kill rank 1 in the middle of training."""

    def __init__(self, X, y):
        self.X, self.y, self.reads = X, y, 0

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        self.reads += 1
        if dist.get_rank() == 1 and self.reads > 60:
            os._exit(1)
        return self.X[i], self.y[i]


def dying_worker(rank: int, init: str, path: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=30))
    model, train, _ = problem()
    sgi.fit(model, Dying(*train), epochs=3, batch_size=8, lr=0.1, store=sgi.DiskStore(path))


def test_a_rank_that_dies_leaves_a_run_that_is_refused(tmp_path):
    with pytest.raises(Exception):  # noqa: B017 (the survivor's collective fails, or it exits)
        mp.spawn(dying_worker, args=(str(tmp_path / "init"), str(tmp_path / "run")), nprocs=2,
                 join=True)
    assert (tmp_path / "run" / "thetas.npy").exists()
    with pytest.raises(RunFileError, match="incomplete"):
        sgi.load_run(tmp_path / "run")
    assert not Path(tmp_path / "run" / "run.pt").exists()
