"""sgi.repair and how it chooses k: the tests' arithmetic, bisection on constructed curves,
rounds that go on exactly while the target still fails, budgets, and bad input refused at the
entry point in one line."""

import numpy as np
import pytest
import torch

import sgdinfluence as sgi
from sgdinfluence.app.models import mlp
from sgdinfluence.core.repair import Measured, above, as_good, better, choose_k, exceeds, pick

# --- the tests' arithmetic ----------------------------------------------------------------------


def mistakes(n, wrong, offset=0):
    a = np.zeros(n, dtype=bool)
    a[offset:offset + wrong] = True
    return a


def test_mcnemar_and_the_two_proportion_test():
    before = Measured(val=mistakes(100, 20))
    # 12 fixed, 2 broken: 10 > 1.645 * sqrt(14) = 6.2
    assert better(before, Measured(val=mistakes(100, 10, offset=12)))
    # 5 fixed, 1 broken: 4 > 1.645 * sqrt(6) = 4.03 fails, by a hair
    assert not better(before, Measured(val=mistakes(100, 16, offset=5)))
    # 8% of 100 against 3% of 300: z = 0.05 / sqrt(.0425 * .9575 * (1/100 + 1/300)) = 2.1
    assert exceeds(mistakes(100, 8), mistakes(300, 9))
    # 6% against 3%: z = 1.35
    assert not exceeds(mistakes(100, 6), mistakes(300, 9))
    assert not exceeds(mistakes(10, 0), mistakes(10, 0))  # no mistakes at all: nothing above
    assert above(Measured(val=mistakes(300, 9), target=mistakes(100, 8)))
    assert not above(Measured(val=mistakes(300, 9)))  # no target: nothing to repair


def test_a_worse_target_is_not_hidden_by_the_churn_of_a_large_validation_set():
    """Retraining flips validation instances both ways: 40 one way and 40 the other of 1000.
    Tested together with them, 13 more target mistakes of 200 pass for noise at 5% (13 <
    1.645 sqrt(93)); apart, they are 3.6 standard errors (13 > 1.645 sqrt(13))."""
    best = Measured(val=mistakes(1000, 50), target=mistakes(200, 17))
    churned = Measured(val=mistakes(1000, 50, offset=40), target=mistakes(200, 30))
    pooled = Measured(val=np.concatenate([churned.val, churned.target]))
    assert not better(pooled, Measured(val=np.concatenate([best.val, best.target])))
    assert not as_good(churned, best)
    # two more target mistakes are noise (2 < 1.645 sqrt(2)); four are not (4 > 3.29)
    assert as_good(Measured(val=churned.val, target=mistakes(200, 19)), best)
    assert not as_good(Measured(val=churned.val, target=mistakes(200, 21)), best)


def test_a_repair_that_costs_validation_accuracy_is_not_admitted():
    """The target's 40 fixed mistakes would carry 10 more validation mistakes of 100 through
    a test of both together (50 - 10 > 1.645 sqrt(60)); apart, validation is 10 worse."""
    base = Measured(val=mistakes(100, 5), target=mistakes(100, 50))
    costly = Measured(val=mistakes(100, 15), target=mistakes(100, 10))
    assert better(base, costly)
    assert pick({0: base, 30: costly}) == 0
    gentle = Measured(val=mistakes(100, 6), target=mistakes(100, 10))
    assert pick({0: base, 30: costly, 20: gentle}) == 20


def monotone(needed=37, n_val=400, n_target=200, clean_cost=150):
    """A constructed curve: removing k rows fixes the target in proportion up to ``needed``;
    past ``clean_cost`` every further 25 rows break one more validation instance."""
    def measure(k):
        target_wrong = round(n_target * 0.9 * max(0.0, 1 - k / needed))
        val_wrong = 12 + max(0, k - clean_cost) // 25
        return Measured(val=mistakes(n_val, val_wrong), target=mistakes(n_target, target_wrong))
    return measure


