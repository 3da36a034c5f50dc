"""The gridworld board of Knox et al. (TMLR 2024): cells, reward features, and the exact MDP.

A board is a grid of cells; the agent moves up, right, down or left, deterministically. Each
transition has a reward-feature vector over FEATURES = (gas, goal, sheep, coin, roadblock, mud):

- entering a blank cell costs gas; a coin or a roadblock cell costs gas too, plus its own feature;
- entering mud costs mud instead of gas;
- entering the goal or a sheep gives that feature alone and ends the episode;
- bumping into the edge or a house leaves the agent in place and costs the gas (or mud) of its cell.

The reward is features . weights. Coins stay where they are, so the state is the agent's cell
alone, as in the paper; `board.tabular()` gives the exact MDP for planning. The builders of named
boards (`agents.envs.delivery`, `agents.envs.random_mdp`) and the Gymnasium environment
(`agents.envs.gridworld`) build on this module, which imports none of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from agents.planning import TabularMDP

FEATURES = ("gas", "goal", "sheep", "coin", "roadblock", "mud")
BLANK, GOAL, HOUSE, SHEEP, COIN, ROADBLOCK, MUD = range(7)
CELL_NAMES = ("blank", "goal", "house", "sheep", "coin", "roadblock", "mud")
CELL_CHARS = ".GHScRm"
TERMINAL_CELLS = (GOAL, SHEEP)
# up, right, down, left as (row, column) steps
ACTIONS = np.array([(-1, 0), (0, 1), (1, 0), (0, -1)])
ACTION_NAMES = ("up", "right", "down", "left")

# Reward features earned by entering each kind of cell (houses are never entered).
_ENTER_FEATURES = np.zeros((7, len(FEATURES)))
_ENTER_FEATURES[BLANK, 0] = 1
_ENTER_FEATURES[GOAL, 1] = 1
_ENTER_FEATURES[SHEEP, 2] = 1
_ENTER_FEATURES[COIN, [0, 3]] = 1
_ENTER_FEATURES[ROADBLOCK, [0, 4]] = 1
_ENTER_FEATURES[MUD, 5] = 1

_COLORS = np.array(
    [
        (236, 236, 236),  # blank
        (46, 160, 67),  # goal
        (120, 82, 48),  # house
        (250, 250, 250),  # sheep
        (242, 196, 15),  # coin
        (214, 69, 65),  # roadblock
        (94, 64, 40),  # mud
    ],
    dtype=np.uint8,
)
_AGENT_COLOR = np.array((33, 99, 201), dtype=np.uint8)
_SHEEP_MARK = np.array((40, 40, 40), dtype=np.uint8)


@dataclass(frozen=True)
class Board:
    """A gridworld layout with its true reward weights (over FEATURES) and discount."""

    cells: np.ndarray  # (height, width) cell codes
    reward_weights: np.ndarray  # (6,)
    name: str = "board"
    gamma: float = 0.999
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        cells = np.asarray(self.cells, dtype=np.int64)
        if cells.ndim != 2 or cells.min() < 0 or cells.max() >= len(CELL_NAMES):
            raise ValueError(f"cells must be a 2-d grid of codes 0..{len(CELL_NAMES) - 1}")
        if not np.any(~np.isin(cells, (HOUSE, *TERMINAL_CELLS))):
            raise ValueError("a board needs at least one cell the agent can start in")
        object.__setattr__(self, "cells", cells)
        object.__setattr__(self, "reward_weights", np.asarray(self.reward_weights, dtype=np.float64))

    @classmethod
    def from_text(
        cls, rows: list[str] | tuple[str, ...], reward_weights, name: str = "board", gamma: float = 0.999
    ) -> Board:
        """Rows of CELL_CHARS ('.' blank, G goal, H house, S sheep, c coin, R roadblock, m mud)."""
        try:
            cells = np.array([[CELL_CHARS.index(ch) for ch in row] for row in rows])
        except ValueError as error:
            raise ValueError(f"board rows may only hold {CELL_CHARS!r}: {error}") from error
        return cls(cells, reward_weights, name=name, gamma=gamma)

    @property
    def shape(self) -> tuple[int, int]:
        return self.cells.shape

    @property
    def n_states(self) -> int:
        return self.cells.size

    def to_text(self, agent: int | None = None) -> str:
        chars = np.array(list(CELL_CHARS))[self.cells]
        if agent is not None:
            chars[np.unravel_index(agent, self.shape)] = "@"
        return "\n".join("".join(row) for row in chars)

    def tabular(self) -> TabularMDP:
        """The exact MDP: one state per cell (houses and terminal cells absorbing)."""
        if "mdp" in self._cache:
            return self._cache["mdp"]
        height, width = self.shape
        flat = self.cells.ravel()
        rows, cols = np.divmod(np.arange(flat.size), width)
        target_r = rows[:, None] + ACTIONS[None, :, 0]
        target_c = cols[:, None] + ACTIONS[None, :, 1]
        inside = (target_r >= 0) & (target_r < height) & (target_c >= 0) & (target_c < width)
        target = np.where(inside, target_r * width + target_c, 0)
        moves = inside & (flat[target] != HOUSE)
        next_state = np.where(moves, target, np.arange(flat.size)[:, None])
        bump = np.where(flat == MUD, 5, 0)  # staying put costs the gas (or mud) of the cell
        features = np.where(moves[..., None], _ENTER_FEATURES[flat[next_state]], 0.0)
        features[~moves, bump[np.nonzero(~moves)[0]]] = 1.0
        absorbing = np.isin(flat, (HOUSE, *TERMINAL_CELLS))
        features[absorbing] = 0.0
        transitions = np.zeros((flat.size, len(ACTIONS), flat.size))
        np.put_along_axis(transitions, next_state[..., None], 1.0, axis=-1)
        start = (~absorbing).astype(np.float64) / (~absorbing).sum()
        mdp = TabularMDP(
            transitions=transitions,
            features=features,
            absorbing=absorbing,
            start=start,
            gamma=self.gamma,
            feature_names=FEATURES,
            reward_weights=self.reward_weights,
            name=self.name,
        )
        self._cache["mdp"] = mdp
        self._cache["next_state"] = next_state
        return mdp

    def next_states(self) -> np.ndarray:
        """(S, A) the cell each action leads to (transitions are deterministic)."""
        self.tabular()
        return self._cache["next_state"]

    def render_rgb(self, agent: int | None = None, cell_px: int = 24) -> np.ndarray:
        """An RGB image (H*cell_px, W*cell_px, 3) of the board with the agent drawn as a square."""
        image = _COLORS[self.cells].repeat(cell_px, 0).repeat(cell_px, 1)
        inset = max(1, cell_px // 3)
        for r, c in zip(*np.nonzero(self.cells == SHEEP)):
            image[
                r * cell_px + inset : (r + 1) * cell_px - inset,
                c * cell_px + inset : (c + 1) * cell_px - inset,
            ] = _SHEEP_MARK
        image[::cell_px, :] = 180  # grid lines
        image[:, ::cell_px] = 180
        if agent is not None:
            r, c = divmod(int(agent), self.shape[1])
            pad = max(1, cell_px // 5)
            image[
                r * cell_px + pad : (r + 1) * cell_px - pad, c * cell_px + pad : (c + 1) * cell_px - pad
            ] = _AGENT_COLOR
        return image
