"""The compiled SGD kernel against torch autograd, brute-force sampling checks and a planted-factor matrix."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch
import torch.nn.functional as F

from recsys.errors import UserInputError
from recsys.models.compiled_sgd import (
    CompiledSGD,
    _alias_table,
    _draw_block_negative,
    _logistic,
    _stratify,
    positives_csr,
    sgd_epoch,
)

REG, FLIP_REG, LR, FLIP_LR = 0.1, 0.05, 0.3, 0.2


def _reference_loss(objective, U, V, P, Q, u, i, j):
    """The per-triple loss as the issue states it, with stop-gradients as .detach()."""
    x_i, x_j = U[u] @ V[i], U[u] @ V[j]
    if objective == "bpr":
        return -F.logsigmoid(x_i - x_j)
    if objective == "bpo":
        return -F.logsigmoid(x_i) - F.logsigmoid(-x_j)
    gamma_i, gamma_j = P[u] @ Q[i], P[u] @ Q[j]
    rho_i, rho_j = torch.sigmoid(gamma_i), torch.sigmoid(gamma_j)
    positive = (1 - rho_i).detach() * F.logsigmoid(x_i) + torch.sigmoid(x_i).detach() * F.logsigmoid(-gamma_i)
    negative = (F.logsigmoid(-x_j) + rho_j.detach() * F.logsigmoid(x_j)
                + torch.sigmoid(x_j).detach() * F.logsigmoid(gamma_j))
    return -(positive + negative)


def _reference_steps(objective, tables, u, i, j, n_steps):
    """`n_steps` autograd SGD steps on loss + (reg/2)|touched rows|^2, in float64; returns tables and mean loss."""
    U, V, P, Q = (torch.tensor(t, dtype=torch.float64, requires_grad=True) for t in tables)
    losses = []
    for _ in range(n_steps):
        data = _reference_loss(objective, U, V, P, Q, u, i, j)
        l2 = REG / 2 * (U[u].square().sum() + V[i].square().sum() + V[j].square().sum())
        if objective == "nbpo":
            l2 = l2 + FLIP_REG / 2 * (P[u].square().sum() + Q[i].square().sum() + Q[j].square().sum())
        (data + l2).backward()
        with torch.no_grad():
            for table, lr in ((U, LR), (V, LR), (P, FLIP_LR), (Q, FLIP_LR)):
                if table.grad is not None:
                    table -= lr * table.grad
                    table.grad = None
        losses.append(data.item())
    return [t.detach().numpy() for t in (U, V, P, Q)], float(np.mean(losses))


@pytest.mark.parametrize("objective", ["bpr", "bpo", "nbpo"])
@pytest.mark.parametrize("n_neg", [1, 3])
def test_each_step_equals_the_autograd_sgd_step(objective, n_neg):
    # one positive (user 1, item 0) among two items: every negative must be item 1, so the
    # epoch is exactly n_neg steps on the triple (1, 0, 1)
    rng = np.random.default_rng(3)
    tables = [(rng.standard_normal(shape) * 0.6).astype(np.float32) for shape in ((3, 8), (2, 8), (3, 4), (2, 4))]
    before = [t.copy() for t in tables]
    indptr, indices = positives_csr(np.array([1]), np.array([0]), n_users=3, n_items=2)
    loss = sgd_epoch(tables[0], tables[1], np.array([1]), np.array([0]), indptr, indices, objective=objective,
                     lr=LR, reg=REG, n_neg=n_neg, seed=0, flip_user_w=tables[2], flip_item_w=tables[3],
                     flip_reg=FLIP_REG, flip_lr=FLIP_LR, num_threads=1)
    expected, expected_loss = _reference_steps(objective, before, 1, 0, 1, n_neg)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    for got, want in zip(tables, expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    moved = [np.abs(t - o).max() for t, o in zip(tables, before)]
    assert min(moved[:2]) > 1e-3 and (objective != "nbpo" or min(moved[2:]) > 1e-3)
    np.testing.assert_array_equal(tables[0][[0, 2]], before[0][[0, 2]])  # untouched users stay


def _random_positives(rng, n_users, n_items):
    degree = rng.integers(1, n_items - 1, size=n_users)
    users = np.repeat(np.arange(n_users), degree)
    items = np.concatenate([rng.choice(n_items, d, replace=False) for d in degree])
    return users, items


@pytest.mark.parametrize("weighted", [False, True])
def test_negatives_are_never_positives_and_follow_the_distribution(weighted):
    rng = np.random.default_rng(0)
    n_users, n_items = 40, 30
    users, items = _random_positives(rng, n_users, n_items)
    indptr, indices = positives_csr(users, items, n_users, n_items)
    weights = rng.uniform(0, 3, n_items) if weighted else None
    if weighted:
        weights[5] = 0.0
    sampler = CompiledSGD(users, items, indptr, indices, n_items, objective="bpr", lr=0.1, reg=0.0,
                          item_weights=weights, num_threads=1)
    positive = np.zeros((n_users, n_items), dtype=bool)
    positive[users, items] = True

    drawn_for = rng.integers(0, n_users, 20_000)
    negatives = sampler.sample_negatives(drawn_for, seed=1)
    assert not positive[drawn_for, negatives].any()

    # one user's draws against the distribution restricted to its non-positives
    user = int(np.argmax(positive.sum(1) < n_items // 2))
    draws = sampler.sample_negatives(np.full(40_000, user), seed=2)
    eligible = ~positive[user]
    prob = (np.ones(n_items) if weights is None else weights) * eligible
    prob /= prob.sum()
    counts = np.bincount(draws, minlength=n_items)
    assert counts[prob == 0].sum() == 0
    keep = prob > 0
    assert scipy.stats.chisquare(counts[keep], prob[keep] * len(draws)).pvalue > 1e-3


def test_alias_table_reproduces_its_distribution_exactly():
    prob = np.random.default_rng(1).pareto(1.0, 500) + 1e-9
    prob[[3, 77]] = 0.0
    prob /= prob.sum()
    alias_prob, alias_item = _alias_table(prob)
    implied = alias_prob.copy()
    np.add.at(implied, alias_item, 1.0 - alias_prob)
    np.testing.assert_allclose(implied / len(prob), prob, atol=1e-12)


def test_the_loss_series_matches_log_sigmoid():
    for t in np.concatenate([np.linspace(-30, 30, 2001), [0.0, 1e-12, -1e-12, 700.0, -700.0]]):
        s, neg_log = _logistic(t)
        assert s == pytest.approx(scipy.special.expit(t), rel=1e-12, abs=1e-300)
        assert neg_log == pytest.approx(-scipy.special.log_expit(t), rel=1e-8, abs=2e-9)


def _planted_data(rng, n_users=300, n_items=200, rank=4, per_user=25):
    """Users pick items by softmax of planted factor scores plus popularity; one in five held out."""
    truth = rng.standard_normal((n_users, rank)) @ rng.standard_normal((rank, n_items)) / np.sqrt(rank)
    truth += np.log(np.arange(1, n_items + 1) ** -0.5)
    picks = np.argsort(-(2 * truth + rng.gumbel(size=truth.shape)), axis=1)[:, :per_user]
    held_out = rng.random(picks.shape) < 0.2
    users = np.repeat(np.arange(n_users), per_user).reshape(picks.shape)
    return (users[~held_out], picks[~held_out]), (users[held_out], picks[held_out])


def _auc(U, V, train, test):
    """Mean over held-out pairs of the fraction of the user's non-train items scored below the held-out item."""
    scores = U @ V.T
    scores[train] = np.nan
    users, items = test
    target = scores[users, items][:, None]
    others = scores[users]
    return float(np.nanmean((others < target).sum(1) / (np.isfinite(others).sum(1) - 1)))


