"""Bad input to the public API: refused at the entry point with the library's exceptions and a
message that names the argument, the problem and the fix (a table per entry point)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import sgdinfluence as sgi
from sgdinfluence.app.models import logistic_regression, mlp
from sgdinfluence.errors import ConfigError, DataError, Error, IndexOutOfRange


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(50, 4, generator=g)
    y = (X[:, 0] > 0).long()
    return X, y


@pytest.fixture(scope="module")
def run(data):
    torch.manual_seed(0)
    return sgi.fit(logistic_regression(4), data, epochs=2, batch_size=5, lr=0.1)


def with_label(y, i, value):
    y = y.clone()
    y[i] = value
    return y


# --- fit ------------------------------------------------------------------------------------

FIT = {  # keyword arguments (and training labels) -> exception, message
    "lr as a string": ({"lr": "0.1"}, TypeError,
                       r"lr must be a number, a callable step -> learning rate or an "
                       r"LRSchedule, got str"),
    "lr a tensor": ({"lr": torch.tensor(0.1)}, TypeError, "lr must be a number"),
    "lr NaN": ({"lr": float("nan")}, Error, r"lr must be finite and >= 0, got nan"),
    "lr infinite": ({"lr": float("inf")}, Error, r"lr must be finite and >= 0, got inf"),
    "lr callable, not a number": ({"lr": lambda t: "fast"}, TypeError,
                                  r"lr, a callable, must return a number .* lr\(0\) returned str"),
    "lr callable, NaN later": ({"lr": lambda t: 0.1 if t < 3 else float("nan")}, Error,
                               r"lr must be finite and >= 0; step 3 has lr=nan"),
    "weight_decay a string": ({"weight_decay": "0.01"}, TypeError,
                              "weight_decay must be a number, got str"),
    "weight_decay None": ({"weight_decay": None}, TypeError,
                          "weight_decay must be a number, got NoneType"),
    "weight_decay a bool": ({"weight_decay": True}, TypeError, "weight_decay must be a number"),
    "weight_decay infinite": ({"weight_decay": float("inf")}, Error,
                              "weight_decay must be finite and >= 0"),
    "loss not a name": ({"loss": 3}, TypeError, "loss must be a name .* or a callable"),
    "class label beyond the logits": (
        {"y": lambda y: with_label(y, 40, 9)}, DataError,
        r"train: y holds class labels \[9\] outside \[0, 2\), but the model outputs 2 logits "
        r"per instance .*give the model one output per class, or number the classes 0..1"),
    "negative class labels": ({"y": lambda y: with_label(with_label(y, 7, -1), 8, -3)},
                              DataError, r"class labels \[-3, -1\] outside \[0, 2\)"),
    "non-integer class labels": ({"y": lambda y: with_label(y.double(), 3, 0.5)}, DataError,
                                 "cross_entropy needs integer class labels"),
    "a non-differentiable loss": ({"loss": lambda o, t: (o.argmax(1) != t).float()}, Error,
                                  r"the loss is not differentiable in the model's outputs .*"
                                  "use a differentiable loss"),
    "a seed beyond 2**63": ({"seed": 2**64}, Error, r"seed must be in \[0, 2\*\*63\)"),
    "a negative seed": ({"seed": -1}, Error, r"seed must be in \[0, 2\*\*63\)"),
    "absurd epochs": ({"epochs": 99999999999999999999}, ConfigError,
                      r"epochs=99999999999999999999 of 50 instances in batches of 5 is "
                      r"999,999,999,999,999,999,990 steps of 10 parameters: the run would need "
                      r".* GB of memory, .* GB here; train for fewer epochs$"),
    "a trajectory beyond memory": ({"epochs": 5000, "model": mlp(4, hidden=(4096, 4096))},
                                   ConfigError, r"50,000 steps of 16,809,986 parameters: the "
                                   r"run would need 3.36e\+03 GB of memory, .* or keep the "
                                   r"trajectory with store=sgi.DiskStore\(path\) or 'replay'"),
    "bce target beyond 1": ({"loss": "bce", "model": logistic_regression(4, 1),
                             "y": lambda y: with_label(y, 30, 2)}, DataError,
                            r"bce needs targets in \[0, 1\], but y holds \[2.0\]"),
}


@pytest.mark.parametrize("case", FIT)
def test_bad_fit_arguments_are_refused(data, case):
    kwargs, error, message = FIT[case]
    kwargs = dict(kwargs)
    X, y = data
    y = kwargs.pop("y", lambda y: y)(y)
    model = kwargs.pop("model", logistic_regression(4))
    with pytest.raises(error, match=message):
        sgi.fit(model, (X, y), **{"epochs": 1, "batch_size": 5, "lr": 0.1, **kwargs})


# --- indices and exclude ----------------------------------------------------------------------

mask = np.zeros(50, bool)
mask[[3, 17, 41]] = True

INDICES = {  # bad value -> exception, message (for "indices"; the same for "exclude")
    "floats": ([1.5, 2.0], TypeError, r"must hold integer indices .* got dtype float64"),
    "float array": (np.array([1.0, 2.0]), TypeError, "got dtype float64"),
    "float tensor": (torch.tensor([1.0]), TypeError, "got dtype float32"),
    "strings": (["a"], TypeError, "got dtype <U1"),
    "a string": ("3", TypeError, "got str"),
    "mask of the wrong length": (mask[:20], Error,
                                 "a boolean mask of length 20, but the training set has 50"),
    "2-D": (np.array([[1, 2]]), Error, r"must be 1-D .* got shape \(1, 2\)"),
    "a scalar": (3, TypeError, "got int"),
    "a 0-d array": (np.array(3), Error, "must be 1-D .*wrap a single index in a list"),
    "out of range": ([3, 50], IndexOutOfRange, r"outside \[0, 50\): \[50\]"),
    "negative": (torch.tensor([-1]), IndexOutOfRange, r"outside \[0, 50\): \[-1\]"),
}


@pytest.mark.parametrize("case", INDICES)
def test_bad_indices_are_refused(run, data, case):
    value, error, message = INDICES[case]
    with pytest.raises(error, match=f"^indices .*{message}"):
        sgi.influence(run, data, method="tracin", indices=value)
    with pytest.raises(error, match=f"^exclude .*{message}"):
        run.retrain(exclude=value)


def test_indices_take_any_integer_dtype_and_boolean_masks(run, data):
    scores = sgi.influence(run, data, method="tracin")
    for idx in ([3, 17, 41], np.array([3, 17, 41], np.int32), torch.tensor([3, 17, 41]),
                torch.tensor([3, 17, 41], dtype=torch.int16), np.array([3, 17, 41], np.uint8),
                mask, torch.from_numpy(mask), list(mask)):
        np.testing.assert_array_equal(sgi.influence(run, data, method="tracin", indices=idx),
                                      scores[[3, 17, 41]])
    np.testing.assert_array_equal(sgi.influence(run, data, method="tracin", indices=[5, 5, 2]),
                                  scores[[5, 5, 2]])
    np.testing.assert_array_equal(sgi.influence(run, data, method="tracin", indices=range(3, 6)),
                                  scores[3:6])
    for empty in ([], np.zeros(50, bool)):
        with pytest.raises(Error, match="indices selects no training instances"):
            sgi.influence(run, data, method="tracin", indices=empty)


def test_exclude_takes_masks_and_repeats(run):
    def params(model):
        return torch.cat([p.flatten() for p in model.parameters()])

    expected = params(run.retrain([3, 17, 41]))
    for exclude in (mask, torch.from_numpy(mask), np.array([41, 3, 17, 3], np.int64),
                    torch.tensor([17, 3, 41], dtype=torch.int32)):
        assert torch.equal(params(run.retrain(exclude)), expected)
    assert torch.equal(params(run.retrain(np.zeros(50, bool))), params(run.model))
    assert torch.equal(params(run.retrain(np.array([], np.int64))), params(run.model))


# --- queries ----------------------------------------------------------------------------------

def accuracy_on(d):
    def accuracy(m):
        return (m(d[0]).argmax(1) == d[1]).double().mean()
    return accuracy


def no_grad_loss_on(d):
    def loss(m):
        with torch.no_grad():
            return F.cross_entropy(m(d[0]), d[1])
    return loss


QUERIES = {  # validation data -> bad query; exception, message
    "accuracy by argmax": (accuracy_on, Error,
                           "the callable query 'accuracy' cannot be differentiated .*every "
                           "score would be 0; query a differentiable surrogate"),
    "made by .item()": (lambda d: lambda m: torch.tensor(F.cross_entropy(m(d[0]), d[1]).item()),
                        Error, "'<lambda>' cannot be differentiated"),
    "under torch.no_grad": (no_grad_loss_on, Error, "'loss' cannot be differentiated"),
    "not a scalar": (lambda d: lambda m: m(d[0]), Error, "must return a scalar tensor"),
    "a label beyond the logits": (lambda d: (d[0][:10], with_label(d[1][:10], 4, 7)), DataError,
                                  r"query: y holds class labels \[7\] outside \[0, 2\), but the "
                                  "model outputs 2 logits"),
    "fractional labels": (lambda d: (d[0][:10], d[1][:10] + 0.5), DataError,
                          "query: cross_entropy needs integer class labels"),
    "per example, label beyond": (lambda d: sgi.PerExample((d[0][:3], torch.tensor([0, 1, 2]))),
                                  DataError, r"class labels \[2\]"),
}


@pytest.mark.parametrize("case", QUERIES)
def test_bad_queries_are_refused(run, data, case):
    make, error, message = QUERIES[case]
    with pytest.raises(error, match=message):
        sgi.influence(run, make(data))


def test_queries_of_a_bce_run_refuse_targets_outside_0_1(data):
    X, y = data
    run = sgi.fit(logistic_regression(4, 1), (X, y), loss="bce", epochs=1, batch_size=5, lr=0.1)
    with pytest.raises(DataError, match=r"query: bce needs targets in \[0, 1\]"):
        sgi.influence(run, (X[:5], torch.tensor([0, 1, 3, 0, 1])))


# --- every other refusal is an Error too --------------------------------------------------------

def fit_with(data, **kw):
    return sgi.fit(logistic_regression(4), data, **{"epochs": 1, "batch_size": 5, "lr": 0.1, **kw})


OTHERS = {  # (run, data) -> a refused call; exception, message
    "X and y of different lengths": (lambda run, d: fit_with((d[0], d[1][:-1])), DataError,
                                     "train: X has 50 instances but y has 49"),
    "NaN in X": (lambda run, d: fit_with((d[0] / 0 * 0, d[1])), DataError, "NaN or infinite"),
    "an unknown store": (lambda run, d: fit_with(d, store="cloud"), Error, "unknown store"),
    "a replay interval of 0": (lambda run, d: sgi.ReplayStore(every=0), Error, "every must be"),
    "an unknown method": (lambda run, d: sgi.influence(run, d, method="magic"), Error,
                          "unknown method 'magic'"),
    "an unknown solver": (lambda run, d: sgi.influence(run, d, method="influence-function",
                                                       solver="qr"), Error, "unknown solver"),
    "a negative chunk": (lambda run, d: sgi.influence(run, d, method="loo", chunk=-1,
                                                      indices=[0]), Error, "chunk must be"),
    "an empty query list": (lambda run, d: sgi.influence(run, []), Error, "empty list"),
    "leave_out with no sets": (lambda run, d: sgi.leave_out(run, d, []), Error,
                               r"removed holds no index sets; pass .* e.g. \[\[3\], \[5, 7\]\]"),
    "leave_out out of range": (lambda run, d: sgi.leave_out(run, d, [[3], [50]]),
                               IndexOutOfRange, r"removed holds indices outside \[0, 50\)"),
    "query data of another width": (lambda run, d: sgi.influence(run, (d[0][:, :3], d[1])),
                                    DataError, r"query X has instances of shape \(3,\)"),
}


@pytest.mark.parametrize("case", OTHERS)
def test_other_refusals_are_errors(run, data, case):
    call, error, message = OTHERS[case]
    with pytest.raises(error, match=message):
        call(run, data)
