"""The optimizer oracle (tests/oracle.py, ``unrolled_optimizer``) against torch.optim and
against finite differences. Independent of the package: plain torch models and schedules."""

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call

import oracle
from oracle import unroll, unrolled, unrolled_optimizer
from problems import per_sample, val_loss

N, N_VAL, D, EPOCHS, BATCH = 40, 30, 5, 3, 7


def problem(model_name, seed=0, dropout=0.0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N + N_VAL, D, generator=g, dtype=torch.float64)
    y = (X[:, 0] + 0.5 * X[:, 1] + 0.7 * torch.randn(N + N_VAL, generator=g, dtype=torch.float64)
         > 0).long()
    torch.manual_seed(seed)
    if model_name == "logreg":
        model = nn.Linear(D, 2)
    else:
        layers = [nn.Linear(D, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        model = nn.Sequential(*layers, nn.Linear(8, 2))
    perms = [torch.randperm(N, generator=g) for _ in range(EPOCHS)]
    batches = [perm[i:i + BATCH] for perm in perms for i in range(0, N, BATCH)]
    seeds = torch.randint(0, 2**62, (len(batches),), generator=g).tolist()
    return model.double(), (X[:N], y[:N]), (X[N:], y[N:]), batches, seeds


def rates(lr0, steps):
    return [lr0 / (t + 1) ** 0.5 for t in range(steps)]


LR0 = 0.1  # η_t = LR0 / √(t+1)

# name: (oracle options, (torch optimizer, its options))
CONFIGS = {
    "momentum": (dict(optimizer="sgd", momentum=0.9, weight_decay=0.01),
                 (torch.optim.SGD, dict(momentum=0.9, weight_decay=0.01))),
    "dampening": (dict(optimizer="sgd", momentum=0.9, dampening=0.1, weight_decay=0.01),
                  (torch.optim.SGD, dict(momentum=0.9, dampening=0.1, weight_decay=0.01))),
    "nesterov": (dict(optimizer="sgd", momentum=0.9, nesterov=True, weight_decay=0.01),
                 (torch.optim.SGD, dict(momentum=0.9, nesterov=True, weight_decay=0.01))),
    "adam": (dict(optimizer="adam", weight_decay=0.01),
             (torch.optim.Adam, dict(weight_decay=0.01))),
    "adamw": (dict(optimizer="adamw", weight_decay=0.01),
              (torch.optim.AdamW, dict(weight_decay=0.01))),
}


def torch_loop(model, train, batches, lrs, make, options, seeds=None, **extra):
    """Plain PyTorch training: mean per-instance loss, ``torch.optim`` step."""
    model = copy.deepcopy(model)
    opt = make(model.parameters(), lr=lrs[0], **options, **extra)
    model.train()
    for t, (idx, lr) in enumerate(zip(batches, lrs, strict=True)):
        opt.param_groups[0]["lr"] = lr
        opt.zero_grad()
        if seeds is not None:
            torch.manual_seed(seeds[t])
        per_sample(model(train[0][idx]), train[1][idx]).mean().backward()
        opt.step()
    return model, opt


def torch_state(opt, p):
    s = opt.state[p]
    return [s["momentum_buffer"]] if "momentum_buffer" in s else [s["exp_avg"], s["exp_avg_sq"]]


def assert_same_training(model, opt, final, state):
    for p, q, s in zip(model.parameters(), final, state, strict=True):
        torch.testing.assert_close(p.detach(), q, rtol=1e-12, atol=1e-14)
        ours = [s] if isinstance(s, torch.Tensor) else list(s)
        for a, b in zip(torch_state(opt, p), ours, strict=True):
            torch.testing.assert_close(a, b.detach(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("model_name", ["logreg", "mlp"])
@pytest.mark.parametrize("config", CONFIGS)
def test_training_is_torch_optim(config, model_name):
    """The oracle's final parameters (and optimizer state) are torch.optim's, single-tensor
    and multi-tensor alike; the scores are finite and not all zero."""
    options, (make, torch_options) = CONFIGS[config]
    model, train, val, batches, _ = problem(model_name)
    lrs = rates(LR0, len(batches))
    scores, final = unrolled_optimizer(model, *train, per_sample, batches, lrs, val_loss(val),
                                       **options)
    assert torch.isfinite(scores).all() and scores.abs().max() > 1e-4
    w = torch.ones(N, dtype=torch.float64)
    again, state, _ = unroll(model, *train, per_sample, batches, lrs, w, create_graph=False,
                             **options)
    for p, q in zip(final, again, strict=True):
        assert torch.equal(p, q.detach())
    for foreach in (False, None, True):  # on CPU the default (None) is single-tensor
        trained, opt = torch_loop(model, train, batches, lrs, make, torch_options,
                                  foreach=foreach)
        assert_same_training(trained, opt, final, state)


@pytest.mark.parametrize("config", CONFIGS)
def test_bit_for_bit_without_coupled_decay(config):
    """Without a coupled decay term (whose gradient autodiff rounds differently from torch's
    ``grad.add(param, alpha=α)``) the oracle runs torch's very arithmetic: equal bits."""
    options, (make, torch_options) = CONFIGS[config]
    if config != "adamw":
        options, torch_options = dict(options, weight_decay=0.0), dict(torch_options,
                                                                      weight_decay=0.0)
    model, train, _, batches, _ = problem("mlp", seed=6)
    lrs = rates(LR0, len(batches))
    final, _, _ = unroll(model, *train, per_sample, batches, lrs,
                         torch.ones(N, dtype=torch.float64), create_graph=False, **options)
    trained, _ = torch_loop(model, train, batches, lrs, make, torch_options, foreach=False)
    for p, q in zip(trained.parameters(), final, strict=True):
        assert torch.equal(p.detach(), q.detach())


def assert_derivative(fd, scores, j):
    """Central differences carry roundoff ~ eps·Q/h ≈ 1e-11, hence the absolute floor."""
    err = abs(fd - scores[j].item())
    assert err <= 1e-6 * abs(scores[j].item()) + 1e-9 * scores.abs().max().item(), (j, fd, err)


def finite_difference(model, train, val, batches, lrs, j, h, options, seeds=None):
    def q(wj):
        w = torch.ones(N, dtype=torch.float64)
        w[j] = wj
        _, _, forward = unroll(model, *train, per_sample, batches, lrs, w, create_graph=False,
                               seeds=seeds, **options)
        with torch.no_grad():
            return val_loss(val)(forward).item()

    return -(q(1 + h) - q(1 - h)) / (2 * h)


@pytest.mark.parametrize("model_name", ["logreg", "mlp"])
@pytest.mark.parametrize("config", CONFIGS)
def test_scores_are_the_derivative(config, model_name):
    """Central differences in w_j, retraining with w_j = 1 ± h, agree with -dQ/dw_j."""
    options, _ = CONFIGS[config]
    model, train, val, batches, _ = problem(model_name, seed=1)
    lrs = rates(LR0, len(batches))
    scores, _ = unrolled_optimizer(model, *train, per_sample, batches, lrs, val_loss(val),
                                   **options)
    for j in (0, 17, 33):
        fd = finite_difference(model, train, val, batches, lrs, j, 1e-5, options)
        assert_derivative(fd, scores, j)


def _unrolled_before(model, X, y, loss, batches, lrs, weight_decay, query, from_step=0,
                     inputs=None):
    """``unrolled`` as it was before ``unrolled_optimizer`` (commit 829b1f5), verbatim."""
    names = [n for n, _ in model.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in model.parameters()]
    w = torch.ones(len(X), dtype=params[0].dtype, requires_grad=True)

    def forward(x):
        return functional_call(model, dict(zip(names, params, strict=True)), (x,))

    model.train()
    for t, (idx, lr) in enumerate(zip(batches, lrs, strict=True)):
        wt = w[idx] if t >= from_step else torch.ones(len(idx), dtype=w.dtype)
        x = X[idx] if inputs is None else inputs(t, X[idx])
        per = loss(forward(x), y[idx])
        per = per + 0.5 * weight_decay * sum(p.square().sum() for p in params)
        grads = torch.autograd.grad((wt * per).sum() / len(idx), params, create_graph=True)
        params = [p - lr * g for p, g in zip(params, grads, strict=True)]
    model.eval()
    (dw,) = torch.autograd.grad(query(forward), w)
    return -dw, [p.detach() for p in params]


@pytest.mark.parametrize("from_step", [0, 12])
def test_plain_sgd_is_the_old_unrolled_bit_for_bit(from_step):
    model, train, val, batches, _ = problem("mlp", seed=2)
    lrs = rates(0.3, len(batches))

    def inputs(t, x):  # a deterministic input map, so the ``inputs`` path is covered too
        return x * (1 + 0.01 * t)

    old, old_final = _unrolled_before(model, *train, per_sample, batches, lrs, 0.01,
                                      val_loss(val), from_step=from_step, inputs=inputs)
    for new, new_final in [
            unrolled_optimizer(model, *train, per_sample, batches, lrs, val_loss(val),
                               weight_decay=0.01, from_step=from_step, inputs=inputs),
            unrolled(model, *train, per_sample, batches, lrs, 0.01, val_loss(val),
                     from_step=from_step, inputs=inputs)]:
        assert torch.equal(new, old)
        for p, q in zip(new_final, old_final, strict=True):
            assert torch.equal(p, q)


@pytest.mark.parametrize("config", ["nesterov", "adam"])
def test_dropout_is_drawn_from_the_step_seeds(config):
    """With ``seeds`` the masks are torch's when it seeds before each step's forward, and a
    retraining draws the same masks, so finite differences still agree."""
    options, (make, torch_options) = CONFIGS[config]
    model, train, val, batches, seeds = problem("mlp", seed=3, dropout=0.3)
    lrs = rates(LR0, len(batches))
    before = torch.random.get_rng_state()
    scores, final = unrolled_optimizer(model, *train, per_sample, batches, lrs, val_loss(val),
                                       seeds=seeds, **options)
    assert torch.equal(torch.random.get_rng_state(), before)  # the generator is restored
    trained, _ = torch_loop(model, train, batches, lrs, make, torch_options, seeds=seeds)
    for p, q in zip(trained.parameters(), final, strict=True):
        torch.testing.assert_close(p.detach(), q, rtol=1e-12, atol=1e-14)
    unseeded, _ = unrolled_optimizer(model, *train, per_sample, batches, lrs, val_loss(val),
                                     **options)
    assert (unseeded - scores).abs().max() > 1e-3 * scores.abs().max()  # masks matter
    j = 5
    fd = finite_difference(model, train, val, batches, lrs, j, 1e-5, options, seeds=seeds)
    assert_derivative(fd, scores, j)


def test_from_step():
    """Steps before ``from_step`` train with fixed weights 1: the scores are the derivative
    of Q with respect to the weights of the later steps only (and differ from the full one)."""
    options = dict(CONFIGS["adam"][0], from_step=2 * 18 // EPOCHS)
    model, train, val, batches, _ = problem("mlp", seed=4)
    lrs = rates(LR0, len(batches))
    scores, final = unrolled_optimizer(model, *train, per_sample, batches, lrs, val_loss(val),
                                       **options)
    full, full_final = unrolled_optimizer(model, *train, per_sample, batches, lrs,
                                          val_loss(val), **CONFIGS["adam"][0])
    for p, q in zip(final, full_final, strict=True):  # Adam's step count starts at step 0
        assert torch.equal(p, q)
    assert (scores - full).abs().max() > 1e-2 * full.abs().max()
    for j in (9, 21):
        fd = finite_difference(model, train, val, batches, lrs, j, 1e-5, options)
        assert_derivative(fd, scores, j)


def test_zero_second_moment(monkeypatch):
    """A dead ReLU unit: its weights' gradients are exactly 0 at every step, so v = 0 there.
    torch trains through it; naive autodiff through √0 is NaN; the oracle's 0 is exact."""
    options = dict(optimizer="adamw", weight_decay=0.01)
    model, train, val, batches, _ = problem("mlp", seed=5)
    with torch.no_grad():
        model[0].bias[0] = -100.0  # pre-activation < 0 for every input
    lrs = rates(0.05, len(batches))
    scores, final = unrolled_optimizer(model, *train, per_sample, batches, lrs, val_loss(val),
                                       **options)
    assert torch.isfinite(scores).all()
    trained, opt = torch_loop(model, train, batches, lrs, torch.optim.AdamW,
                              dict(weight_decay=0.01))
    assert (opt.state[trained[0].weight]["exp_avg_sq"][0] == 0).all()
    for p, q in zip(trained.parameters(), final, strict=True):
        torch.testing.assert_close(p.detach(), q, rtol=1e-12, atol=1e-14)
    for j in (2, 30):
        fd = finite_difference(model, train, val, batches, lrs, j, 1e-5, options)
        assert_derivative(fd, scores, j)
    monkeypatch.setattr(oracle, "sqrt0", torch.sqrt)
    naive, _ = unrolled_optimizer(model, *train, per_sample, batches, lrs, val_loss(val),
                                  **options)
    assert torch.isnan(naive).any()


@pytest.mark.parametrize("options", [dict(optimizer="rmsprop"), dict(nesterov=True),
                                     dict(nesterov=True, momentum=0.9, dampening=0.1),
                                     dict(optimizer="adam", momentum=0.9)])
def test_refuses_what_torch_refuses_or_does_not_have(options):
    model, train, val, batches, _ = problem("logreg")
    with pytest.raises(ValueError):
        unrolled_optimizer(model, *train, per_sample, batches, rates(LR0, len(batches)),
                           val_loss(val), **options)


# Parameter groups: the first Linear layer, and the rest of the MLP, each with its own rate and
# weight decay; StepLR halves every group's rate every 5 steps.
# name: (oracle options, torch optimizer, its options, (lr, weight decay) of the two groups)
GROUPED = {
    "momentum": (dict(optimizer="sgd", momentum=0.9), torch.optim.SGD, dict(momentum=0.9),
                 ((0.1, 0.01), (0.05, 0.0))),
    "adam": (dict(optimizer="adam"), torch.optim.Adam, {}, ((0.02, 0.01), (0.01, 0.001))),
    "adamw": (dict(optimizer="adamw"), torch.optim.AdamW, {}, ((0.02, 0.05), (0.01, 0.0))),
}


def grouped_loop(model, train, batches, make, options, groups, foreach=False):
    """Plain PyTorch training with two parameter groups and ``StepLR(step_size=5, gamma=0.5)``
    stepped after every step. Returns the model, the optimizer, the rates per step and
    parameter tensor (in ``model.parameters()`` order, read from ``opt.param_groups`` before
    each ``opt.step()``) and the weight decay per parameter tensor."""
    model = copy.deepcopy(model)
    (lr_first, wd_first), (lr_rest, wd_rest) = groups
    first = list(model[0].parameters())
    rest = [p for layer in list(model)[1:] for p in layer.parameters()]
    opt = make([{"params": first, "lr": lr_first, "weight_decay": wd_first},
                {"params": rest, "weight_decay": wd_rest}],
               lr=lr_rest, foreach=foreach, **options)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
    position = {id(p): i for i, p in enumerate(model.parameters())}

    def per_tensor(key):
        values = [None] * len(position)
        for group in opt.param_groups:
            for p in group["params"]:
                values[position[id(p)]] = group[key]
        return values

    lrs = []
    model.train()
    for idx in batches:
        opt.zero_grad()
        per_sample(model(train[0][idx]), train[1][idx]).mean().backward()
        lrs.append(per_tensor("lr"))
        opt.step()
        scheduler.step()
    return model, opt, lrs, per_tensor("weight_decay")


@pytest.mark.parametrize("config", GROUPED)
def test_parameter_groups_and_scheduler_are_torch_optim(config):
    """Per-tensor rates and weight decay: the oracle's training is torch.optim's with two
    parameter groups and a StepLR schedule, single-tensor and multi-tensor alike."""
    options, make, torch_options, groups = GROUPED[config]
    model, train, val, batches, _ = problem("mlp", seed=7)
    trained, opt, lrs, decay = grouped_loop(model, train, batches, make, torch_options, groups)
    (lr_first, wd_first), (lr_rest, wd_rest) = groups
    assert lrs[0] == [lr_first] * 2 + [lr_rest] * 4 and decay == [wd_first] * 2 + [wd_rest] * 4
    assert lrs[-1] == [lr_first / 8] * 2 + [lr_rest / 8] * 4  # 18 steps: halved 3 times
    scores, final = unrolled_optimizer(model, *train, per_sample, batches, lrs, val_loss(val),
                                       weight_decay=decay, **options)
    assert torch.isfinite(scores).all() and scores.abs().max() > 1e-4
    _, state, _ = unroll(model, *train, per_sample, batches, lrs,
                         torch.ones(N, dtype=torch.float64), create_graph=False,
                         weight_decay=decay, **options)
    assert_same_training(trained, opt, final, state)
    trained, opt, _, _ = grouped_loop(model, train, batches, make, torch_options, groups,
                                      foreach=True)
    assert_same_training(trained, opt, final, state)
    # the groups matter: one rate and decay for all tensors trains elsewhere
    _, single = unrolled_optimizer(model, *train, per_sample, batches,
                                   [lr[-1] for lr in lrs], val_loss(val),
                                   weight_decay=wd_rest, **options)
    assert max((p - q).abs().max() for p, q in zip(final, single, strict=True)) > 1e-3


@pytest.mark.parametrize("config", GROUPED)
def test_scores_with_parameter_groups_are_the_derivative(config):
    options, make, torch_options, groups = GROUPED[config]
    model, train, val, batches, _ = problem("mlp", seed=8)
    _, _, lrs, decay = grouped_loop(model, train, batches, make, torch_options, groups)
    options = dict(options, weight_decay=decay)
    scores, _ = unrolled_optimizer(model, *train, per_sample, batches, lrs, val_loss(val),
                                   **options)
    for j in (0, 17, 33):
        fd = finite_difference(model, train, val, batches, lrs, j, 1e-5, options)
        assert_derivative(fd, scores, j)


@pytest.mark.parametrize("config", CONFIGS)
def test_equal_values_per_tensor_are_one_number(config):
    """One rate per tensor, all equal, is the single rate bit for bit; one weight decay per
    tensor, all equal, is the single decay up to rounding (its L2 term is summed per tensor)."""
    options, _ = CONFIGS[config]
    model, train, val, batches, _ = problem("mlp", seed=9)
    lrs = rates(LR0, len(batches))
    n = len(list(model.parameters()))
    scores, final = unrolled_optimizer(model, *train, per_sample, batches, lrs, val_loss(val),
                                       **options)
    same, same_final = unrolled_optimizer(model, *train, per_sample, batches,
                                          [[lr] * n for lr in lrs], val_loss(val), **options)
    assert torch.equal(same, scores)
    for p, q in zip(final, same_final, strict=True):
        assert torch.equal(p, q)
    options = dict(options, weight_decay=[options["weight_decay"]] * n)
    close, close_final = unrolled_optimizer(model, *train, per_sample, batches, lrs,
                                            val_loss(val), **options)
    torch.testing.assert_close(close, scores, rtol=1e-10, atol=1e-14)
    for p, q in zip(final, close_final, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("options", [dict(weight_decay=[0.01]),
                                     dict(weight_decay=[0.01, 0.0, 0.0]),
                                     dict(lrs_per_tensor=1), dict(lrs_per_tensor=3)])
def test_refuses_a_value_count_other_than_the_tensor_count(options):
    model, train, val, batches, _ = problem("logreg")  # two tensors: weight and bias
    lrs = rates(LR0, len(batches))
    if "lrs_per_tensor" in options:
        lrs[4] = [lrs[4]] * options.pop("lrs_per_tensor")
    with pytest.raises(ValueError, match="2 parameter tensors"):
        unrolled_optimizer(model, *train, per_sample, batches, lrs, val_loss(val), **options)