def test_the_grid_alone_removes_three_times_what_is_needed_and_bisection_does_not():
    measure = monotone(needed=37)
    grid = (10, 30, 100, 300)
    k_grid, _ = choose_k(measure, grid, refine=False)
    assert k_grid == 100  # 30 leaves 34 target mistakes, significantly more than 100's none
    k, curve = choose_k(measure, grid)
    assert 37 <= k <= 40, curve.keys()  # within the 10% resolution of what is needed
    assert len(curve) - 1 - len(grid) <= 6  # at most 6 probes
    assert measure(k).target.sum() <= 2


def test_bisection_stops_at_the_smallest_k_not_significantly_worse_than_the_best():
    measure = monotone(needed=200, clean_cost=2000)  # fully fixed only at 200
    k, curve = choose_k(measure, (10, 30, 100, 300, 1000))
    best = min(curve, key=lambda j: (curve[j].error, j))
    assert k <= best and as_good(curve[k], curve[best])  # as good, statistically
    below = max(j for j in curve if j < k)
    assert not as_good(curve[below], curve[best])  # and the next k below is not
    assert k - below <= max(1, 0.1 * k) and 180 <= k <= 200


def test_validation_alone_chooses_the_smallest_k_not_significantly_worse_than_the_best():
    def measure(k):  # validation only: 60 mistakes, 40 from k = 100 on, 35 at 300, 34 at 1000
        wrong = 60 - 20 * (k >= 100) - 5 * (k >= 300) - 1 * (k >= 1000)
        return Measured(val=mistakes(1000, wrong))
    k, curve = choose_k(measure, (10, 30, 100, 300, 1000), refine=False)
    assert k == 300  # one more than the best (1000): not significant (1 < 1.645)
    assert not as_good(curve[100], curve[1000])  # 6 more: 6 > 1.645 sqrt(6)


def test_a_minimum_between_grid_points_is_probed():
    def measure(k):  # a valley at 60: 30 and 100 both miss it
        wrong = 40 - min(k, 60) // 2 + max(0, k - 60)
        return Measured(val=mistakes(400, max(0, wrong)), target=mistakes(200, max(0, wrong)))
    k, curve = choose_k(measure, (30, 100))
    assert 30 < k < 100, sorted(curve)
    # found near the valley: far better than both grid points (25 and 50 mistakes)
    assert measure(k).val.sum() <= 17 and any(55 <= j <= 65 for j in curve)


def test_nothing_is_removed_when_no_k_helps_significantly():
    measure = lambda k: Measured(val=mistakes(400, 20 + (k % 3)))  # noqa: E731 (noise)
    k, curve = choose_k(measure, (10, 30, 100))
    assert k == 0 and pick(curve) == 0


# --- repair in rounds ---------------------------------------------------------------------------


def backdoor(n=600, poisoned=24, seed=0):
    """A 2-class table whose poisoned class-0 rows carry a trigger (x0 = x1 = 3) and label 1;
    the target: triggered class-0 rows with their true label."""
    rng = np.random.default_rng(seed)

    def clean(m):
        X = rng.normal(size=(m, 6)).astype(np.float32)
        return X, (X[:, 2] + X[:, 3] > 0).astype(np.int64)

    X, y = clean(n)
    bad = rng.choice(np.flatnonzero(y == 0), poisoned, replace=False)
    X[bad, :2], y[bad] = 3.0, 1
    T, _ = clean(600)
    T = T[T[:, 2] + T[:, 3] < -0.3][:160]
    T[:, :2] = 3.0
    t, zeros = torch.tensor, torch.zeros(len(T), dtype=torch.long)
    Xv, yv = clean(400)
    torch.manual_seed(seed)
    run = sgi.fit(mlp(6, 2, hidden=(32,)), (t(X), t(y)), epochs=12, batch_size=32, lr=0.1,
                  seed=seed)
    half = len(T) // 2
    return run, bad, (t(T[:half]), zeros[:half]), (t(T[half:]), zeros[half:]), (t(Xv), t(yv))


@pytest.fixture(scope="module")
def poisoned():
    return backdoor()


