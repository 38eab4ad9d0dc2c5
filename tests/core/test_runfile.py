"""Run files hold tensors and plain data only: opening one runs no code from it, whatever it
holds; what a file cannot hold (a user's model class, loss, Dataset) is given again and
checked; corrupt values and a run changed after training are refused."""

import copy
import io
import pickle

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import sgdinfluence as sgi
from sgdinfluence.app.models import mlp
from sgdinfluence.core.trajectory import _digest
from sgdinfluence.errors import Error, RunFileError


class Evil:
    """Unpickling it creates the file ``path``: the code a hostile run file would run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


class Net(nn.Module):
    """A user's model class: not one a run file rebuilds."""

    def __init__(self, width=4):
        super().__init__()
        self.linear = nn.Linear(width, 2)

    def forward(self, x):
        return self.linear(x)


def halved_ce(outputs, targets):
    """A user's loss callable."""
    return 0.5 * torch.nn.functional.cross_entropy(outputs, targets, reduction="none")


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, 4, generator=g)
    return X, (X[:, 0] - X[:, 1] > 0).long()


@pytest.fixture(scope="module")
def run(data):
    torch.manual_seed(0)
    return sgi.fit(mlp(4, hidden=(5,), dropout=0.2), data, epochs=2, batch_size=8, lr=0.3,
                   momentum=0.9)


def payload(path):
    return torch.load(path, weights_only=True)


def signed(p, path):
    """Save a hand-edited payload with its digest recomputed, as a deliberate editor (or a
    program writing run files) would: the checks of its values must then refuse it."""
    body = {k: v for k, v in p.items() if k != "digest"}
    torch.save({**body, "digest": _digest(body)}, path)


def test_the_check_below_would_catch_code_run_by_unpickling(tmp_path):
    pickle.loads(pickle.dumps(Evil(tmp_path / "ran")))
    assert (tmp_path / "ran").exists()  # the payload works: the refusals below are real
    blob = io.BytesIO()
    torch.save({"note": Evil(tmp_path / "ran too")}, blob)
    torch.load(io.BytesIO(blob.getvalue()), weights_only=False)
    assert (tmp_path / "ran too").exists()


@pytest.mark.parametrize("where", ["file", "pickle", "disk manifest", "architecture"])
def test_a_run_file_carrying_code_is_refused_without_running_it(run, data, tmp_path, where):
    marker = tmp_path / "pwned"
    path = tmp_path / "r.run"
    run.save(path)
    p = payload(path)
    if where == "file":
        torch.save({**p, "note": Evil(marker)}, path)
    elif where == "pickle":  # a plain pickle, as torch.load also reads
        path.write_bytes(pickle.dumps({**p, "note": Evil(marker)}))
    elif where == "disk manifest":
        sgi.fit(mlp(4, hidden=(5,)), data, epochs=1, batch_size=8, lr=0.1,
                store=sgi.DiskStore(tmp_path / "disk"))
        path = tmp_path / "disk"
        manifest = payload(path / "run.pt")
        torch.save({**manifest, "store": {**manifest["store"], "x": Evil(marker)}},
                   path / "run.pt")
    else:  # the model's nested architecture checkpoint
        blob = io.BytesIO()
        torch.save(Evil(marker), blob)
        p["model"]["architecture"] = blob.getvalue()
        signed(p, path)
    with pytest.raises(RunFileError, match=r"(holds pickled objects( \(io.open\))?, which "
                       r"loading would run as code, or is corrupt: refused unread|made of "
                       r"classes a run file does not rebuild \(io.open)"):
        sgi.load_run(path)
    assert not marker.exists()


def test_torch_nn_models_are_rebuilt_and_scores_match(run, data, tmp_path):
    run.save(tmp_path / "r.run")
    loaded = sgi.load_run(tmp_path / "r.run")
    assert type(loaded.model) is nn.Sequential
    np.testing.assert_array_equal(sgi.influence(loaded, data), sgi.influence(run, data))


def test_a_users_model_class_is_given_again(data, tmp_path):
    run = sgi.fit(Net(), data, epochs=2, batch_size=8, lr=0.3)
    run.save(tmp_path / "r.run")
    with pytest.raises(RunFileError, match=r"made of classes a run file does not rebuild "
                       r"\(.*test_runfile.Net; only torch.nn's layers and sgdinfluence's are\); "
                       r"pass load_run\(.*, model=...\) a Net built as for fit"):
        sgi.load_run(tmp_path / "r.run")
    given = Net()
    loaded = sgi.load_run(tmp_path / "r.run", model=given)
    assert loaded.model is not given  # a copy holds the run's θ[T]
    np.testing.assert_array_equal(sgi.influence(loaded, data), sgi.influence(run, data))
    with pytest.raises(RunFileError, match=r"the model does not fit the run .*size mismatch "
                       r"for linear.weight.*pass the model built as for fit"):
        sgi.load_run(tmp_path / "r.run", model=Net(width=3))
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        sgi.load_run(tmp_path / "r.run", model="Net")


