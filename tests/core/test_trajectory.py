"""Trajectory stores: memory, disk and replay give identical results; bad targets refused."""

import errno
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import sgdinfluence as sgi
from sgdinfluence.app.models import mlp
from sgdinfluence.errors import RunFileError, RunFileNotFound


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(60, 5, generator=g)
    y = (X[:, 0] - X[:, 2] > 0).long()
    return (X[:45], y[:45]), (X[45:], y[45:])


def fit(train, store, epochs=3):
    torch.manual_seed(0)
    model = mlp(5, hidden=(8,), dropout=0.3)  # dropout: regeneration must replay the masks
    return sgi.fit(model, train, epochs=epochs, batch_size=4, lr=lambda t: 0.3 / (1 + t) ** 0.5,
                   weight_decay=1e-3, seed=3, store=store)


@pytest.fixture(scope="module")
def memory_run(data):
    return fit(data[0], "memory")


@pytest.mark.parametrize("store", ["replay", "replay-every-5", "disk"])
def test_stores_are_bit_identical_to_memory(data, memory_run, store, tmp_path):
    store = {"replay": "replay", "replay-every-5": sgi.ReplayStore(every=5),
             "disk": sgi.DiskStore(tmp_path / "run")}[store]
    run = fit(data[0], store)
    assert len(run.store) == len(memory_run.store) == run.num_steps
    for t in reversed(range(run.num_steps)):  # θ[t], read in the order the sweep reads
        assert torch.equal(run.store[t], memory_run.store[t]), t
    val = data[1]
    np.testing.assert_array_equal(sgi.influence(run, val), sgi.influence(memory_run, val))
    np.testing.assert_array_equal(sgi.influence(run, val, epochs=1),
                                  sgi.influence(memory_run, val, epochs=1))
    for e in (0, 2):
        new, ref = run.retrain([1, 7], from_epoch=e), memory_run.retrain([1, 7], from_epoch=e)
        assert all(torch.equal(a, b) for a, b in zip(new.parameters(), ref.parameters(),
                                                     strict=True))


def test_replay_keeps_about_sqrt_t_checkpoints_and_one_segment(data, memory_run):
    run = fit(data[0], "replay")
    T = run.num_steps  # 36
    assert run.store.every == 6
    per_theta = memory_run.store[0].numel() * 4
    assert run.store.nbytes() == 6 * per_theta  # checkpoints only, before any read
    run.store[T - 2]
    assert run.store.nbytes() == (6 + 6) * per_theta  # plus the one regenerated segment
    assert memory_run.store.nbytes() == T * per_theta


def test_disk_run_loads_in_a_fresh_process(data, tmp_path):
    run = fit(data[0], sgi.DiskStore(tmp_path / "run"))
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["run.pt", "thetas.npy"]
    expected = sgi.influence(run, data[1])
    thetas = np.load(tmp_path / "run" / "thetas.npy")  # a plain .npy, (T, P)
    assert thetas.shape == (run.num_steps, run.store[0].numel())
    torch.save(data[1], tmp_path / "val.pt")
    code = ("import sys, numpy as np, torch, sgdinfluence as sgi;"
            "run = sgi.load_run(sys.argv[1]);"
            "np.save(sys.argv[3], sgi.influence(run, torch.load(sys.argv[2])))")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "run"), str(tmp_path / "val.pt"),
                    str(tmp_path / "scores.npy")], check=True)
    np.testing.assert_array_equal(np.load(tmp_path / "scores.npy"), expected)


def test_saved_replay_run_round_trips(data, memory_run, tmp_path):
    run = fit(data[0], "replay")
    run.save(tmp_path / "r.run")
    loaded = sgi.load_run(tmp_path / "r.run")
    np.testing.assert_array_equal(sgi.influence(loaded, data[1]),
                                  sgi.influence(memory_run, data[1]))


def test_interrupted_disk_run_is_refused(data, tmp_path):
    X, y = data[0]
    bad = X.clone()
    bad[10] = 1e30  # overflows in float32 partway through the first epoch
    with pytest.raises(FloatingPointError):
        fit((bad, y), sgi.DiskStore(tmp_path / "run"))
    assert not (tmp_path / "run" / "run.pt").exists()
    with pytest.raises(RunFileError, match="incomplete"):
        sgi.load_run(tmp_path / "run")


def test_disk_full_marks_the_run_incomplete(data, tmp_path, monkeypatch):
    real, calls = os.pwrite, []

    def pwrite(fd, data, offset):
        calls.append(offset)
        if len(calls) > 5:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    with pytest.raises(OSError, match=r"writing θ\[5\] .* failed .*incomplete"):
        fit(data[0], sgi.DiskStore(tmp_path / "run"))
    assert not (tmp_path / "run" / "run.pt").exists()
    with pytest.raises(ValueError, match="incomplete"):
        sgi.load_run(tmp_path / "run")


def test_bad_store_targets_are_refused(data, tmp_path):
    fit(data[0], sgi.DiskStore(tmp_path / "run"), epochs=1)
    with pytest.raises(FileExistsError, match="holds another run; pass .*overwrite=True"):
        fit(data[0], sgi.DiskStore(tmp_path / "run"), epochs=1)
    run = fit(data[0], sgi.DiskStore(tmp_path / "run", overwrite=True), epochs=2)
    assert sgi.load_run(tmp_path / "run").num_steps == run.num_steps
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        fit(data[0], sgi.DiskStore(tmp_path / "other", overwrite=True), epochs=1)
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError, match="file"):  # a path under a regular file: not writable
        fit(data[0], sgi.DiskStore(tmp_path / "file" / "run"), epochs=1)
    with pytest.raises(ValueError, match="needs a directory"):
        fit(data[0], "disk")
    with pytest.raises(ValueError, match="unknown store"):
        fit(data[0], "cloud")
    with pytest.raises(ValueError, match="every"):
        sgi.ReplayStore(every=0)


def test_truncated_or_missing_trajectory_file_is_refused(data, tmp_path):
    fit(data[0], sgi.DiskStore(tmp_path / "run"), epochs=1)
    thetas = tmp_path / "run" / "thetas.npy"
    full = thetas.stat().st_size
    os.truncate(thetas, full - 100)
    with pytest.raises(RunFileError, match=rf"thetas.npy is truncated: it holds {full - 100} "
                       rf"bytes, but the run's manifest records 12 steps of 66 float32 "
                       rf"parameters \({full} bytes\); re-record the run with sgi.fit"):
        sgi.load_run(tmp_path / "run")
    thetas.unlink()
    with pytest.raises(RunFileNotFound, match="thetas.npy is missing; re-record"):
        sgi.load_run(tmp_path / "run")
