"""The MF backbone, the BPR/BPO/NBPO objectives and their gradients, and the two engines."""

import math

import numpy as np
import pytest
import torch

from recsys.errors import UserInputError
from recsys.models.diagnostics import auc
from recsys.models.implicit import ImplicitRecommender, triple_loss
from recsys.models.mf import MatrixFactorization
from recsys.models.popularity import PopularityRecommender


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_backbone_looks_up_rows_through_torchrec_and_scores_by_dot_product():
    torch.manual_seed(0)
    mf = MatrixFactorization(7, 5, 3, prefix="p_")
    users, items = torch.tensor([0, 6, 2]), torch.tensor([[4, 1], [0, 0], [3, 2]])
    U, V = mf.user_weight.detach().numpy(), mf.item_weight.detach().numpy()
    assert np.allclose(mf.embed_users(users).detach().numpy(), U[[0, 6, 2]])
    assert np.allclose(mf(users, items).detach().numpy(), np.einsum("bd,bnd->bn", U[[0, 6, 2]], V[items.numpy()]),
                       atol=1e-6)
    assert np.allclose(mf.score_all(users).detach().numpy(), U[[0, 6, 2]] @ V.T, atol=1e-6)
    assert [name for name, _ in mf.named_parameters()] == ["users.embedding_bags.p_user.weight",
                                                           "items.embedding_bags.p_item.weight"]


def test_flip_model_starts_near_rho_init():
    model = ImplicitRecommender(40, 30, objective="nbpo", embedding_dim=4, flip_dim=6, rho_init=0.002, init_std=0.01)
    users, items = torch.randint(0, 40, (500,)), torch.randint(0, 30, (500,))
    rho = model.flip_probability(users, items).numpy()
    assert np.allclose(rho, 0.002, rtol=0.05)


def _manual_gradients(objective, U, V, P, Q, i, j, l2, flip_l2):
    """d(loss)/d(rows) for one triple (user row U, items i and j), derived by hand from the docstring."""
    x_i, x_j = U @ V[i], U @ V[j]
    if objective == "bpr":
        d_i = _sigmoid(-(x_i - x_j))  # d objective / d x_i; d/dx_j is its negative
        d_j = -d_i
    elif objective == "bpo":
        d_i, d_j = _sigmoid(-x_i), -_sigmoid(x_j)
    else:
        s_i, s_j = _sigmoid(x_i), _sigmoid(x_j)
        r_i, r_j = _sigmoid(P @ Q[i]), _sigmoid(P @ Q[j])
        d_i, d_j = (1 - r_i) * (1 - s_i), r_j * (1 - s_j) - s_j
        e_i, e_j = -s_i * r_i, s_j * (1 - r_j)
    grads = {"U": -(d_i * V[i] + d_j * V[j]) + l2 * U, "Vi": -d_i * U + l2 * V[i], "Vj": -d_j * U + l2 * V[j]}
    if objective == "nbpo":
        grads.update(P=-(e_i * Q[i] + e_j * Q[j]) + flip_l2 * P, Qi=-e_i * P + flip_l2 * Q[i],
                     Qj=-e_j * P + flip_l2 * Q[j])
    return grads


@pytest.mark.parametrize("objective", ["bpr", "bpo", "nbpo"])
def test_autograd_gradients_equal_the_analytic_surrogate_gradients(objective):
    torch.manual_seed(3)
    model = ImplicitRecommender(4, 6, objective=objective, embedding_dim=5, flip_dim=3, init_std=0.7,
                                rho_init=0.2, l2=0.03, flip_l2=0.05)
    if model.flip is not None:  # move rho well away from its start so every term matters
        with torch.no_grad():
            model.flip.user_weight.normal_(0, 0.8)
            model.flip.item_weight.normal_(0, 0.8)
    u, i, j = 2, 1, 4
    model.loss(torch.tensor([u]), torch.tensor([i]), torch.tensor([[j]]))["loss"].backward()
    pref = model.preference
    weights = {name: t.detach().double().numpy() for name, t in
               [("U", pref.user_weight), ("V", pref.item_weight)]}
    if model.flip is not None:
        weights.update(P=model.flip.user_weight.detach().double().numpy(), Q=model.flip.item_weight.detach().double().numpy())
    expected = _manual_gradients(objective, weights["U"][u], weights["V"], weights.get("P", [None] * 4)[u],
                                 weights.get("Q"), i, j, 0.03, 0.05)
    grad_U, grad_V = pref.user_weight.grad.numpy(), pref.item_weight.grad.numpy()
    assert np.allclose(grad_U[u], expected["U"], atol=1e-6)
    assert np.allclose(grad_V[i], expected["Vi"], atol=1e-6) and np.allclose(grad_V[j], expected["Vj"], atol=1e-6)
    assert np.count_nonzero(grad_U.any(1)) == 1 and np.count_nonzero(grad_V.any(1)) == 2
    if objective == "nbpo":
        grad_P, grad_Q = model.flip.user_weight.grad.numpy(), model.flip.item_weight.grad.numpy()
        assert np.allclose(grad_P[u], expected["P"], atol=1e-6)
        assert np.allclose(grad_Q[i], expected["Qi"], atol=1e-6) and np.allclose(grad_Q[j], expected["Qj"], atol=1e-6)


