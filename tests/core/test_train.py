"""Algorithm 1: the recording trainer, retraining, save / load, and bad input."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

import sgdinfluence as sgi
from sgdinfluence.app.models import logistic_regression, mlp
from sgdinfluence.errors import RunFileError, TrainingDiverged


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(50, 4, generator=g)
    y = (X[:, 0] > 0).long()
    return X, y


def same_state(a, b):
    return all(torch.equal(x, y) for x, y in
               zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_schedule_is_recorded_and_seeded(data):
    torch.manual_seed(0)
    model = logistic_regression(4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    run = sgi.fit(model, data, epochs=3, batch_size=8, lr=lambda t: 1 / (t + 1), seed=5)
    assert run.num_steps == 3 * 7 and run.epochs == 3 and run.epoch_starts == [0, 7, 14]
    for e in range(3):  # every instance once per epoch, the last batch partial
        steps = run.batches[7 * e:7 * (e + 1)]
        assert sorted(torch.cat(steps).tolist()) == list(range(50))
        assert [len(b) for b in steps] == [8] * 6 + [2]
    assert run.lrs == [1 / (t + 1) for t in range(21)]
    assert len(run.store) == 21 and run.losses.shape == (21,)
    torch.testing.assert_close(run.store[0], torch.cat([v.flatten() for v in before.values()]))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # untouched
    assert all(torch.equal(v, run.initial_state[k]) for k, v in before.items())
    again = sgi.fit(model, data, epochs=3, batch_size=8, lr=lambda t: 1 / (t + 1), seed=5)
    assert same_state(again.model, run.model)
    other = sgi.fit(model, data, epochs=3, batch_size=8, lr=lambda t: 1 / (t + 1), seed=6)
    assert not torch.equal(other.batches[0], run.batches[0])


def test_dtype_and_dataset_input(data):
    X, y = data
    model = logistic_regression(4).double()
    a = sgi.fit(model, (X.numpy(), y.numpy()), epochs=2, batch_size=5, lr=0.1)
    b = sgi.fit(model, TensorDataset(X, y), epochs=2, batch_size=5, lr=0.1)
    assert a.store[0].dtype == torch.float64 and a.train.X.dtype == torch.float64
    assert same_state(a.model, b.model)  # the Dataset streamed batch by batch, the same run
    assert b.train.dataset.tensors[0] is X  # never copied whole


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_retrain_without_exclusions_reproduces_the_run(data, dropout):
    model = mlp(4, hidden=(6,), dropout=dropout)
    run = sgi.fit(model, data, epochs=3, batch_size=8, lr=0.3, weight_decay=0.01)
    assert same_state(run.retrain([]), run.model)
    assert same_state(run.retrain([], from_epoch=2), run.model)
    assert not same_state(run.retrain([3]), run.model)


def test_retrain_leaves_out_instances_with_the_divisor_kept(data):
    """Leaving j out is training on the same batches with j's term zeroed, divided by |S_t|."""
    X, y = data
    model = logistic_regression(4).double()
    run = sgi.fit(model, (X.double(), y), epochs=1, batch_size=10, lr=0.5)
    theta = run.store[0].clone()
    for idx in run.batches:
        keep = idx[idx != 7]
        th = theta.clone().requires_grad_()
        out = torch.func.functional_call(run.model, {"1.weight": th[:8].view(2, 4),
                                                     "1.bias": th[8:]}, (X.double()[keep],))
        (g,) = torch.autograd.grad(F.cross_entropy(out, y[keep], reduction="sum") / len(idx), th)
        theta = theta - 0.5 * g
    retrained = run.retrain([7])
    torch.testing.assert_close(torch.cat([p.flatten() for p in retrained.parameters()]), theta,
                               rtol=1e-13, atol=1e-15)


def test_save_and_load_round_trip(data, tmp_path):
    model = mlp(4, hidden=(6,), dropout=0.2)
    run = sgi.fit(model, data, epochs=2, batch_size=8, lr=0.3)
    run.save(tmp_path / "r.run")
    loaded = sgi.load_run(tmp_path / "r.run")
    assert loaded.config == run.config and loaded.lrs == run.lrs and loaded.seeds == run.seeds
    assert same_state(loaded.model, run.model)
    assert same_state(loaded.retrain([]), run.model)
    val = (data[0][:10], data[1][:10])
    np.testing.assert_array_equal(sgi.influence(loaded, val), sgi.influence(run, val))
    assert [p.name for p in tmp_path.iterdir()] == ["r.run"]  # no temporary left behind


# --- bad input -----------------------------------------------------------------------------

