import numpy as np
import pytest

from agents import planning
from agents.envs.board import Board
from agents.envs.delivery import delivery_board
from agents.envs.random_mdp import random_board
from agents.planning import TabularMDP

UP, RIGHT, DOWN, LEFT = range(4)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def corridor() -> TabularMDP:
    """Cells 0, 1 and the goal 2 in a row; gas -1, goal +10, gamma 0.9."""
    return Board.from_text(["..G"], [-1.0, 10.0, -10.0, 1.0, -1.0, -2.0], gamma=0.9).tabular()


def stochastic_mdp() -> TabularMDP:
    """s0 --a0 (r 1)--> s0 or s1 (1/2 each); s0 --a1 (r 4)--> end; s1 --a0 (r 10)--> end; s1 --a1 (r 0)--> s0."""
    P = np.zeros((3, 2, 3))
    P[0, 0, [0, 1]] = 0.5
    P[0, 1, 2] = 1.0
    P[1, 0, 2] = 1.0
    P[1, 1, 0] = 1.0
    P[2, :, 2] = 1.0
    features = np.zeros((3, 2, 1))
    features[0, 0], features[0, 1], features[1, 0] = 1.0, 4.0, 10.0
    return TabularMDP(
        P, features, np.array([False, False, True]), np.array([0.5, 0.5, 0.0]), 0.5, ("r",), np.array([1.0])
    )


def test_value_iteration_matches_the_hand_solved_corridor():
    mdp = corridor()
    exact = planning.solve(mdp)
    for values, q in (planning.value_iteration(mdp, mdp.rewards()), (exact.values, exact.q_values)):
        np.testing.assert_allclose(values, [8.0, 10.0, 0.0], atol=1e-8)
        np.testing.assert_allclose(q[0], [6.2, 8.0, 6.2, 6.2], atol=1e-8)
        np.testing.assert_allclose(q[1], [8.0, 10.0, 8.0, 6.2], atol=1e-8)
    solution = planning.solve(mdp)
    np.testing.assert_allclose(solution.advantages[0], [-1.8, 0.0, -1.8, -1.8], atol=1e-8)
    np.testing.assert_array_equal(solution.policy[:2].argmax(-1), [RIGHT, RIGHT])
    assert np.all(solution.advantages <= 1e-12)


def test_stochastic_mdp_values_and_policy_evaluation_by_hand():
    mdp = stochastic_mdp()
    solution = planning.solve(mdp)
    np.testing.assert_allclose(solution.values, [14 / 3, 10.0, 0.0])
    np.testing.assert_allclose(solution.q_values[:2], [[14 / 3, 4.0], [10.0, 7 / 3]])
    values, _ = planning.value_iteration(mdp, mdp.rewards())
    np.testing.assert_allclose(values, solution.values, atol=1e-8)
    uniform = planning.policy_evaluation(mdp, planning.uniform_policy(mdp), mdp.rewards())
    np.testing.assert_allclose(uniform, [100 / 27, 160 / 27, 0.0])


def test_greedy_policy_splits_ties_evenly():
    q = np.array([[1.0, 3.0, 3.0, -2.0], [0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(planning.greedy_policy(q), [[0, 0.5, 0.5, 0], [0.25] * 4])


def test_policy_iteration_agrees_with_value_iteration_on_random_boards():
    for seed in range(5):
        board = random_board(np.random.default_rng(seed))
        mdp = Board(board.cells, board.reward_weights, gamma=0.95).tabular()
        weights = np.random.default_rng(seed).normal(size=(3, 6)) * 5
        rewards = mdp.rewards(weights)
        exact = planning.solve(mdp, rewards)
        values, _ = planning.value_iteration(mdp, rewards, tol=1e-12)
        np.testing.assert_allclose(exact.values, values, atol=1e-6)


def test_policy_evaluation_matches_iterated_bellman_backups():
    mdp = Board(random_board(np.random.default_rng(3)).cells, np.ones(6), gamma=0.9).tabular()
    rng = np.random.default_rng(0)
    policy = rng.dirichlet(np.ones(4), size=mdp.n_states)
    rewards = mdp.rewards(rng.normal(size=6))
    values = np.zeros(mdp.n_states)
    for _ in range(2000):  # the reference: V <- r_pi + gamma P_pi V, far past convergence
        q = rewards + mdp.gamma * np.einsum("sat,t->sa", mdp.transitions, values)
        values = np.where(mdp.absorbing, 0.0, (policy * q).sum(-1))
    np.testing.assert_allclose(planning.policy_evaluation(mdp, policy, rewards), values, atol=1e-9)


def test_successor_features_reproduce_policy_values():
    mdp = delivery_board().tabular()
    rng = np.random.default_rng(1)
    policies = rng.dirichlet(np.ones(4), size=(3, mdp.n_states))
    psi = planning.successor_features(mdp, policies)
    assert psi.shape == (3, mdp.n_states, 6)
    for w in rng.normal(size=(4, 6)) * 10:
        np.testing.assert_allclose(
            psi @ w, planning.policy_evaluation(mdp, policies, mdp.rewards(w)), atol=1e-8
        )
    optimal = planning.solve(mdp)
    np.testing.assert_allclose(
        planning.successor_features(mdp, optimal.policy) @ mdp.reward_weights, optimal.values, atol=1e-8
    )


def test_scaled_return_is_one_for_optimal_zero_for_uniform():
    mdp = corridor()
    assert planning.scaled_return(mdp, planning.solve(mdp).policy) == pytest.approx(1.0)
    assert planning.scaled_return(mdp, planning.uniform_policy(mdp)) == pytest.approx(0.0)
    always_left = np.eye(4)[np.full(mdp.n_states, LEFT)]
    v_left = planning.mean_start_value(mdp, planning.policy_evaluation(mdp, always_left, mdp.rewards()))
    assert v_left == pytest.approx(-10.0)  # bumps forever: -1 / (1 - 0.9)
    assert planning.scaled_return(mdp, always_left) < 0


def test_singular_evaluation_with_gamma_one_is_explained():
    mdp = Board.from_text(["..G"], [-1.0, 10.0, -10.0, 1.0, -1.0, -2.0], gamma=1.0).tabular()
    always_left = np.eye(4)[np.full(mdp.n_states, LEFT)]
    with pytest.raises(ValueError, match="gamma < 1"):
        planning.policy_evaluation(mdp, always_left, mdp.rewards())
    np.testing.assert_allclose(
        planning.solve(mdp).values, [9.0, 10.0, 0.0]
    )  # value iteration handles gamma = 1