@pytest.mark.parametrize("objective", ["bpr", "bpo", "nbpo"])
def test_training_lowers_the_loss_and_ranks_held_out_items(objective):
    rng = np.random.default_rng(7)
    (train_u, train_i), test = _planted_data(rng)
    n_users, n_items = 300, 200
    indptr, indices = positives_csr(train_u, train_i, n_users, n_items)
    U = (rng.standard_normal((n_users, 16)) * 0.1).astype(np.float32)
    V = (rng.standard_normal((n_items, 16)) * 0.1).astype(np.float32)
    P = (rng.standard_normal((n_users, 4)) * 0.01).astype(np.float32)
    Q = (rng.standard_normal((n_items, 4)) * 0.01).astype(np.float32)
    P[:, 0], Q[:, 0] = 1.0, -6.2  # rho starts near sigma(-6.2) = 0.002, as the issue asks
    trainer = CompiledSGD(train_u, train_i, indptr, indices, n_items, objective=objective, lr=0.05, reg=0.01,
                          n_neg=2, flip_reg=0.1, num_threads=2)
    train = np.zeros((n_users, n_items), dtype=bool)
    train[train_u, train_i] = True
    auc_before = _auc(U, V, train, test)
    losses = [trainer.epoch(U, V, seed=e, flip_user_w=P, flip_item_w=Q) for e in range(40)]
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:2])
    popularity = np.bincount(train_i, minlength=n_items).astype(np.float32)
    auc_popularity = _auc(np.ones((n_users, 1), np.float32), popularity[:, None], train, test)
    auc_after = _auc(U, V, train, test)
    assert abs(auc_before - 0.5) < 0.05
    assert auc_after > auc_popularity + 0.03 and auc_after > 0.75