def test_a_users_loss_is_given_again_and_checked(run, data, tmp_path):
    own = sgi.fit(mlp(4, hidden=(5,)), data, halved_ce, epochs=2, batch_size=8, lr=0.3)
    own.save(tmp_path / "r.run")
    with pytest.raises(RunFileError, match="trained with the loss halved_ce, a callable a run "
                       r"file does not hold; pass it again: load_run\(path, loss=...\)"):
        sgi.load_run(tmp_path / "r.run")
    loaded = sgi.load_run(tmp_path / "r.run", loss=halved_ce)
    np.testing.assert_array_equal(sgi.influence(loaded, data), sgi.influence(own, data))
    with pytest.raises(RunFileError, match=r"step 0 of the run .* recorded the loss .* but its "
                       "model, loss, augmentation and data as loaded give"):
        sgi.load_run(tmp_path / "r.run", loss="cross_entropy")


def test_a_dataset_is_given_again_and_checked(data, tmp_path):
    X, y = data
    run = sgi.fit(mlp(4, hidden=(5,)), TensorDataset(X, y), epochs=2, batch_size=8, lr=0.3)
    run.save(tmp_path / "r.run")
    with pytest.raises(RunFileError, match=r"read its training data from a Dataset "
                       r"\(torch.utils.data.dataset.TensorDataset\), .*"
                       r"load_run\(path, train=...\)"):
        sgi.load_run(tmp_path / "r.run")
    with pytest.raises(RunFileError, match="train has 39 items, but the run .* was trained on 40"):
        sgi.load_run(tmp_path / "r.run", train=TensorDataset(X[:-1], y[:-1]))
    flipped = TensorDataset(X, 1 - y)
    with pytest.raises(RunFileError, match="step 0 of the run"):
        sgi.load_run(tmp_path / "r.run", train=flipped)
    loaded = sgi.load_run(tmp_path / "r.run", train=TensorDataset(X, y))
    np.testing.assert_array_equal(sgi.influence(loaded, data), sgi.influence(run, data))


def corrupt(p, what):
    p = copy.deepcopy(p)
    if what == "NaN state":
        p["store"]["thetas"][3, 0] = float("nan")
    elif what == "NaN rate":
        p["lrs"][2] = float("nan")
    elif what == "rate a string":
        p["lrs"][2] = "0.1"
    elif what == "index beyond the data":
        p["batches"][1][0] = 40
    elif what == "epochs out of order":
        p["epoch_starts"] = [0, 99]
    elif what == "NaN parameters":
        next(iter(p["model"]["state"].values()))[0] = float("inf")
    elif what == "fewer states":
        p["store"]["thetas"] = p["store"]["thetas"][:-1]
    elif what == "a model that is a string":
        p["model"] = "model"
    elif what == "no batches":
        del p["batches"]
    elif what == "an unknown optimizer":
        p["optimizer"]["name"] = "lion"
    return p


CORRUPT = {
    "NaN state": "its trajectory is not a finite",
    "NaN rate": "the learning rate of step 2 is nan",
    "rate a string": "the learning rate of step 2 is '0.1'",
    "index beyond the data": r"batch 1 holds indices outside \[0, 40\)",
    "epochs out of order": r"its epochs start at steps \[0, 99\]",
    "NaN parameters": "its model's parameters hold NaN or infinite values",
    "fewer states": "9 states of 74 numbers for 10 steps of a model of 37 parameters",
    "a model that is a string": r"corrupt or lacks part of a run \(model missing or of the "
                                r"wrong kind\)",
    "no batches": r"corrupt or lacks part of a run \(batches missing or of the wrong kind\)",
    "an unknown optimizer": "corrupt or lacks part of a run .*unknown optimizer 'lion'",
}


@pytest.mark.parametrize("what", CORRUPT)
def test_corrupt_values_in_a_run_file_are_refused_on_load(run, tmp_path, what):
    run.save(tmp_path / "r.run")
    signed(corrupt(payload(tmp_path / "r.run"), what), tmp_path / "bad.run")
    with pytest.raises(RunFileError, match=CORRUPT[what]):
        sgi.load_run(tmp_path / "bad.run")


