"""The 10x10 delivery board: reach the goal, avoid sheep, pick up coins, skirt roadblocks and mud."""

from __future__ import annotations

import numpy as np

from agents.envs.board import Board

# True weights over (gas, goal, sheep, coin, roadblock, mud), as in Knox et al.
DELIVERY_WEIGHTS = np.array([-1.0, 50.0, -50.0, 1.0, -1.0, -2.0])

# '.' blank, G goal, H house, S sheep, c coin, R roadblock, m mud
DELIVERY_LAYOUT = (
    "....c.H...",
    ".HH....R.G",
    ".HH.S..R..",
    "....mmmR..",
    "c...mmm..S",
    ".R..mmm.HH",
    ".R.....cHH",
    "...S.c....",
    ".HH...RR.c",
    ".HH.c.....",
)


def delivery_board(gamma: float = 0.999) -> Board:
    return Board.from_text(DELIVERY_LAYOUT, DELIVERY_WEIGHTS, name="delivery", gamma=gamma)