def _train_three_epochs(start, users, items, indptr, indices, seed, **options):
    tables = [t.copy() for t in start]
    trainer = CompiledSGD(users, items, indptr, indices, len(start[1]), objective="nbpo", lr=0.05, reg=0.01, n_neg=2,
                          flip_reg=0.01, **options)
    losses = [trainer.epoch(tables[0], tables[1], seed=seed + e, flip_user_w=tables[2], flip_item_w=tables[3])
              for e in range(3)]
    return tables, losses


@pytest.mark.parametrize("weighted", [False, True])
def test_the_default_schedule_gives_identical_weights_at_any_thread_count(weighted):
    rng = np.random.default_rng(0)
    n_users, n_items = 120, 300
    users, items = _random_positives(rng, n_users, n_items)
    indptr, indices = positives_csr(users, items, n_users, n_items)
    start = [(rng.standard_normal(shape) * 0.1).astype(np.float32)
             for shape in ((n_users, 8), (n_items, 8), (n_users, 2), (n_items, 2))]
    weights = np.arange(1, n_items + 1) if weighted else None
    runs = [_train_three_epochs(start, users, items, indptr, indices, 5, item_weights=weights, num_threads=threads)
            for threads in (1, 2, 3, 1)]
    assert CompiledSGD(users, items, indptr, indices, n_items, objective="bpr", lr=0.1, reg=0.0).blocks == 4
    for tables, losses in runs[1:]:
        assert losses == runs[0][1]
        for x, y in zip(tables, runs[0][0]):
            np.testing.assert_array_equal(x, y)
    other_seed, _ = _train_three_epochs(start, users, items, indptr, indices, 6, item_weights=weights)
    assert not np.array_equal(other_seed[0], runs[0][0][0])
    assert all(np.abs(t - s).max() > 1e-3 for t, s in zip(runs[0][0], start))  # every table trained


