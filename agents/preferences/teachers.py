"""Synthetic teachers: label segment pairs by partial return or by regret, as a person might.

Partial return is the sum of rewards along a segment. Regret is how far the segment falls short of
acting optimally from where it started (Knox et al., TMLR 2024):

    deterministic transitions:  regret(sigma) = V*(s_0) - (sum_t gamma^t r_t + gamma^k V*(s_k))
    general form:               regret(sigma) = - sum_t gamma^t A*(s_t, a_t)

The two agree whenever transitions are deterministic (the sum telescopes). With gamma = 1 they are
exactly the paper's formulas. A pair's label is the probability that the first segment is
preferred: 1, 0, or 0.5 for a tie (deterministic teacher), or a Bradley-Terry draw with
P = sigmoid((score_1 - score_2) / temperature) (stochastic teacher).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np

from agents.planning import Solution, TabularMDP, solve
from agents.preferences.dataset import PreferenceDataset
from agents.preferences.segments import Segments
from recsys.errors import UserInputError

logger = logging.getLogger(__name__)


def partial_returns(segments: Segments, weights: np.ndarray) -> np.ndarray:
    """sum_t r_t along each segment (undiscounted, as the partial-return model defines it)."""
    return (segments.features @ np.asarray(weights, dtype=np.float64) * segments.step_mask()).sum(-1)


def discounted_returns(segments: Segments, weights: np.ndarray, gamma: float) -> np.ndarray:
    return (segments.features @ np.asarray(weights, dtype=np.float64) * segments.discounts(gamma)).sum(-1)


def regret_from_values(
    segments: Segments, weights: np.ndarray, values: np.ndarray, gamma: float
) -> np.ndarray:
    """V*(s_0) - (sum_t gamma^t r_t + gamma^k V*(s_k)): regret under deterministic transitions."""
    end_discount = gamma ** segments.lengths.astype(np.float64)
    return values[segments.start_states] - (
        discounted_returns(segments, weights, gamma) + end_discount * values[segments.end_states]
    )


def regret_from_advantages(segments: Segments, advantages: np.ndarray, gamma: float) -> np.ndarray:
    """-sum_t gamma^t A*(s_t, a_t): regret in general (expected-value) form."""
    steps = advantages[segments.states[..., :-1], segments.actions]
    return -(steps * segments.discounts(gamma)).sum(-1)


@dataclass(frozen=True)
class Teacher:
    """Labels pairs by a statistic of each segment.

    statistic: "regret" (lower is better) or "partial_return" (higher is better).
    regret_form: "values" (the deterministic-transition form) or "advantages" (-sum A*).
    stochastic: draw labels from Bradley-Terry with `temperature` instead of comparing exactly.
    mistake_rate: probability of flipping a strict label. skip_rate: probability of not answering.
    tie_tolerance: deterministic scores closer than this are ties (label 0.5).
    """

    statistic: Literal["regret", "partial_return"] = "regret"
    regret_form: Literal["values", "advantages"] = "values"
    stochastic: bool = False
    temperature: float = 1.0
    mistake_rate: float = 0.0
    skip_rate: float = 0.0
    tie_tolerance: float = 1e-6

    def __post_init__(self) -> None:
        if self.statistic not in ("regret", "partial_return"):
            raise UserInputError(
                f"teacher statistic must be 'regret' or 'partial_return', got {self.statistic!r}"
            )
        if self.regret_form not in ("values", "advantages"):
            raise UserInputError(f"regret_form must be 'values' or 'advantages', got {self.regret_form!r}")
        if not self.temperature > 0:
            raise UserInputError(f"teacher temperature must be > 0, got {self.temperature}")
        for name in ("mistake_rate", "skip_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UserInputError(f"teacher {name} must lie in [0, 1], got {getattr(self, name)}")

    def scores(self, mdp: TabularMDP, segments: Segments, solution: Solution | None = None) -> np.ndarray:
        """Higher is better: partial return, or minus regret under the MDP's true reward."""
        weights = mdp.reward_weights
        if weights is None:
            raise UserInputError(f"{mdp.name} has no true reward, so a synthetic teacher cannot label it")
        if self.statistic == "partial_return":
            return partial_returns(segments, weights)
        solution = solve(mdp) if solution is None else solution
        if self.regret_form == "values":
            return -regret_from_values(segments, weights, solution.values, mdp.gamma)
        return -regret_from_advantages(segments, solution.advantages, mdp.gamma)

    def preference_probabilities(
        self, mdp: TabularMDP, pairs: Segments, solution: Solution | None = None
    ) -> np.ndarray:
        """P(first segment preferred) for (N, 2) pairs, before mistakes and skips."""
        scores = self.scores(mdp, pairs, solution)
        difference = scores[:, 0] - scores[:, 1]
        if self.stochastic:
            return 1.0 / (1.0 + np.exp(-np.clip(difference / self.temperature, -500, 500)))
        return np.where(np.abs(difference) <= self.tie_tolerance, 0.5, (difference > 0).astype(np.float64))

    def label(
        self, mdp: TabularMDP, pairs: Segments, rng: np.random.Generator, solution: Solution | None = None
    ) -> PreferenceDataset:
        """A preference data set of the answered pairs."""
        labels = self.preference_probabilities(mdp, pairs, solution)
        if self.stochastic:
            labels = (rng.random(len(labels)) < labels).astype(np.float64)
        flip = (rng.random(len(labels)) < self.mistake_rate) & (labels != 0.5)
        labels = np.where(flip, 1.0 - labels, labels)
        answered = rng.random(len(labels)) >= self.skip_rate
        if not answered.all():
            logger.info(
                "teacher skipped %d of %d pairs (skip_rate %.2f)",
                (~answered).sum(),
                len(labels),
                self.skip_rate,
            )
        return PreferenceDataset(pairs[answered], labels[answered], mdp.feature_names)
