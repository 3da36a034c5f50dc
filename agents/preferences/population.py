"""A population of teachers with K latent preference types, for pluralistic reward learning.

Each of K types is a reward vector over the board's reward features. Each teacher mixes them:

    pure:      one type per teacher (drawn uniformly), mixture = one-hot;
    dirichlet: mixture ~ Dirichlet(alpha, ..., alpha), so teachers lie between the types.

A teacher's reward is its mixture of the type vectors, w_n = sum_k pi_nk w_k, and the teacher labels
segment pairs with the existing synthetic `Teacher` (partial return or regret, Bradley-Terry noise)
under that reward. The ground truth (type vectors, every teacher's mixture and dominant type) is kept,
so recovery can be measured.

Pairs come from a shared pool of segment pairs drawn on the board; pairs that no type can tell apart
(the same score under every type vector) are dropped from the pool, since they carry no label signal.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from agents.planning import Solution, TabularMDP, solve
from agents.preferences.dataset import PreferenceDataset
from agents.preferences.segments import Segments, sample_segment_pairs
from agents.preferences.teachers import Teacher
from recsys.errors import UserInputError

MIXING = ("pure", "dirichlet")


@dataclass(frozen=True)
class PopulationConfig:
    """n_types: K. mixing: "pure" or "dirichlet" (concentration `alpha`).
    type_scale: the norm of every type's reward vector. statistic: how teachers judge a segment.
    temperature: of the teachers' Bradley-Terry noise (labels are drawn, not thresholded).
    """

    n_types: int = 4
    mixing: Literal["pure", "dirichlet"] = "pure"
    alpha: float = 0.3
    type_scale: float = 3.0
    statistic: Literal["partial_return", "regret"] = "partial_return"
    temperature: float = 1.0
    segment_length: int = 3
    pool_size: int = 4000

    def __post_init__(self) -> None:
        if self.n_types < 1:
            raise UserInputError(f"n_types must be >= 1, got {self.n_types}")
        if self.mixing not in MIXING:
            raise UserInputError(f"mixing must be one of {MIXING}, got {self.mixing!r}")
        if not self.alpha > 0 or not self.type_scale > 0 or not self.temperature > 0:
            raise UserInputError("alpha, type_scale and temperature must be > 0")
        if self.statistic not in ("partial_return", "regret"):
            raise UserInputError(f"statistic must be 'partial_return' or 'regret', got {self.statistic!r}")


@dataclass(frozen=True)
class Population:
    """Teachers over one board: type vectors (K, d), mixtures (N, K), rewards (N, d), V* (N, S)."""

    mdp: TabularMDP
    config: PopulationConfig
    type_weights: np.ndarray
    mixtures: np.ndarray
    pool: Segments  # (P, 2) candidate pairs

    @property
    def n_teachers(self) -> int:
        return len(self.mixtures)

    @property
    def teacher_weights(self) -> np.ndarray:
        return self.mixtures @ self.type_weights

    @property
    def dominant_type(self) -> np.ndarray:
        return self.mixtures.argmax(1)

    def teacher_mdp(self, n: int) -> TabularMDP:
        # a fresh cache: the MDP's cache may hold values of its own (true) reward
        return replace(self.mdp, reward_weights=self.teacher_weights[n], _cache={})

    def solutions(self) -> list[Solution | None]:
        """Every teacher's V* (one batched solve; None for partial-return teachers, who need none)."""
        if self.config.statistic != "regret":
            return [None] * self.n_teachers
        batch = solve(self.mdp, self.mdp.rewards(self.teacher_weights))
        return [Solution(batch.values[n], batch.q_values[n], batch.policy[n]) for n in range(self.n_teachers)]

    def teacher(self) -> Teacher:
        return Teacher(statistic=self.config.statistic, stochastic=True, temperature=self.config.temperature)

    def label(
        self, n_pairs: int, rng: np.random.Generator, solutions: list[Solution | None] | None = None
    ) -> list[tuple[PreferenceDataset, np.ndarray]]:
        """For every teacher: `n_pairs` pool pairs labelled by a noisy teacher, and the noise-free
        preference of each pair (1 first, 0 second, 0.5 tie) for scoring predictions."""
        solutions = self.solutions() if solutions is None else solutions
        teacher, exact = self.teacher(), replace(self.teacher(), stochastic=False)
        out = []
        for n in range(self.n_teachers):
            pairs = self.pool[rng.choice(len(self.pool.lengths), size=n_pairs, replace=False)]
            mdp = self.teacher_mdp(n)
            out.append(
                (teacher.label(mdp, pairs, rng, solutions[n]), exact.preference_probabilities(mdp, pairs, solutions[n]))
            )
        return out