def test_nbpo_with_no_flips_moves_preferences_like_bpo():
    x_pos = torch.tensor([[0.3], [-1.2]], requires_grad=True)
    x_neg = torch.tensor([[0.5, -0.1], [2.0, 0.0]], requires_grad=True)
    very_negative = torch.full((2, 1), -60.0), torch.full((2, 2), -60.0)
    nbpo = triple_loss("nbpo", x_pos, x_neg, *very_negative)
    bpo = triple_loss("bpo", x_pos, x_neg)
    # rho -> 0: the log rho term is huge in value, but the preference gradient is BPO's
    g_nbpo = torch.autograd.grad(nbpo.sum(), [x_pos, x_neg])
    g_bpo = torch.autograd.grad(bpo.sum(), [x_pos, x_neg])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g_nbpo, g_bpo))
    # BPR by hand: -log sigma(0.3 - 0.5) etc.
    bpr = triple_loss("bpr", x_pos, x_neg).detach().numpy()
    assert np.isclose(bpr[0, 0], -math.log(_sigmoid(0.3 - 0.5)))
    assert np.isclose(bpr[1, 1], -math.log(_sigmoid(-1.2 - 0.0)))


@pytest.mark.parametrize("objective", ["bpr", "nbpo"])
def test_compiled_engine_takes_the_same_step_as_autograd_sgd(objective):
    # One user, two items, item 0 positive: the kernel's only possible triple is (0, 0, 1).
    from recsys.models.compiled_sgd import CompiledSGD

    torch.manual_seed(1)
    model = ImplicitRecommender(1, 2, objective=objective, embedding_dim=4, flip_dim=2, init_std=0.5,
                                l2=0.01, flip_l2=0.02, optimizer="sgd", lr=0.1)
    twin = ImplicitRecommender(1, 2, objective=objective, embedding_dim=4, flip_dim=2, engine="compiled")
    twin.load_state_dict(model.state_dict())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.loss(torch.tensor([0]), torch.tensor([0]), torch.tensor([[1]]))["loss"].backward()
    optimizer.step()
    kernel = CompiledSGD(np.array([0]), np.array([0]), np.array([0, 1]), np.array([0]), 2, objective=objective,
                         lr=0.1, reg=0.01, flip_reg=0.02, num_threads=1)
    flip = {} if twin.flip is None else {"flip_user_w": twin.flip.user_weight, "flip_item_w": twin.flip.item_weight}
    kernel.epoch(twin.preference.user_weight, twin.preference.item_weight, seed=0, **flip)
    for (name, a), (_, b) in zip(model.state_dict().items(), twin.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_bad_hyper_parameters_are_refused():
    with pytest.raises(UserInputError, match="objective must be one of bpr, bpo, nbpo"):
        ImplicitRecommender(3, 3, objective="warp")
    with pytest.raises(UserInputError, match="rho_init"):
        ImplicitRecommender(3, 3, objective="nbpo", rho_init=0.7)
    with pytest.raises(UserInputError, match="only for objective 'nbpo'"):
        ImplicitRecommender(3, 3).flip_probability(torch.tensor([0]), torch.tensor([1]))


def test_popularity_scores_every_user_by_training_counts():
    model = PopularityRecommender(3, 4)
    model.item_counts.copy_(torch.tensor([2.0, 0.0, 5.0, 1.0]))
    assert torch.equal(model.score_users(torch.tensor([0, 2])), torch.tensor([[2.0, 0, 5, 1]] * 2))


def test_auc_matches_a_brute_force_pair_count():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 60).astype(float)  # many ties
    labels = rng.random(60) < 0.3
    pos, neg = scores[labels], scores[~labels]
    brute = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert np.isclose(auc(scores, labels), brute)
    assert np.isnan(auc(scores, np.zeros(60, bool)))
