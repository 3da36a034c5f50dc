"""The set of policies whose values the regret model maximizes over to approximate V*.

Following Knox et al., the policies are the optimal policies of reward vectors whose entries are
drawn from a small set of values; duplicates are dropped and, optionally, any policy that is
optimal for the true reward is removed, so the learner cannot simply look the answer up.

Each policy is kept as its discounted visit counts of every *transition class* (the distinct
reward-feature vectors of the MDP): V^pi(s) = occupancy[pi, s] . r(basis) for any reward r of
the features, linear or not. For a linear reward this is exactly the successor-feature identity
V^pi(s) = psi^pi(s) . w with psi = occupancy @ basis.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from agents.planning import TabularMDP, policy_evaluation, solve, successor_features

logger = logging.getLogger(__name__)

PAPER_REWARD_VALUES = (50.0, -50.0, 1.0, -1.0, -2.0, 0.0, -10.0, 10.0, 5.0)


@dataclass(frozen=True)
class PolicySet:
    policies: np.ndarray  # (K, S, A)
    occupancy: np.ndarray  # (K, S, U) discounted visits of each transition class
    basis: np.ndarray  # (U, d) the reward features of each transition class

    def __len__(self) -> int:
        return len(self.policies)

    def successor_features(self) -> np.ndarray:
        """psi (K, S, d)."""
        return self.occupancy @ self.basis

    def values(self, weights: np.ndarray) -> np.ndarray:
        """V^pi(s) for every policy under a linear reward: (K, S)."""
        return self.occupancy @ (self.basis @ weights)


def transition_classes(mdp: TabularMDP) -> tuple[np.ndarray, np.ndarray]:
    """The distinct feature vectors of live transitions (U, d) and each (s, a)'s class (S, A); -1 if absorbing."""
    live = ~mdp.absorbing
    basis, inverse = np.unique(mdp.features[live].reshape(-1, mdp.n_features), axis=0, return_inverse=True)
    classes = np.full((mdp.n_states, mdp.n_actions), -1, dtype=np.int64)
    classes[live] = inverse.reshape(-1, mdp.n_actions)
    return basis, classes


def policy_occupancy(mdp: TabularMDP, policies: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, S, U) discounted class visits of each policy, and the class basis (U, d)."""
    basis, classes = transition_classes(mdp)
    one_hot = np.zeros((mdp.n_states, mdp.n_actions, len(basis)))
    s, a = np.nonzero(classes >= 0)
    one_hot[s, a, classes[s, a]] = 1.0
    return successor_features(mdp, policies, one_hot), basis


def sample_policy_set(
    mdp: TabularMDP,
    n_policies: int = 100,
    rng: np.random.Generator | None = None,
    reward_values: tuple[float, ...] = PAPER_REWARD_VALUES,
    remove_optimal: bool = True,
    max_duplicates: int = 100,
) -> PolicySet:
    """Greedy optimal policies of random reward vectors (entries drawn from reward_values), deduplicated."""
    rng = np.random.default_rng() if rng is None else rng
    kept_policies: list[np.ndarray] = []
    kept_occupancy: list[np.ndarray] = []
    seen: set[bytes] = set()
    n_duplicates = 0
    basis = None
    while len(kept_policies) < n_policies and n_duplicates < max_duplicates:
        weights = rng.choice(reward_values, size=(n_policies - len(kept_policies), mdp.n_features))
        policies = solve(mdp, mdp.rewards(weights)).policy
        occupancy, basis = policy_occupancy(mdp, policies)
        for policy, visits in zip(policies, occupancy):
            key = np.round(visits, 8).tobytes()
            if key in seen:
                n_duplicates += 1
                continue
            seen.add(key)
            kept_policies.append(policy)
            kept_occupancy.append(visits)
    policies, occupancy = np.stack(kept_policies), np.stack(kept_occupancy)
    if remove_optimal:
        optimal = optimal_policy_mask(mdp, policies)
        if optimal.any():
            logger.info(
                "%s: removed %d policies optimal for the true reward from the policy set",
                mdp.name,
                optimal.sum(),
            )
        policies, occupancy = policies[~optimal], occupancy[~optimal]
    if len(policies) == 0:
        raise RuntimeError(
            f"{mdp.name}: every sampled policy was optimal; nothing left to approximate V* with"
        )
    return PolicySet(policies, occupancy, basis)


def optimal_policy_mask(mdp: TabularMDP, policies: np.ndarray, rtol: float = 1e-9) -> np.ndarray:
    """(K,) True for policies whose value equals V* under the true reward in every live state."""
    rewards = mdp.rewards()
    v_star = solve(mdp, rewards).values
    values = policy_evaluation(mdp, policies, rewards)
    tolerance = rtol * max(1.0, np.abs(v_star).max())
    return np.all(values[:, ~mdp.absorbing] >= v_star[~mdp.absorbing] - tolerance, axis=-1)