def test_one_round_is_not_enough_and_the_rounds_go_on_until_the_target_is_repaired(poisoned):
    run, bad, target, holdout, val = poisoned
    # a grid that can remove at most 10 rows a round: one round cannot remove 24 poisoned
    once = sgi.repair(run, target, holdout, val=val, ks=(5, 10), refine=False, rounds=1)
    assert once.stopped == "rounds" and len(once.removed) <= 10
    assert above(once.after)  # still failing: the target's error well above validation's
    fixed = sgi.repair(run, target, holdout, val=val, ks=(5, 10), refine=False)
    assert fixed.stopped == "fixed" and len(fixed.rounds) >= 2
    assert not above(fixed.after) and fixed.after.target_error < 0.1
    assert fixed.before.target_error > 0.5
    assert np.isin(bad, fixed.removed).sum() >= 18 and len(fixed.removed) <= 10 * len(
        fixed.rounds)
    # every round ranked the run of the kept rows: the removed rows are distinct
    assert len(set(fixed.removed.tolist())) == len(fixed.removed)
    assert [r.round for r in fixed.rounds] == list(range(1, len(fixed.rounds) + 1))
    for r in fixed.rounds[1:]:  # a round starts from a new training of the kept rows
        assert r.start.target_error is not None
    kept_rounds = [r for r in fixed.rounds if not r.undone]
    assert kept_rounds[-1].after.target_error == fixed.after.target_error
    assert sum(r.k for r in kept_rounds) == len(fixed.removed)
    assert fixed.trainings == sum(r.trainings for r in fixed.rounds)


def test_the_default_grid_with_bisection_removes_little_more_than_the_poisoned(poisoned):
    run, bad, target, holdout, val = poisoned
    fixed = sgi.repair(run, target, holdout, val=val)
    assert fixed.after.target_error < 0.1 and not above(fixed.after)
    assert len(fixed.removed) <= 2 * len(bad)  # the grid point above 24 is 30, then 100
    assert np.isin(bad, fixed.removed).sum() >= 0.75 * len(bad)
    k = fixed.rounds[0].k
    assert k not in (1, 3, 10, 30, 100) or k == 30  # a bisected k, or the grid's right one


def test_budgets_stop_the_rounds(poisoned):
    run, _, target, holdout, val = poisoned
    rows = sgi.repair(run, target, holdout, val=val, ks=(5,), refine=False, max_removed=12)
    assert rows.stopped == "rows" and len(rows.removed) == 10
    trainings = sgi.repair(run, target, holdout, val=val, ks=(5,), refine=False,
                           max_trainings=3)
    # round 1: one retraining and a new run; round 2: one retraining, and no budget for more
    assert trainings.stopped == "trainings" and trainings.trainings == 3
    assert len(trainings.removed) == 10


def test_a_fit_callable_and_fresh_rounds(poisoned):
    run, _, target, holdout, val = poisoned
    X, y = run.train.X, run.train.y
    calls = []

    def fit(keep):
        calls.append(None if keep is None else len(keep))
        rows = torch.arange(len(y)) if keep is None else torch.as_tensor(keep)
        torch.manual_seed(len(calls))
        return sgi.fit(mlp(6, 2, hidden=(32,)), (X[rows], y[rows]), epochs=12, batch_size=32,
                       lr=0.1, seed=len(calls))

    fixed = sgi.repair(fit, target, holdout, val=val, retrain="fresh")
    removed = np.cumsum([r.k for r in fixed.rounds])
    assert calls[0] is None and calls[1:] == [600 - int(c) for c in removed]
    assert len(fixed.removed) == sum(r.k for r in fixed.rounds if not r.undone)
    assert fixed.model is fixed.run.model  # fresh: the result is the new training
    assert fixed.after.target_error < 0.15


