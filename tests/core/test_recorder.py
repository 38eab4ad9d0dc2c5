"""The recorder in a plain PyTorch loop: the user's training is unchanged, and the recorded
run's influence equals the oracle unrolled through torch's optimizers, parameter groups and
scheduler included (tests/oracle.py)."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset

import sgdinfluence as sgi
from oracle import unrolled_optimizer
from problems import small_problem
from sgdinfluence.app.models import mlp
from sgdinfluence.errors import DataError, Error

N, D = 40, 5


def problem(seed=0):
    return small_problem(n=N, d=D, seed=seed)


def two_groups(model, name):
    first, rest = list(model[1].parameters()), [p for m in model[3:] for p in m.parameters()]
    if name == "momentum":
        return torch.optim.SGD([{"params": first, "lr": 0.1, "weight_decay": 0.01},
                                {"params": rest, "weight_decay": 0.0}], lr=0.05, momentum=0.9)
    return torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=0.01)


def batches(seed=1, epochs=3, size=7):
    g = torch.Generator().manual_seed(seed)
    return [b for _ in range(epochs) for b in torch.randperm(N, generator=g).split(size)]


def loop(model, optimizer, train, steps, recorder=None):
    """A user's loop; with ``recorder``, its step replaces the three lines it stands for."""
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)
    rates = []
    for idx in steps:
        rates.append([g["lr"] for g in optimizer.param_groups])
        if recorder is None:
            optimizer.zero_grad()
            F.cross_entropy(model(train[0][idx]), train[1][idx]).backward()
            optimizer.step()
        else:
            recorder.step(idx)
        scheduler.step()
    return rates


