"""Exact planning for tabular MDPs: value iteration, policy iteration, V*, Q*, optimal advantages,
greedy policies, policy evaluation and successor features.

Everything is vectorized numpy over the transition tensor `P[s, a, s']` and the reward-feature
tensor `phi[s, a, :]`. Reward arrays may carry leading batch dimensions (`(..., S, A)`), so the
optimal policies of a hundred reward vectors are found in one call.

Absorbing states (terminal cells, and cells the agent can never occupy) earn nothing and never
leave, so their values are exactly zero; they are handled by zeroing their rows instead of
relying on self-loops, which keeps `I - gamma P_pi` invertible and makes V(terminal) = 0 hold
exactly rather than approximately.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class TabularMDP:
    """A finite MDP whose rewards are linear in per-transition reward features.

    transitions: (S, A, S) probabilities P(s' | s, a); rows of absorbing states are ignored.
    features:    (S, A, d) reward features of taking a in s (expected features if the outcome is random).
    absorbing:   (S,) states with no reward and no exit (terminal cells, unreachable cells).
    start:       (S,) start-state distribution.
    reward_weights: (d,) the true weights where known, so `rewards()` gives the true reward.
    """

    transitions: np.ndarray
    features: np.ndarray
    absorbing: np.ndarray
    start: np.ndarray
    gamma: float
    feature_names: tuple[str, ...]
    reward_weights: np.ndarray | None = None
    name: str = "mdp"
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        S, A, S2 = self.transitions.shape
        if S != S2 or self.features.shape[:2] != (S, A):
            raise ValueError(
                f"inconsistent shapes: transitions {self.transitions.shape}, features {self.features.shape}"
            )
        if self.features.shape[2] != len(self.feature_names):
            raise ValueError(f"{self.features.shape[2]} features but {len(self.feature_names)} feature names")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], got {self.gamma}")
        if not np.allclose(self.transitions.sum(-1)[~self.absorbing], 1.0):
            raise ValueError("transition rows of non-absorbing states must sum to 1")
        if not np.isclose(self.start.sum(), 1.0) or np.any(self.start[self.absorbing] > 0):
            raise ValueError("start must be a distribution over non-absorbing states")

    @property
    def n_states(self) -> int:
        return self.transitions.shape[0]

    @property
    def n_actions(self) -> int:
        return self.transitions.shape[1]

    @property
    def n_features(self) -> int:
        return self.features.shape[2]

    def rewards(self, weights: np.ndarray | None = None) -> np.ndarray:
        """r(s, a) = phi(s, a) . w for weights of shape (d,) or (K, d) -> (S, A) or (K, S, A)."""
        w = self.reward_weights if weights is None else np.asarray(weights, dtype=np.float64)
        if w is None:
            raise ValueError(f"{self.name} has no true reward weights; pass weights")
        r = np.einsum("sad,...d->...sa", self.features, w)
        return np.where(self.absorbing[:, None], 0.0, r)

    def transitions_live(self) -> np.ndarray:
        """Transitions with absorbing rows zeroed (cached): the operator every backup uses."""
        if "live" not in self._cache:
            self._cache["live"] = np.where(self.absorbing[:, None, None], 0.0, self.transitions)
        return self._cache["live"]

    def start_states(self) -> np.ndarray:
        return np.flatnonzero(self.start > 0)

    def deterministic_next(self) -> np.ndarray | None:
        """(S, A) the successor of each (s, a) when every live transition is certain, else None (cached).

        Gridworlds are deterministic; then backups gather V[next] instead of multiplying by P,
        which is S times less work.
        """
        if "next" not in self._cache:
            live = self.transitions[~self.absorbing]
            certain = np.all(np.isclose(live.max(-1), 1.0))
            self._cache["next"] = self.transitions.argmax(-1) if certain else None
        return self._cache["next"]


@dataclass(frozen=True)
class Solution:
    """The optimal values, action values and greedy policy of one reward (or a batch of them)."""

    values: np.ndarray  # (..., S)
    q_values: np.ndarray  # (..., S, A)
    policy: np.ndarray  # (..., S, A), uniform over (near-)tied optimal actions

    @property
    def advantages(self) -> np.ndarray:
        return optimal_advantages(self.q_values, self.values)


def bellman_q(mdp: TabularMDP, rewards: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Q(s, a) = r(s, a) + gamma sum_s' P(s'|s, a) V(s'), zero in absorbing states."""
    S, A = mdp.n_states, mdp.n_actions
    next_state = mdp.deterministic_next()
    if next_state is not None:
        expected_next = np.where(mdp.absorbing[:, None], 0.0, values[..., next_state])
    else:
        batch = values.shape[:-1]
        P = mdp.transitions_live().reshape(S * A, S)
        expected_next = (values.reshape(-1, S) @ P.T).reshape(*batch, S, A)
    return rewards + mdp.gamma * expected_next


def value_iteration(
    mdp: TabularMDP, rewards: np.ndarray, tol: float = 1e-10, max_iterations: int = 1_000_000
) -> tuple[np.ndarray, np.ndarray]:
    """Bellman optimality backups until the largest change is below tol (relative to the value scale).

    Returns (V*, Q*). Converges at rate gamma, so for gamma near 1 `policy_iteration` is much faster.
    """
    values = np.zeros(rewards.shape[:-1])
    for _ in range(max_iterations):
        q = bellman_q(mdp, rewards, values)
        new_values = q.max(-1)
        change = np.abs(new_values - values).max()
        values = new_values
        if change <= tol * max(1.0, np.abs(values).max()):
            return values, bellman_q(mdp, rewards, values)
    raise RuntimeError(
        f"value iteration did not converge in {max_iterations} iterations (change {change:.3g})"
    )


def greedy_policy(q_values: np.ndarray, rtol: float = 1e-9) -> np.ndarray:
    """The policy uniform over the actions whose value is within rtol of the best (relative to scale)."""
    best = q_values.max(-1, keepdims=True)
    scale = np.maximum(1.0, np.abs(q_values).max(axis=(-2, -1), keepdims=True))
    ties = q_values >= best - rtol * scale
    return ties / ties.sum(-1, keepdims=True)


def uniform_policy(mdp: TabularMDP) -> np.ndarray:
    return np.full((mdp.n_states, mdp.n_actions), 1.0 / mdp.n_actions)


def policy_matrices(
    mdp: TabularMDP, policy: np.ndarray, per_step: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """P_pi (..., S, S) and the policy-averaged per-step quantity (..., S, k) for policy (..., S, A)."""
    next_state = mdp.deterministic_next()
    if next_state is None:
        P_pi = np.einsum("...sa,sat->...st", policy, mdp.transitions_live())
    else:
        # P_pi[s, next(s, a)] += pi(a | s); within one action the targets of distinct s never collide
        live = np.where(mdp.absorbing[:, None], 0.0, policy)
        P_pi = np.zeros((*policy.shape[:-1], mdp.n_states))
        rows = np.arange(mdp.n_states)
        for a in range(mdp.n_actions):
            P_pi[..., rows, next_state[:, a]] += live[..., a]
    x_pi = np.einsum("...sa,...sak->...sk", policy, per_step)
    return P_pi, x_pi


def _solve_discounted(mdp: TabularMDP, P_pi: np.ndarray, x_pi: np.ndarray) -> np.ndarray:
    """Solve (I - gamma P_pi) X = x_pi: the discounted sum of x along the policy's trajectories."""
    import torch  # lazily: importing the environments should not pay for torch

    # torch's batched LU keeps a steady speed on a busy machine, where numpy's threaded
    # OpenBLAS batched solve was measured 10-50x slower than single-threaded.
    batch = np.broadcast_shapes(P_pi.shape[:-2], x_pi.shape[:-2])
    system = torch.from_numpy(
        np.broadcast_to(np.eye(mdp.n_states) - mdp.gamma * P_pi, (*batch, *P_pi.shape[-2:])).copy()
    )
    rhs = torch.from_numpy(np.broadcast_to(x_pi, (*batch, *x_pi.shape[-2:])).copy())
    solution, info = torch.linalg.solve_ex(system, rhs)
    if torch.any(info != 0):
        raise ValueError(
            "policy evaluation is singular: with gamma = 1 some policy never reaches an absorbing state; use gamma < 1"
        )
    return solution.numpy()


def policy_evaluation(mdp: TabularMDP, policy: np.ndarray, rewards: np.ndarray) -> np.ndarray:
    """V^pi exactly, by one linear solve: V = (I - gamma P_pi)^-1 r_pi. Batched over leading dims."""
    P_pi, r_pi = policy_matrices(mdp, policy, rewards[..., None])
    return _solve_discounted(mdp, P_pi, r_pi)[..., 0]


def policy_iteration(mdp: TabularMDP, rewards: np.ndarray, max_iterations: int = 10_000) -> Solution:
    """Howard's policy iteration with exact evaluation; exact V*, Q* in a handful of linear solves.

    Improvement keeps the current action unless another is strictly better (beyond round-off),
    which guarantees termination. Batched over the leading dims of `rewards`.
    """
    batch = rewards.shape[:-2]
    S, A = mdp.n_states, mdp.n_actions
    actions = rewards.argmax(-1)
    for _ in range(max_iterations):
        policy = np.eye(A)[actions]
        values = policy_evaluation(mdp, policy, rewards)
        q = bellman_q(mdp, rewards, values)
        current = np.take_along_axis(q, actions[..., None], -1)[..., 0]
        scale = np.maximum(1.0, np.abs(q).max(axis=(-2, -1), keepdims=True))[..., 0]
        improvable = q.max(-1) > current + 1e-9 * scale
        if not improvable.any():
            return Solution(values=values, q_values=q, policy=greedy_policy(q))
        actions = np.where(improvable, q.argmax(-1), actions)
    raise RuntimeError(
        f"policy iteration did not converge in {max_iterations} iterations (batch {batch}, S={S})"
    )


def solve(mdp: TabularMDP, rewards: np.ndarray | None = None) -> Solution:
    """V*, Q* and the greedy optimal policy for `rewards` (default: the MDP's true reward)."""
    rewards = mdp.rewards() if rewards is None else rewards
    if mdp.gamma < 1.0:
        return policy_iteration(mdp, rewards)
    values, q = value_iteration(mdp, rewards)
    return Solution(values=values, q_values=q, policy=greedy_policy(q))


def optimal_advantages(q_values: np.ndarray, values: np.ndarray) -> np.ndarray:
    """A*(s, a) = Q*(s, a) - V*(s) <= 0; zero exactly for optimal actions."""
    return q_values - values[..., None]


def successor_features(mdp: TabularMDP, policy: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
    """psi^pi(s) = E_pi[sum_t gamma^t phi(s_t, a_t) | s_0 = s], shape (..., S, d).

    V^pi_w(s) = psi^pi(s) . w for any weights w, which lets a learner evaluate many policies under
    a changing reward with one matrix product. `features` (S, A, k) defaults to the MDP's reward
    features; one-hot features of a transition class give discounted visit counts instead.
    """
    phi = mdp.features if features is None else features
    phi = np.where(mdp.absorbing[:, None, None], 0.0, phi)
    P_pi, phi_pi = policy_matrices(mdp, policy, phi)
    return _solve_discounted(mdp, P_pi, phi_pi)


def mean_start_value(mdp: TabularMDP, values: np.ndarray) -> np.ndarray:
    """The expected value of the start state, E_{s0 ~ start}[V(s0)]."""
    return values @ mdp.start


def scaled_return(mdp: TabularMDP, policy: np.ndarray, true_rewards: np.ndarray | None = None) -> float:
    """(mean V^pi - mean V^uniform) / (mean V* - mean V^uniform) under the true reward.

    1 is optimal, 0 is no better than acting uniformly at random (Knox et al.'s evaluation).
    """
    if true_rewards is None:
        if "reference_values" not in mdp._cache:  # the true reward's V* and V^uniform, once per MDP
            mdp._cache["reference_values"] = _reference_values(mdp, mdp.rewards())
        v_star, v_rand = mdp._cache["reference_values"]
        true_rewards = mdp.rewards()
    else:
        v_star, v_rand = _reference_values(mdp, true_rewards)
    v_pi = mean_start_value(mdp, policy_evaluation(mdp, policy, true_rewards))
    if np.isclose(v_star, v_rand, rtol=0.0, atol=1e-9):
        return 1.0  # every policy is as good as random; nothing to lose
    return float((v_pi - v_rand) / (v_star - v_rand))


def _reference_values(mdp: TabularMDP, rewards: np.ndarray) -> tuple[float, float]:
    v_star = mean_start_value(mdp, solve(mdp, rewards).values)
    v_rand = mean_start_value(mdp, policy_evaluation(mdp, uniform_policy(mdp), rewards))
    return float(v_star), float(v_rand)