def test_bad_input_is_refused_in_one_line(poisoned):
    run, _, target, holdout, val = poisoned
    cases = [
        (dict(rounds=0), "rounds must be 'auto' or an int >= 1, got 0"),
        (dict(rounds="forever"), "rounds must be"),
        (dict(retrain="last"), "retrain must be one of"),
        (dict(ks=(0, 10)), "ks must be ints >= 1"),
        (dict(ks=(2.5,)), "ks must be ints >= 1"),
        (dict(max_removed=600), "max_removed must be below the training set's 600"),
        (dict(max_trainings=0), "max_trainings must be an int >= 1"),
        (dict(method="tracin"), "method must be one of"),
        (dict(z=-1), "z must be a finite number > 0"),
        (dict(refit=3), "refit must be a callable"),
    ]
    for options, message in cases:
        with pytest.raises((sgi.Error, TypeError), match=message) as e:
            sgi.repair(run, target, holdout, val=val, **options)
        assert "\n" not in str(e.value)
    with pytest.raises(TypeError, match="run_or_fit must be a Run"):
        sgi.repair("model.run", target, holdout, val=val)
    with pytest.raises(sgi.Error, match="holdout: X has 80 instances but y has 3"):
        sgi.repair(run, target, (holdout[0], holdout[1][:3]), val=val)
    with pytest.raises(sgi.Error, match="val is required"):
        sgi.repair(run, target, holdout, val=None)
    with pytest.raises(sgi.Error, match="scores of shape"):
        sgi.repair(run, target, holdout, val=val, method=lambda r, q: np.zeros(3))


def test_a_loss_without_classes_needs_its_own_mistakes():
    X = torch.randn(60, 3)
    run = sgi.fit(torch.nn.Linear(3, 1), (X, X.sum(1, keepdim=True)), "mse", epochs=1,
                  batch_size=10, lr=0.1)
    with pytest.raises(sgi.Error, match="pass mistakes"):
        sgi.repair(run, (X, X), (X, X), val=(X, X), rounds=1)


def test_a_target_harder_than_validation_by_nature_stops_the_rounds(poisoned):
    """A quarter of the held-out target labelled against the trigger-free truth: no model gets
    it below 25%, far above validation's error. Once the poisoned rows are gone, the rounds
    stop instead of removing clean rows after an error no removal can lower."""
    run, bad, target, holdout, val = poisoned
    X, y = holdout
    y = y.clone()
    y[: len(y) // 4] = 1
    fixed = sgi.repair(run, target, (X, y), val=val)
    assert fixed.stopped in ("stalled", "no gain"), fixed.why
    assert above(fixed.after)  # still above validation: the floor
    assert 0.2 <= fixed.after.target_error <= 0.35
    assert np.isin(bad, fixed.removed).sum() >= 0.5 * len(bad)
    assert len(fixed.removed) <= 2 * len(bad) and len(fixed.rounds) <= 3


def test_the_rounds_stop_once_a_round_no_longer_lowers_the_target(monkeypatch):
    """The loop alone, on scripted measurements: each round removes 5 rows and a new training
    of the kept rows gets 60, 30, 28, ... of 100 held-out targets wrong (validation: 5).
    28 after 30 is no significant progress, though still far above validation: stop there,
    instead of removing rows round after round for the last few mistakes."""
    import sgdinfluence.core.repair as repair_module

    X = torch.randn(200, 6)
    y = (X[:, 0] > 0).long()
    wrong_after = iter([60, 30, 28, 27, 26, 25, 24, 23, 22, 21])

    def fit(keep):
        rows = torch.arange(200) if keep is None else torch.as_tensor(keep)
        run = sgi.fit(torch.nn.Linear(6, 2), (X[rows], y[rows]), epochs=1, batch_size=50,
                      lr=0.1)
        run.model.wrong = 90 if keep is None else next(wrong_after)
        return run

    def scripted(model, data):
        return mistakes(100, model.wrong if data == "holdout" else 5)

    def one_k(measure, ks, *, known, **options):
        return 5, {0: known[0], 5: known[0]}

    monkeypatch.setattr(repair_module, "choose_k", one_k)
    fixed = sgi.repair(fit, "target", "holdout", val="val", retrain="fresh",
                       mistakes=scripted, method=lambda run, q: np.zeros(run.num_train))
    assert [r.after.target_error for r in fixed.rounds] == [0.6, 0.3, 0.28]
    assert fixed.stopped == "stalled" and [r.undone for r in fixed.rounds] == [False] * 2 + [
        True]  # the third round's removal is undone: its rows stay, its model is not kept
    assert len(fixed.removed) == 10 and fixed.after.target_error == 0.3
