"""Random gridworld MDPs over the parameter grid of Knox et al. (TMLR 2024).

Each board draws its height, width, cell-type fractions and reward weights from the grid; sheep,
roadblocks and coins (and optionally mud and houses) fill exact counts of distinct blank cells,
then one goal cell is placed anywhere. Gas always costs 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.envs.board import BLANK, COIN, GOAL, HOUSE, MUD, ROADBLOCK, SHEEP, Board


@dataclass(frozen=True)
class RandomMDPGrid:
    """The parameter grid. Defaults are the paper's; mud and houses are off there (fraction 0)."""

    heights: tuple[int, ...] = (3, 6, 10, 15)
    widths: tuple[int, ...] = (5, 6, 10)
    sheep_fractions: tuple[float, ...] = (0.0, 0.1, 0.3)
    roadblock_fractions: tuple[float, ...] = (0.0, 0.1, 0.5, 0.8)
    coin_fractions: tuple[float, ...] = (0.0, 0.1, 0.2)
    mud_fractions: tuple[float, ...] = (0.0,)
    house_fractions: tuple[float, ...] = (0.0,)
    goal_rewards: tuple[float, ...] = (0.0, 1.0, 5.0, 10.0, 50.0)
    sheep_rewards: tuple[float, ...] = (-5.0, -10.0, -50.0, -100.0)
    coin_rewards: tuple[float, ...] = (1.0,)
    roadblock_rewards: tuple[float, ...] = (-2.0, -5.0, -10.0)
    mud_rewards: tuple[float, ...] = (-1.0, -2.0, -3.0)
    gas_reward: float = -1.0
    gamma: float = 0.999


PAPER_GRID = RandomMDPGrid()


def random_board(rng: np.random.Generator, grid: RandomMDPGrid = PAPER_GRID, name: str = "random") -> Board:
    """One random board; the same generator state gives the same board."""
    height, width = int(rng.choice(grid.heights)), int(rng.choice(grid.widths))
    n_cells = height * width
    cells = np.full(n_cells, BLANK)
    used = 0.0
    # Fractions are redrawn until the cell types fit on the board together (as in the paper).
    for kind, choices in (
        (SHEEP, grid.sheep_fractions),
        (ROADBLOCK, grid.roadblock_fractions),
        (COIN, grid.coin_fractions),
        (MUD, grid.mud_fractions),
        (HOUSE, grid.house_fractions),
    ):
        fraction = _draw_fitting(rng, choices, 1.0 - used)
        used += fraction
        blanks = np.flatnonzero(cells == BLANK)
        cells[rng.choice(blanks, size=int(fraction * n_cells), replace=False)] = kind
    cells[rng.integers(n_cells)] = GOAL
    if not np.any(~np.isin(cells, (GOAL, SHEEP, HOUSE))):
        cells[np.flatnonzero(cells != GOAL)[0]] = BLANK  # keep at least one start cell
    weights = np.array(
        [
            grid.gas_reward,
            rng.choice(grid.goal_rewards),
            rng.choice(grid.sheep_rewards),
            rng.choice(grid.coin_rewards),
            rng.choice(grid.roadblock_rewards),
            rng.choice(grid.mud_rewards),
        ],
        dtype=np.float64,
    )
    return Board(cells.reshape(height, width), weights, name=name, gamma=grid.gamma)


def _draw_fitting(rng: np.random.Generator, choices: tuple[float, ...], room: float) -> float:
    fitting = [c for c in choices if c < room]
    if not fitting:
        raise ValueError(f"no fraction in {choices} fits in the remaining {room:.2f} of the board")
    return float(rng.choice(fitting))
