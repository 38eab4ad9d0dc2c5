"""Ground truth and baselines against exact answers: literal retraining, an explicit Hessian,
a closed form, and the unrolled oracle without its Hessian term."""


import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

import sgdinfluence as sgi
from sgdinfluence.app.models import logistic_regression, mlp
from sgdinfluence.core import metrics


def problem(model, n=30, n_val=20, d=4, seed=0, regression=False):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n + n_val, d, generator=g, dtype=torch.float64)
    noise = torch.randn(n + n_val, generator=g, dtype=torch.float64)
    y = X @ torch.arange(1.0, d + 1, dtype=torch.float64) + noise
    if not regression:
        y = (y > 0).long()
    return (X[:n], y[:n]), (X[n:], y[n:])


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_loo_equals_literal_retraining(dropout):
    train, val = problem(None)
    torch.manual_seed(0)
    run = sgi.fit(mlp(4, hidden=(6,), dropout=dropout).double(), train, epochs=2, batch_size=4,
                  lr=0.2, weight_decay=1e-3)
    idx = [0, 3, 7, 29]
    loo = sgi.influence(run, val, method="loo", indices=idx, chunk=3)

    def loss(m):
        with torch.no_grad():
            return F.cross_entropy(m(val[0]), val[1]).item()

    literal = np.array([loss(run.retrain([j])) - loss(run.model) for j in idx])
    np.testing.assert_allclose(loo, literal, rtol=1e-9, atol=1e-15)
    assert np.abs(literal).min() > 0
    both = sgi.influence(run, [val, sgi.PerExample(val)], method="loo", indices=idx)
    assert both.shape == (21, 4)
    np.testing.assert_allclose(both[0], literal, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(both[1:].mean(0), literal, rtol=1e-9, atol=1e-15)


def literal_tracin(run, train, query, every=1, self_influence=False):
    """TracIn as its definition reads: a loop over steps (or checkpoints) and instances, each
    gradient from a one-instance forward; ``query(model, grad_of)`` gives u at that step."""
    model = run.objective().model
    params = list(model.parameters())
    expected = torch.zeros(len(train[0]), dtype=torch.float64)

    def grad_of(loss):
        return torch.cat([x.flatten() for x in torch.autograd.grad(loss, params)])

    for t in range(0, run.num_steps, every):
        torch.nn.utils.vector_to_parameters(run.store[t], params)
        u = None if self_influence else query(model, grad_of)
        members = run.batches[t].tolist() if every == 1 else range(len(train[0]))
        weight = run.lrs[t] / len(run.batches[t]) if every == 1 else \
            every * run.lrs[t] / len(train[0])
        for j in members:
            loss = F.cross_entropy(model(train[0][j:j + 1]), train[1][j:j + 1])
            g = grad_of(loss + 0.005 * sum(p.square().sum() for p in params))
            expected[j] += weight * ((g @ g) if self_influence else (u @ g))
    return expected.numpy()


def test_no_hessian_estimator_is_algorithm_2_with_u_fixed_and_tracin_is_as_published():
    """sgd-nohessian: Σ_t η_t/|S_t| ⟨u, ∇ℓ_j(θ[t])⟩ with u = ∇Q(θ[T]); TracIn: the same with
    u = ∇Q(θ[t]); TracInCP every 2nd step over all instances; self-influence ‖∇ℓ_j‖²."""
    train, val = problem(None, seed=1)
    torch.manual_seed(0)
    run = sgi.fit(mlp(4, hidden=(5,)).double(), train, epochs=2, batch_size=4, lr=0.3,
                  weight_decay=0.01)
    u_T = torch.cat([g.flatten() for g in torch.autograd.grad(
        F.cross_entropy(run.model(val[0]), val[1]), list(run.model.parameters()))])
    fixed = literal_tracin(run, train, lambda m, grad_of: u_T)
    nohessian = sgi.influence(run, val, method="sgd-nohessian")
    np.testing.assert_allclose(nohessian, fixed, rtol=1e-10, atol=1e-16)
    assert np.abs(nohessian - sgi.influence(run, val)).max() > 1e-3 * np.abs(nohessian).max()

    def query(m, grad_of):  # u_t = ∇Q(θ[t])
        return grad_of(F.cross_entropy(m(val[0]), val[1]))
    tracin = sgi.influence(run, val, method="tracin")
    np.testing.assert_allclose(tracin, literal_tracin(run, train, query), rtol=1e-10,
                               atol=1e-16)
    assert np.abs(tracin - nohessian).max() > 1e-3 * np.abs(tracin).max()
    np.testing.assert_allclose(sgi.influence(run, val, method="tracin", every=2),
                               literal_tracin(run, train, query, every=2), rtol=1e-10,
                               atol=1e-16)
    own = sgi.influence(run, None, method="tracin", self_influence=True)
    np.testing.assert_allclose(own, literal_tracin(run, train, None, self_influence=True),
                               rtol=1e-10)
    assert (own > 0).all()


def test_influence_function_exact_matches_closed_form_linear_regression():
    """Squared loss: H = (2/N) Σ x̃ x̃ᵀ + αI, ∇ℓ_j = 2 (x̃_jᵀθ - y_j) x̃_j + αθ (x̃ = [x, 1])."""
    train, val = problem(None, seed=2, regression=True)
    torch.manual_seed(0)
    alpha, lam = 0.05, 0.1
    run = sgi.fit(torch.nn.Linear(4, 1).double(), train, loss="mse", epochs=5, batch_size=5,
                  lr=0.05, weight_decay=alpha)
    Xa = torch.cat([train[0], torch.ones(30, 1, dtype=torch.float64)], 1)
    theta = torch.cat([run.model.weight.detach().flatten(), run.model.bias.detach()])
    H = 2 / 30 * Xa.T @ Xa + alpha * torch.eye(5, dtype=torch.float64)
    G = 2 * (Xa @ theta - train[1])[:, None] * Xa + alpha * theta
    Xv = torch.cat([val[0], torch.ones(20, 1, dtype=torch.float64)], 1)
    u = 2 / 20 * ((Xv @ theta - val[1])[:, None] * Xv).sum(0)
    expected = G @ torch.linalg.solve(H + lam * torch.eye(5, dtype=torch.float64), u) / 30
    scores = sgi.influence(run, val, method="influence-function", damping=lam)
    np.testing.assert_allclose(scores, expected.numpy(), rtol=1e-10, atol=1e-16)


@pytest.mark.parametrize("solver", ["cg", "lissa"])
def test_influence_function_solvers_match_exact(solver):
    train, val = problem(None, seed=3)
    torch.manual_seed(0)
    run = sgi.fit(logistic_regression(4).double(), train, epochs=3, batch_size=5, lr=0.2,
                  weight_decay=0.01)
    exact = sgi.influence(run, val, method="influence-function", damping=0.01)
    other = sgi.influence(run, val, method="influence-function", solver=solver, damping=0.01,
                          **({"lissa_depth": 3000} if solver == "lissa" else {}))
    np.testing.assert_allclose(other, exact, rtol=1e-6 if solver == "lissa" else 1e-8,
                               atol=1e-6 * np.abs(exact).max())


def test_bad_estimator_options_are_refused():
    train, val = problem(None)
    run = sgi.fit(logistic_regression(4).double(), train, epochs=1, batch_size=5, lr=0.1)
    with pytest.raises(ValueError, match="unknown method 'magic'.*'sgd', 'sgd-nohessian'"):
        sgi.influence(run, val, method="magic")
    with pytest.raises(TypeError, match="takes no option \\['solver'\\]"):
        sgi.influence(run, val, solver="cg")
    with pytest.raises(ValueError, match="unknown solver"):
        sgi.influence(run, val, method="influence-function", solver="qr")
    with pytest.raises(IndexError, match=r"\[0, 30\)"):
        sgi.influence(run, val, method="loo", indices=[30])


def test_leave_out_of_sets_is_literal_retraining_and_lds_is_spearman_per_query():
    train, val = problem(None, seed=3)
    torch.manual_seed(0)
    run = sgi.fit(mlp(4, hidden=(5,)).double(), train, epochs=2, batch_size=4, lr=0.3,
                  momentum=0.5)
    rng = np.random.default_rng(0)
    masks = [rng.random(30) < 0.5 for _ in range(6)]
    true = sgi.leave_out(run, sgi.PerExample(val), masks)  # (20, 6)
    base = F.cross_entropy(run.model(val[0]), val[1], reduction="none").detach().numpy()
    for k, mask in enumerate(masks):  # a literal loop of retrainings
        model = run.retrain(mask)
        with torch.no_grad():
            loss = F.cross_entropy(model(val[0]), val[1], reduction="none").numpy()
        np.testing.assert_allclose(true[:, k], loss - base, rtol=1e-9, atol=1e-15)
    scores = sgi.influence(run, sgi.PerExample(val))  # (20, 30)
    predicted = np.stack([scores[:, m].sum(1) for m in masks])  # (6, 20)
    expected = np.mean([stats.spearmanr(predicted[:, z], true[z]).statistic
                        for z in range(len(val[0]))])
    assert metrics.lds(predicted, true.T) == pytest.approx(expected)
    assert metrics.lds(predicted[:, 0], true[0]) == pytest.approx(
        stats.spearmanr(predicted[:, 0], true[0]).statistic)