def test_a_nan_in_a_disk_trajectory_is_refused_when_read(data, tmp_path):
    run = sgi.fit(mlp(4, hidden=(5,)), data, epochs=1, batch_size=8, lr=0.1,
                  store=sgi.DiskStore(tmp_path / "disk"))
    thetas = np.load(tmp_path / "disk" / "thetas.npy", mmap_mode="r+")
    thetas[2, 1] = np.nan
    thetas.flush()
    del thetas
    loaded = sgi.load_run(tmp_path / "disk")
    with pytest.raises(RunFileError, match=r"θ\[2\] in .*thetas.npy holds NaN or infinite"):
        sgi.influence(loaded, data)
    assert run.num_steps == 5


def test_a_run_whose_model_was_changed_is_refused(data):
    run = sgi.fit(mlp(4, hidden=(5,)), data, epochs=1, batch_size=8, lr=0.1)
    before, weight = sgi.influence(run, data), run.model[1].weight.detach().clone()
    with torch.no_grad():
        run.model[1].weight[0, 0] += 1
    for call in (lambda: sgi.influence(run, data), lambda: run.retrain([1]),
                 lambda: sgi.leave_out(run, data, [[1]]), lambda: run.save("never.run")):
        with pytest.raises(Error, match="run.model was changed after training .*"
                           r"copy.deepcopy\(run.model\)"):
            call()
    with torch.no_grad():
        run.model[1].weight.copy_(weight)
    np.testing.assert_array_equal(sgi.influence(run, data), before)


@pytest.mark.parametrize("kind", ["tensor", "array"])
def test_editing_the_callers_data_after_fit_changes_nothing(data, kind):
    X, y = (t.clone() for t in data)
    if kind == "array":
        X, y = X.numpy(), y.numpy()
    run = sgi.fit(mlp(4, hidden=(5,)), (X, y), epochs=1, batch_size=8, lr=0.1)
    before = sgi.influence(run, data)
    X[:] = 0
    y[:] = 1
    np.testing.assert_array_equal(sgi.influence(run, data), before)


HOSTILE = [None, "x", -1, 2**70, float("nan"), [], {}, (1, 2), torch.tensor([]),
           torch.full((3,), float("nan")), torch.zeros(2, 2, dtype=torch.long), b"\x80\x04."]


def leaves(value, path=()):
    """Every (path, value) inside a payload of dicts, lists and tuples."""
    yield path, value
    items = (value.items() if isinstance(value, dict) else
             enumerate(value) if isinstance(value, (list, tuple)) else ())
    for k, v in items:
        yield from leaves(v, (*path, k))


def replaced(value, path, new):
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: replaced(value[head], rest, new)}
    out = list(value)
    out[head] = replaced(value[head], rest, new)
    return type(value)(out) if isinstance(value, tuple) else out


def test_hand_edited_run_files_load_or_are_refused_as_run_file_errors(run, data, tmp_path):
    """A few hundred payloads with one part replaced by a hostile value: each loads into a
    run that works, or is refused as a RunFileError; nothing else escapes."""
    run.save(tmp_path / "r.run")
    p = payload(tmp_path / "r.run")
    paths = [path for path, _ in leaves(p) if path and path[0] != "digest"]
    rng = np.random.default_rng(0)
    outcomes = {"loaded": 0, "refused": 0}
    for k in range(300):
        path = paths[rng.integers(len(paths))]
        signed(replaced(p, path, HOSTILE[k % len(HOSTILE)]), tmp_path / "bad.run")
        try:
            loaded = sgi.load_run(tmp_path / "bad.run")
            sgi.influence(loaded, data, indices=[0, 1])
            outcomes["loaded"] += 1
        except RunFileError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 200 and outcomes["loaded"] > 0, outcomes


def test_an_edited_run_file_is_refused_by_its_digest(run, tmp_path):
    run.save(tmp_path / "r.run")
    p = payload(tmp_path / "r.run")
    p["store"]["thetas"][2, 3] += 1e-3  # finite garbage no value check can see
    torch.save(p, tmp_path / "bad.run")
    with pytest.raises(RunFileError, match="its contents do not match the digest"):
        sgi.load_run(tmp_path / "bad.run")


def test_a_cut_or_flipped_run_file_is_a_run_file_error(run, tmp_path):
    run.save(tmp_path / "r.run")
    blob = (tmp_path / "r.run").read_bytes()
    rng = np.random.default_rng(1)
    for k in range(40):
        bad = bytearray(blob[: rng.integers(len(blob))] if k % 2 else blob)
        for i in rng.integers(len(bad), size=3):
            bad[i] ^= 0xFF
        (tmp_path / "bad.run").write_bytes(bytes(bad))
        with pytest.raises(RunFileError):
            sgi.load_run(tmp_path / "bad.run")