def test_hogwild_on_one_thread_gives_identical_weights():
    rng = np.random.default_rng(0)
    users, items = _random_positives(rng, 50, 40)
    indptr, indices = positives_csr(users, items, 50, 40)
    start = [(rng.standard_normal(shape) * 0.1).astype(np.float32) for shape in ((50, 8), (40, 8), (50, 2), (40, 2))]
    options = {"item_weights": np.arange(1, 41), "num_threads": 1, "schedule": "hogwild"}
    (a, loss_a), (b, loss_b) = (_train_three_epochs(start, users, items, indptr, indices, 5, **options) for _ in range(2))
    assert loss_a == loss_b
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_stratified_negatives_are_uniform_over_the_non_positives_across_epochs():
    """A negative is drawn inside the positive's item block; over the epochs' random blocks it is uniform."""
    rng = np.random.default_rng(4)
    n_users, n_items, blocks = 6, 40, 4
    users, items = _random_positives(rng, n_users, n_items)
    indptr, indices = positives_csr(users, items, n_users, n_items)
    pairs = np.stack([users, items], axis=1).astype(np.int32)
    user = int(np.argmax(np.diff(indptr)))  # the user with the most positives: the most rejections
    positive = indices[indptr[user]:indptr[user + 1]]
    item = int(positive[0])
    empty = (np.empty(0), np.empty(0, dtype=np.int32))
    counts = np.zeros(n_items, dtype=np.int64)
    for epoch in range(3000):
        _, _, item_block, block_items, start, can_draw = _stratify(pairs, indptr, indices, n_items, blocks, epoch,
                                                                   empty[0])
        block = item_block[item]
        assert np.array_equal(np.sort(block_items[start[block]:start[block + 1]]),
                              np.flatnonzero(item_block == block))
        if not can_draw[user, block]:
            continue
        state = np.uint64(epoch)
        for _ in range(5):
            state, negative = _draw_block_negative(np.uint64(state), user, indptr, indices, block, item_block, block_items,
                                                   start[block], start[block + 1], *empty)
            assert item_block[negative] == block
            counts[negative] += 1
    assert counts[positive].sum() == 0
    eligible = np.setdiff1d(np.arange(n_items), positive)
    assert scipy.stats.chisquare(counts[eligible]).pvalue > 1e-3


def test_updates_land_in_a_torch_parameter_in_place():
    users, items = np.array([0, 1]), np.array([0, 2])
    indptr, indices = positives_csr(users, items, 2, 3)
    user_w = torch.nn.Parameter(torch.full((2, 4), 0.1))
    item_w = torch.nn.Parameter(torch.full((3, 4), 0.1))
    before = item_w.detach().clone()
    sgd_epoch(user_w, item_w, users, items, indptr, indices, objective="bpr", lr=0.5, reg=0.0, seed=0)
    assert not torch.equal(item_w.detach(), before)


def test_bad_input_gets_a_clear_error():
    users, items = np.array([0, 0, 1]), np.array([0, 1, 1])
    indptr, indices = positives_csr(users, items, 2, 2)
    args = (users, items, indptr, indices, 2)
    with pytest.raises(UserInputError, match="objective"):
        CompiledSGD(*args, objective="wrmf", lr=0.1, reg=0.0)
    with pytest.raises(UserInputError, match="schedule"):
        CompiledSGD(*args, objective="bpr", lr=0.1, reg=0.0, schedule="locked")
    with pytest.raises(UserInputError, match="n_neg"):
        CompiledSGD(*args, objective="bpr", lr=0.1, reg=0.0, n_neg=0)
    with pytest.raises(UserInputError, match="user 0 has no item left"):  # user 0 holds both items
        CompiledSGD(*args, objective="bpr", lr=0.1, reg=0.0)
    with pytest.raises(UserInputError, match="sorted"):
        CompiledSGD(users[1:], items[1:], np.array([0, 2, 3]), np.array([1, 0, 1]), 3, objective="bpr", lr=0.1, reg=0.0)
    trainer = CompiledSGD(users[1:], items[1:], np.array([0, 1, 2]), np.array([0, 1]), 3, objective="nbpo",
                          lr=0.1, reg=0.0)
    with pytest.raises(UserInputError, match="contiguous"):
        trainer.epoch(np.zeros((8, 2), np.float32)[::4], np.zeros((3, 2), np.float32), seed=0)
    with pytest.raises(UserInputError, match="flip_user_w"):
        trainer.epoch(np.zeros((2, 2), np.float32), np.zeros((3, 2), np.float32), seed=0)
