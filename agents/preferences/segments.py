"""Trajectory segments: short runs of (state, action, reward features), stored as padded arrays.

A batch of segments has any leading shape (N for segments, (N, 2) for preference pairs):

    states   (..., L+1) int64    s_0 .. s_L; after the segment ends, the last state repeats
    actions  (..., L)   int64    a_0 .. a_{L-1}
    features (..., L, d) float64 reward features of each step; zero after the segment ends
    lengths  (...,)     int64    steps actually taken (<= L)

A segment that enters an absorbing (terminal) state ends there: its length counts the steps up to
and including that entry, and the padding repeats the terminal state with zero features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.planning import TabularMDP


@dataclass(frozen=True)
class Segments:
    states: np.ndarray
    actions: np.ndarray
    features: np.ndarray
    lengths: np.ndarray

    def __post_init__(self) -> None:
        lead = self.lengths.shape
        L = self.actions.shape[-1]
        if (
            self.states.shape != (*lead, L + 1)
            or self.actions.shape != (*lead, L)
            or self.features.shape[:-1] != (*lead, L)
        ):
            raise ValueError(
                f"inconsistent segment arrays: states {self.states.shape}, actions {self.actions.shape}, "
                f"features {self.features.shape}, lengths {self.lengths.shape}"
            )
        if np.any(self.lengths < 0) or np.any(self.lengths > L):
            raise ValueError(f"segment lengths must lie in 0..{L}")

    @property
    def shape(self) -> tuple[int, ...]:
        return self.lengths.shape

    @property
    def max_length(self) -> int:
        return self.actions.shape[-1]

    @property
    def start_states(self) -> np.ndarray:
        return self.states[..., 0]

    @property
    def end_states(self) -> np.ndarray:
        return np.take_along_axis(self.states, self.lengths[..., None], -1)[..., 0]

    def step_mask(self) -> np.ndarray:
        """(..., L) True for the steps actually taken."""
        return np.arange(self.max_length) < self.lengths[..., None]

    def discounts(self, gamma: float) -> np.ndarray:
        """(..., L) gamma^t for the steps taken, 0 after."""
        return np.where(self.step_mask(), gamma ** np.arange(self.max_length), 0.0)

    def __getitem__(self, index) -> Segments:
        return Segments(self.states[index], self.actions[index], self.features[index], self.lengths[index])

    def swap_pairs(self) -> Segments:
        """For pairs (N, 2, ...): the same pairs in the other order."""
        return self[:, ::-1]

    @staticmethod
    def stack(parts: list[Segments], axis: int = 0) -> Segments:
        return Segments(
            np.stack([p.states for p in parts], axis),
            np.stack([p.actions for p in parts], axis),
            np.stack([p.features for p in parts], axis),
            np.stack([p.lengths for p in parts], axis),
        )

    @staticmethod
    def concatenate(parts: list[Segments]) -> Segments:
        return Segments(
            np.concatenate([p.states for p in parts]),
            np.concatenate([p.actions for p in parts]),
            np.concatenate([p.features for p in parts]),
            np.concatenate([p.lengths for p in parts]),
        )


def sample_segments(
    mdp: TabularMDP, n: int, length: int = 3, rng: np.random.Generator | None = None
) -> Segments:
    """n segments: s_0 from the MDP's start distribution, actions uniformly at random (the paper's sampler)."""
    if length < 1:
        raise ValueError(f"segment length must be >= 1, got {length}")
    rng = np.random.default_rng() if rng is None else rng
    states = np.empty((n, length + 1), dtype=np.int64)
    states[:, 0] = rng.choice(mdp.n_states, size=n, p=mdp.start)
    actions = rng.integers(mdp.n_actions, size=(n, length))
    features = np.empty((n, length, mdp.n_features))
    cumulative = np.cumsum(mdp.transitions, axis=-1)
    for t in range(length):
        s, a = states[:, t], actions[:, t]
        features[:, t] = np.where(mdp.absorbing[s, None], 0.0, mdp.features[s, a])
        # inverse-CDF draw of s' ~ P(. | s, a); absorbing states stay put
        drawn = (cumulative[s, a] < rng.random(n)[:, None]).sum(-1)
        states[:, t + 1] = np.where(mdp.absorbing[s], s, np.minimum(drawn, mdp.n_states - 1))
    absorbed = mdp.absorbing[states[:, 1:]]
    lengths = np.where(absorbed.any(-1), absorbed.argmax(-1) + 1, length)
    return Segments(states, actions, features, lengths.astype(np.int64))


def sample_segment_pairs(
    mdp: TabularMDP, n_pairs: int, length: int = 3, rng: np.random.Generator | None = None
) -> Segments:
    """(n_pairs, 2) pairs of independently sampled segments; a pair of identical segments is redrawn."""
    rng = np.random.default_rng() if rng is None else rng
    kept: list[Segments] = []
    n_kept, attempts = 0, 0
    while n_kept < n_pairs:
        attempts += 1
        if attempts > 100:
            raise RuntimeError(f"could not draw {n_pairs} distinct segment pairs from {mdp.name}")
        need = n_pairs - n_kept
        first, second = sample_segments(mdp, need, length, rng), sample_segments(mdp, need, length, rng)
        distinct = np.any(first.states != second.states, -1) | np.any(first.actions != second.actions, -1)
        kept.append(Segments.stack([first[distinct], second[distinct]], axis=1))
        n_kept += int(distinct.sum())
    return Segments.concatenate(kept)