def test_bad_training_input_is_refused(data):
    X, y = data
    model = logistic_regression(4)
    fit = lambda train, **kw: sgi.fit(model, train, **{"epochs": 1, "batch_size": 5,  # noqa: E731
                                                       "lr": 0.1, **kw})
    with pytest.raises(ValueError, match="X has 50 instances but y has 49"):
        fit((X, y[:-1]))
    with pytest.raises(ValueError, match="empty"):
        fit((X[:0], y[:0]))
    with pytest.raises(ValueError, match=r"batch_size must be in \[1, 50\]"):
        fit(data, batch_size=51)
    with pytest.raises(ValueError, match="batch_size"):
        fit(data, batch_size=0)
    with pytest.raises(ValueError, match="NaN"):
        fit((torch.where(X > 2, float("nan"), X), y))
    with pytest.raises(ValueError, match=r"cannot process the training data \(x of shape \(5,\)"):
        fit((torch.randn(50, 5), y))
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        fit(data, loss="hinge")
    with pytest.raises(ValueError, match="lr must be finite and >= 0"):
        fit(data, lr=-0.1)
    with pytest.raises(ValueError, match="epochs"):
        fit(data, epochs=0)
    with pytest.raises(TypeError, match="pair"):
        fit(X)
    frozen = logistic_regression(4).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        sgi.fit(frozen, data, epochs=1, batch_size=5, lr=0.1)


def test_divergence_names_the_step_the_epoch_and_the_learning_rate(data):
    X, y = data
    yf = y.float()
    yf[13] = 2.0  # log(1.5 - 2) is NaN: only the batch holding instance 13 blows up

    def loss(outputs, targets):
        return outputs.square().mean(1) + torch.log(1.5 - targets)

    run = None
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step \d+ \(epoch 0\), whose "
                       r"learning rate is 0\.1; lower the learning rate \(lr\) or check the "
                       "data for extreme values") as info:
        run = sgi.fit(logistic_regression(4, 1), (X, yf), loss=loss, epochs=1, batch_size=5,
                      lr=0.1)
    assert run is None
    e = info.value
    assert isinstance(e, FloatingPointError) and "indices" not in str(e)
    assert 13 in torch.cat(sgi.fit(logistic_regression(4, 1), (X, y.float()), loss="bce",
                                   epochs=1, batch_size=5, lr=0.1).batches[e.step:e.step + 1])
    # a learning rate that explodes at step 10, the first of the second epoch: θ[11] ~ 1e38,
    # whose squared error overflows float32
    with pytest.raises(TrainingDiverged, match=r"at step 11 \(epoch 1\), .* 1e\+38") as info:
        sgi.fit(logistic_regression(4, 1), (X, yf), loss="mse", epochs=3, batch_size=5,
                lr=lambda t: 0.1 if t < 10 else 1e38)
    assert (info.value.step, info.value.epoch, info.value.lr) == (11, 1, 1e38)


def test_bad_exclude_and_query_are_refused(data, tmp_path):
    run = sgi.fit(logistic_regression(4), data, epochs=2, batch_size=5, lr=0.1)
    with pytest.raises(IndexError, match=r"outside \[0, 50\): \[50\]"):
        run.retrain([3, 50])
    with pytest.raises(ValueError, match="from_epoch"):
        run.retrain([], from_epoch=2)
    with pytest.raises(ValueError, match=r"query X has instances of shape \(3,\)"):
        sgi.influence(run, (torch.randn(10, 3), data[1][:10]))
    with pytest.raises(ValueError, match="scalar"):
        sgi.influence(run, lambda m: m(data[0]))
    with pytest.raises(ValueError, match="unknown method"):
        sgi.influence(run, data, method="magic")
    with pytest.raises(ValueError, match="epochs"):
        sgi.influence(run, data, epochs=3)


def test_bad_run_files_are_refused(data, tmp_path):
    run = sgi.fit(logistic_regression(4), data, epochs=1, batch_size=5, lr=0.1)
    path = tmp_path / "r.run"
    run.save(path)
    blob = path.read_bytes()
    (tmp_path / "cut.run").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(RunFileError, match="truncated or corrupt"):
        sgi.load_run(tmp_path / "cut.run")
    payload = torch.load(path, weights_only=False)
    torch.save({**payload, "version": 99}, tmp_path / "future.run")
    with pytest.raises(RunFileError, match="format version 99"):
        sgi.load_run(tmp_path / "future.run")
    with pytest.raises(FileNotFoundError, match="no run file") as info:
        sgi.load_run(tmp_path / "missing.run")
    assert isinstance(info.value, RunFileError)
    del payload["batches"]
    torch.save(payload, tmp_path / "partial.run")
    with pytest.raises(RunFileError, match="is corrupt: its contents do not match the digest"):
        sgi.load_run(tmp_path / "partial.run")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run.save(tmp_path / "nowhere" / "r.run")