def type_log_likelihoods(population: Population, data: list[PreferenceDataset]) -> np.ndarray:
    """(N, K): the log-likelihood of each teacher's labels under each pure type, with the teachers' own
    noise model. Its argmax is the Bayes-optimal type assignment under a uniform prior: the type
    recovery that M comparisons allow at best."""
    teacher = Teacher(statistic=population.config.statistic)
    solutions = (
        solve(population.mdp, population.mdp.rewards(population.type_weights))
        if population.config.statistic == "regret"
        else None
    )
    out = np.zeros((len(data), population.config.n_types))
    for k, w in enumerate(population.type_weights):
        typed = replace(population.mdp, reward_weights=w, _cache={})
        solution = None if solutions is None else Solution(solutions.values[k], solutions.q_values[k], solutions.policy[k])
        for n, d in enumerate(data):
            scores = teacher.scores(typed, d.pairs, solution)
            logit = (scores[:, 0] - scores[:, 1]) / population.config.temperature
            # log sigmoid(+-logit), stable
            out[n, k] = -(d.labels * np.logaddexp(0, -logit) + (1 - d.labels) * np.logaddexp(0, logit)).sum()
    return out


def type_vectors(n_types: int, n_features: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    """K random directions of norm `scale` (Gaussian, normalised)."""
    w = rng.normal(size=(n_types, n_features))
    return scale * w / np.linalg.norm(w, axis=1, keepdims=True)


def draw_mixtures(n: int, config: PopulationConfig, rng: np.random.Generator) -> np.ndarray:
    if config.mixing == "pure":
        return np.eye(config.n_types)[rng.integers(config.n_types, size=n)]
    return rng.dirichlet(np.full(config.n_types, config.alpha), size=n)


def make_population(
    mdp: TabularMDP,
    n_teachers: int,
    config: PopulationConfig,
    rng: np.random.Generator,
    type_weights: np.ndarray | None = None,
) -> Population:
    """Teachers over `mdp`; pass `type_weights` to draw more teachers of an existing population's types."""
    if n_teachers < 1:
        raise UserInputError(f"n_teachers must be >= 1, got {n_teachers}")
    if type_weights is None:
        type_weights = type_vectors(config.n_types, mdp.n_features, config.type_scale, rng)
    pool = _informative_pool(mdp, config, type_weights, rng)
    return Population(mdp, config, np.asarray(type_weights, np.float64), draw_mixtures(n_teachers, config, rng), pool)


def _informative_pool(
    mdp: TabularMDP, config: PopulationConfig, type_weights: np.ndarray, rng: np.random.Generator
) -> Segments:
    pairs = sample_segment_pairs(mdp, config.pool_size, config.segment_length, rng)
    teacher = Teacher(statistic=config.statistic)
    solutions = (
        solve(mdp, mdp.rewards(type_weights)) if config.statistic == "regret" else None
    )
    informative = np.zeros(len(pairs.lengths), dtype=bool)
    for k, w in enumerate(type_weights):
        typed = replace(mdp, reward_weights=w, _cache={})
        solution = None if solutions is None else Solution(solutions.values[k], solutions.q_values[k], solutions.policy[k])
        scores = teacher.scores(typed, pairs, solution)
        informative |= np.abs(scores[:, 0] - scores[:, 1]) > 1e-6
    if informative.sum() < 100:
        raise UserInputError(f"only {informative.sum()} of {len(informative)} sampled pairs tell the types apart")
    return pairs[informative]