@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_recorded_loop_trains_as_the_plain_loop_and_matches_the_oracle(name):
    model, train, val = problem()
    plain, recorded = copy.deepcopy(model), copy.deepcopy(model)
    steps = batches()
    loop(plain, two_groups(plain, name), train, steps)
    rec = sgi.Recorder(recorded, two_groups(recorded, name), "cross_entropy",
                       TensorDataset(*train))
    rates = loop(recorded, rec.optimizer, train, steps, rec)
    run = rec.finish()
    for p, q, r in zip(plain.parameters(), recorded.parameters(), run.model.parameters(),
                       strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
        assert torch.equal(q, r)
    assert run.epochs == 3 and run.epoch_starts == [0, 6, 12]

    if name == "momentum":  # the groups' rates and decays per parameter tensor
        lrs = [[r[0]] * 2 + [r[1]] * 4 for r in rates]
        options = dict(optimizer="sgd", momentum=0.9, weight_decay=[0.01] * 2 + [0.0] * 4)
    else:
        lrs, options = [r[0] for r in rates], dict(optimizer="adam", weight_decay=0.01)
    expected, final = unrolled_optimizer(
        model, *train, lambda o, t: F.cross_entropy(o, t, reduction="none"), steps, lrs,
        lambda forward: F.cross_entropy(forward(val[0]), val[1]), **options)
    for p, q in zip(run.model.parameters(), final, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    scores = sgi.influence(run, val)
    assert np.abs(expected.numpy()).max() > 1e-4
    assert np.abs(scores - expected.numpy()).max() / np.abs(expected.numpy()).max() < 1e-9
    same = run.retrain([])
    for p, q in zip(same.parameters(), run.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def test_stores_and_saved_runs_give_the_same_scores(tmp_path):
    model, train, val = problem(seed=2)
    results = []
    for store in ("memory", "replay", sgi.DiskStore(tmp_path / "run")):
        m = copy.deepcopy(model)
        rec = sgi.Recorder(m, two_groups(m, "momentum"), "cross_entropy", train, store=store)
        loop(m, rec.optimizer, train, batches(), rec)
        results.append(sgi.influence(rec.finish(), val))
    np.testing.assert_allclose(results[1], results[0], rtol=1e-10, atol=1e-16)
    np.testing.assert_array_equal(results[2], results[0])
    np.testing.assert_array_equal(sgi.influence(sgi.load_run(tmp_path / "run"), val), results[0])


class Lazy(Dataset):
    """Instances computed from their index, counting reads."""

    def __init__(self, n, shapes=None):
        self.n, self.reads, self.shapes = n, 0, shapes or {}

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.reads += 1
        g = torch.Generator().manual_seed(i)
        x = torch.randn(self.shapes.get(i, (D,)), generator=g, dtype=torch.float64)
        return x, int(x.sum() > 0)


def test_a_streamed_dataset_is_read_batch_by_batch_and_gives_the_same_run():
    data = Lazy(N)
    X = torch.stack([data[i][0] for i in range(N)])
    y = torch.tensor([data[i][1] for i in range(N)])
    model = problem()[0]
    data.reads = 0
    streamed = sgi.fit(model, data, epochs=2, batch_size=8, lr=0.1, momentum=0.9)
    # item 0's shapes, the first two checked, the first batch twice (does it replay?), then
    # each batch
    assert data.reads == 3 + 2 * 8 + 2 * N
    in_memory = sgi.fit(model, (X, y), epochs=2, batch_size=8, lr=0.1, momentum=0.9)
    for p, q in zip(streamed.model.parameters(), in_memory.model.parameters(), strict=True):
        assert torch.equal(p, q)
    val = (X[:10], y[:10])
    np.testing.assert_array_equal(sgi.influence(streamed, val), sgi.influence(in_memory, val))
    np.testing.assert_array_equal(sgi.influence(streamed, val, method="loo", indices=[3]),
                                  sgi.influence(in_memory, val, method="loo", indices=[3]))


def test_bad_input_is_refused():
    model, train, _ = problem()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = sgi.Recorder(model, optimizer, "cross_entropy", train)
    with pytest.raises(IndexError, match=r"indices holds indices outside \[0, 40\): \[40\]"):
        rec.step([3, 40])
    with pytest.raises(TypeError, match="indices must hold integer indices"):
        rec.step(torch.tensor([0.0, 1.0]))
    with pytest.raises(DataError, match="item 7 has x of shape \\(3,\\)"):
        sgi.fit(mlp(D).double(), Lazy(N, {7: (3,)}), epochs=1, batch_size=8, lr=0.1)
    other = mlp(D).double()
    for opt, message in [
            (torch.optim.SGD(other.parameters(), lr=0.1), "not the model's trainable parameters"),
            (torch.optim.RMSprop(model.parameters()), "supports torch.optim.SGD, Adam and AdamW"),
            (torch.optim.Adam(model.parameters(), amsgrad=True), r"Adam\(amsgrad=True\) is not"),
            (torch.optim.SGD([{"params": [model[1].weight], "momentum": 0.5},
                              {"params": [p for n, p in model.named_parameters()
                                          if n != "1.weight"]}], lr=0.1, momentum=0.9),
             "the parameter groups differ in momentum")]:
        with pytest.raises(Error, match=message):
            sgi.Recorder(model, opt, "cross_entropy", train)
    used = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    F.cross_entropy(model(train[0]), train[1]).backward()
    used.step()
    with pytest.raises(Error, match="already taken steps"):
        sgi.Recorder(model, used, "cross_entropy", train)


def test_dataloader_workers_read_the_same_batches():
    model = problem()[0]
    runs = [sgi.fit(model, Lazy(N), epochs=2, batch_size=8, lr=0.1, workers=w) for w in (0, 2)]
    for p, q in zip(runs[0].model.parameters(), runs[1].model.parameters(), strict=True):
        assert torch.equal(p, q)
    val = Lazy(10)
    val = (torch.stack([val[i][0] for i in range(10)]), torch.tensor([val[i][1]
                                                                      for i in range(10)]))
    np.testing.assert_array_equal(sgi.influence(runs[0], val), sgi.influence(runs[1], val))


def test_a_step_that_fails_is_not_recorded_and_the_block_is_trimmed():
    model, train, val = problem()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = sgi.Recorder(model, optimizer, "cross_entropy", train)
    for idx in batches(epochs=1):
        rec.step(idx)
    optimizer.param_groups[0]["lr"] = 1e300
    rec.step([0, 1])  # the loss is still finite; the parameters are not any more
    with pytest.raises(sgi.errors.TrainingDiverged):
        rec.step([2, 3])
    run = rec.finish()
    assert run.num_steps == 7 and len(run.store) == 7 and len(run.lrs) == len(run.seeds) == 7
    assert run.store.state()["thetas"].untyped_storage().nbytes() == \
        7 * run.store[0].numel() * 8  # the doubled block, trimmed to the steps taken


EDITS = {  # a change between two recorded steps -> the refusal naming it
    "a parameter": (lambda m, o: m[1].weight.data.mul_(0.5),
                    "the model's parameters or the optimizer's buffers changed between "
                    r"Recorder.step calls, outside the recorded step .*only through rec.step"),
    "the momentum buffer": (lambda m, o: o.state[m[1].weight]["momentum_buffer"].zero_(),
                            "the optimizer's buffers changed between Recorder.step calls"),
    "a manual update": (lambda m, o: m[1].weight.data.sub_(0.1 * m[1].weight.grad),
                        "changed between Recorder.step calls"),
    "the dampening": (lambda m, o: o.param_groups[0].update(dampening=0.5),
                      "the optimizer's dampening of group 0 changed from 0 to 0.5 during the "
                      "run; a run records each step's learning rate, momentum, betas and "
                      "weight decay only: keep the other options fixed"),
    "momentum to 0": (lambda m, o: o.param_groups[0].update(momentum=0.0),
                      "the optimizer's momentum changed from 0.9 to 0.0; a run keeps a "
                      "momentum buffer or none throughout"),
}


@pytest.mark.parametrize("edit", EDITS)
@pytest.mark.parametrize("at", ["step", "finish"])
def test_a_model_or_optimizer_changed_between_steps_is_refused(edit, at):
    model, train, _ = problem()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rec = sgi.Recorder(model, optimizer, "cross_entropy", train)
    steps = batches(epochs=1)
    for idx in steps[:3]:
        rec.step(idx)
    change, message = EDITS[edit]
    with torch.no_grad():
        change(model, optimizer)
    if at == "finish" and edit == "momentum to 0":  # after the last step: no step uses it
        assert rec.finish().num_steps == 3
        return
    with pytest.raises(Error, match=message):
        rec.step(steps[3]) if at == "step" else rec.finish()


@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_a_scheduler_that_cycles_momentum_is_recorded_per_step(name):
    """OneCycleLR cycles SGD's momentum or Adam's beta1 with the rate: each step's values are
    recorded and replayed (the plain loop's, read step by step, drive the oracle)."""
    model, train, val = problem()
    steps = batches()

    def make(m):
        opt = (torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) if name == "momentum"
               else torch.optim.Adam(m.parameters(), lr=0.01))
        return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1 if name == "momentum"
                                                        else 0.02, total_steps=len(steps))

    plain = copy.deepcopy(model)
    opt, scheduler = make(plain)
    lrs, hypers = [], []
    for idx in steps:
        lrs.append(opt.param_groups[0]["lr"])
        hypers.append({k: opt.param_groups[0][k] for k in ("momentum", "betas")
                       if k in opt.param_groups[0]})
        opt.zero_grad()
        F.cross_entropy(plain(train[0][idx]), train[1][idx]).backward()
        opt.step()
        scheduler.step()
    assert len({repr(h) for h in hypers}) > 10  # it cycles
    mine = copy.deepcopy(model)
    opt, scheduler = make(mine)
    rec = sgi.Recorder(mine, opt, "cross_entropy", train)
    for idx in steps:
        rec.step(idx)
        scheduler.step()
    run = rec.finish()
    for p, q in zip(mine.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    for p, q in zip(run.retrain([]).parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    query = lambda forward: F.cross_entropy(forward(val[0]), val[1])  # noqa: E731
    options = dict(momentum=0.9) if name == "momentum" else dict(optimizer="adam")
    expected, _ = unrolled_optimizer(copy.deepcopy(model), *train,
                                     lambda o, t: F.cross_entropy(o, t, reduction="none"),
                                     steps, lrs, query, hypers=lambda t: hypers[t], **options)
    scores = sgi.influence(run, val)
    assert np.abs(expected.numpy()).max() > 1e-4
    assert np.abs(scores - expected.numpy()).max() / np.abs(expected.numpy()).max() < 1e-9


class Head(torch.nn.Module):
    """A backbone and a head, returning a Hugging Face style output with .logits."""

    def __init__(self):
        super().__init__()
        self.backbone = mlp(D, 8, hidden=(8,)).double()
        self.head = torch.nn.Linear(8, 2).double()

    def forward(self, x):
        return {"logits": self.head(self.backbone(x))}


class Wrapper:
    """accelerate's AcceleratedOptimizer and Lightning's optimizers keep the torch one here."""

    def __init__(self, optimizer):
        self.optimizer = optimizer


def test_loops_beyond_the_plain_one_are_refused_naming_the_fix():
    model, train, _ = problem()
    head = Head()
    cases = [
        (lambda: sgi.Recorder(head, torch.optim.SGD(head.head.parameters(), lr=0.1),
                              "cross_entropy", train),
         r"4 of the model's trainable parameters \(backbone.1.weight, backbone.1.bias, "
         r"backbone.3.weight, ...\) have requires_grad=True but no optimizer group: freeze "
         r"them \(requires_grad_\(False\)\)"),
        (lambda: sgi.Recorder(model, torch.optim.AdamW(model.parameters(), fused=True),
                              "cross_entropy", train),
         r"AdamW\(fused=True\) is not supported.*TrainingArguments\(optim='adamw_torch'\)"),
        (lambda: sgi.Recorder(model, Wrapper(torch.optim.SGD(model.parameters(), lr=0.1)),
                              "cross_entropy", train),
         "got Wrapper: it wraps a SGD, pass its .optimizer"),
        (lambda: sgi.Recorder(model, torch.optim.SGD(model.parameters(), lr=0.1),
                              torch.nn.CrossEntropyLoss(weight=torch.ones(2).double(),
                                                        reduction="none"), train),
         r"CrossEntropyLoss\(weight=...\) divides a batch by the sum of its instances' class "
         "weights, but a run's step divides it by its size"),
    ]
    for call, message in cases:
        with pytest.raises(Error, match=message):
            call()
    rec = sgi.Recorder(model, torch.optim.SGD(model.parameters(), lr=0.1), "cross_entropy",
                       train)
    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(
            Error, match=r"Recorder.step runs under torch.autocast, .* train outside autocast"):
        rec.step([0, 1, 2])
    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(
            Error, match="fit runs under torch.autocast"):
        sgi.fit(model, train, epochs=1, batch_size=8, lr=0.1)


def test_a_model_returning_logits_in_an_output_object_is_recorded():
    _, train, val = problem()
    head = Head()
    head.backbone.requires_grad_(False)  # a frozen backbone, the head trained
    rec = sgi.Recorder(head, torch.optim.SGD(head.head.parameters(), lr=0.1), "cross_entropy",
                       train)
    for idx in batches(epochs=1):
        rec.step(idx)
    run = rec.finish()
    assert run.store[0].numel() == 8 * 2 + 2
    loo = sgi.influence(run, val, method="loo", indices=[0, 1])
    np.testing.assert_allclose(sgi.influence(run, val, indices=[0, 1]), loo, rtol=0.2)


def test_gradient_accumulation_is_one_recorded_step_over_its_micro_batches(tmp_path):
    """rec.step(idx, micro_batches=4) is a loop that accumulates 4 micro-batches' gradients
    (summed losses over |S_t|) and steps once: batch norm sees each micro-batch alone, as
    there. The same training as that loop, the oracle's scores, literal retraining."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(N + 20, D, generator=g, dtype=torch.float64)
    y = (X[:, 0] - X[:, 2] > 0).long()
    train, val = (X[:N], y[:N]), (X[N:], y[N:])
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(D, 8), torch.nn.BatchNorm1d(8),
                                torch.nn.ReLU(), torch.nn.Linear(8, 2)).double()
    steps = batches(size=10)
    plain = copy.deepcopy(model)
    opt = torch.optim.SGD(plain.parameters(), lr=0.1, momentum=0.9)
    for idx in steps:
        opt.zero_grad()
        for part in idx.tensor_split(4):
            (F.cross_entropy(plain(X[part]), y[part], reduction="sum") / len(idx)).backward()
        opt.step()
    mine = copy.deepcopy(model)
    rec = sgi.Recorder(mine, torch.optim.SGD(mine.parameters(), lr=0.1, momentum=0.9),
                       "cross_entropy", train)
    for idx in steps:
        rec.step(idx, micro_batches=4)
    run = rec.finish()
    assert run.micro == [[0, 4]] and run.num_steps == len(steps)
    for p, q in zip(mine.state_dict().values(), plain.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    per_sample = lambda o, t: F.cross_entropy(o, t, reduction="none")  # noqa: E731
    query = lambda forward: F.cross_entropy(forward(val[0]), val[1])  # noqa: E731
    expected, _ = unrolled_optimizer(copy.deepcopy(model), *train, per_sample, steps,
                                     [0.1] * len(steps), query, momentum=0.9, micro=4)
    scores = sgi.influence(run, val)
    assert np.abs(scores - expected.numpy()).max() / np.abs(expected.numpy()).max() < 1e-9
    for p, q in zip(run.retrain([]).state_dict().values(), plain.state_dict().values(),
                    strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    run.save(tmp_path / "r.run")  # the micro-batches travel with the run
    np.testing.assert_array_equal(sgi.influence(sgi.load_run(tmp_path / "r.run"), val), scores)
    whole = copy.deepcopy(model)
    rec = sgi.Recorder(whole, torch.optim.SGD(whole.parameters(), lr=0.1, momentum=0.9),
                       "cross_entropy", train)
    for idx in steps:
        rec.step(idx)
    assert np.abs(sgi.influence(rec.finish(), val) - scores).max() > 1e-3  # it matters
    with pytest.raises(Error, match=r"micro_batches must be an int in \[1, 10\]"):
        sgi.Recorder(model, torch.optim.SGD(model.parameters(), lr=0.1), "cross_entropy",
                     train).step(steps[0], micro_batches=11)


@pytest.mark.parametrize("name", ["momentum", "adamw"])
def test_a_weight_decay_that_changes_between_steps_is_recorded(name):
    """A schedule of the weight decay (coupled for SGD, decoupled for AdamW), each group its
    own: recorded per step, replayed; the plain loop's values drive the oracle."""
    model, train, val = problem()
    steps = batches()

    def make(m):
        return (two_groups(m, "momentum") if name == "momentum"
                else torch.optim.AdamW(m.parameters(), lr=0.01, weight_decay=0.1))

    def decay(opt, t):  # the user's schedule, set before each step
        for k, group in enumerate(opt.param_groups):
            group["weight_decay"] = 0.01 * (1 + (t // 4) % 3) * (k + 1)

    plain = copy.deepcopy(model)
    opt = make(plain)
    decays = []
    for t, idx in enumerate(steps):
        decay(opt, t)
        decays.append([g["weight_decay"] for g in opt.param_groups])
        opt.zero_grad()
        F.cross_entropy(plain(train[0][idx]), train[1][idx]).backward()
        opt.step()
    mine = copy.deepcopy(model)
    opt = make(mine)
    rec = sgi.Recorder(mine, opt, "cross_entropy", train)
    for t, idx in enumerate(steps):
        decay(opt, t)
        rec.step(idx)
    run = rec.finish()
    for p, q in zip(mine.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    for p, q in zip(run.retrain([]).parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    sizes = [len(list(g["params"])) for g in opt.param_groups]
    per_tensor = [[d for d, n in zip(ds, sizes, strict=True) for _ in range(n)] for ds in decays]
    lrs = [[g for g, n in zip([0.1, 0.05] if name == "momentum" else [0.01], sizes, strict=True)
            for _ in range(n)]] * len(steps)
    options = dict(momentum=0.9) if name == "momentum" else dict(optimizer="adamw")
    query = lambda forward: F.cross_entropy(forward(val[0]), val[1])  # noqa: E731
    expected, _ = unrolled_optimizer(
        copy.deepcopy(model), *train, lambda o, t: F.cross_entropy(o, t, reduction="none"),
        steps, lrs, query, hypers=lambda t: {"weight_decay": per_tensor[t]}, **options)
    scores = sgi.influence(run, val)
    assert np.abs(scores - expected.numpy()).max() / np.abs(expected.numpy()).max() < 1e-9


def test_a_recorded_run_with_cycled_hypers_and_modes_round_trips(tmp_path):
    model, train, val = problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=len(batches()))
    rec = sgi.Recorder(model, opt, "cross_entropy", train)
    for t, idx in enumerate(batches()):
        model.train(t % 5 != 4)  # every fifth step in eval mode
        rec.step(idx)
        scheduler.step()
    run = rec.finish()
    assert run.hypers and run.eval_modules
    run.save(tmp_path / "r.run")
    loaded = sgi.load_run(tmp_path / "r.run")
    assert loaded.hypers == run.hypers and loaded.eval_modules == run.eval_modules
    np.testing.assert_array_equal(sgi.influence(loaded, val), sgi.influence(run, val))
