"""The delivery gridworld of Knox et al. (TMLR 2024) as a Gymnasium environment.

The board (cells, moves, reward features, the exact MDP) is `agents.envs.board`; the delivery
board's weights are [-1, +50, -50, +1, -1, -2]. The per-step feature vector is in
`info["reward_features"]`; `board.tabular()` gives the exact MDP for planning. The named boards come
from `agents.envs.delivery` and `agents.envs.random_mdp`.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from agents.envs.board import ACTIONS, TERMINAL_CELLS, Board
from agents.envs.delivery import delivery_board
from agents.envs.random_mdp import random_board


class GridWorldEnv(gym.Env):
    """Gymnasium environment over a `Board`: observation = cell index (row * width + column).

    board: a Board, "delivery" (the paper's 10x10 delivery board) or "random" (a random MDP from
    the paper's parameter grid, drawn with `board_seed`). Episodes start in a uniformly random
    non-terminal cell (or `options={"start": cell}`), end (`terminated`) on entering the goal or a
    sheep and are cut (`truncated`) after `max_episode_steps` steps.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(
        self,
        board: Board | str = "delivery",
        board_seed: int | None = None,
        max_episode_steps: int = 200,
        render_mode: str | None = None,
    ) -> None:
        if isinstance(board, str):
            board = make_board(board, board_seed)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        if max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
        self.board = board
        self.mdp = board.tabular()
        self.render_mode = render_mode
        self.max_episode_steps = max_episode_steps
        self.observation_space = spaces.Discrete(board.n_states)
        self.action_space = spaces.Discrete(len(ACTIONS))
        self._next = board.next_states()
        self._rewards = self.mdp.rewards()
        self._state = int(self.mdp.start_states()[0])
        self._steps = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        start = (options or {}).get("start")
        if start is None:
            self._state = int(self.np_random.choice(self.mdp.n_states, p=self.mdp.start))
        else:
            start = int(start)
            if not 0 <= start < self.mdp.n_states or self.mdp.start[start] == 0:
                raise ValueError(f"start cell {start} is not a valid start state")
            self._state = start
        self._steps = 0
        return self._state, {"position": self._position()}

    def step(self, action):
        action = int(action)
        if not self.action_space.contains(action):
            raise ValueError(f"action must be in 0..{len(ACTIONS) - 1}, got {action}")
        features = self.mdp.features[self._state, action].copy()
        reward = float(self._rewards[self._state, action])
        self._state = int(self._next[self._state, action])
        self._steps += 1
        terminated = bool(self.board.cells.flat[self._state] in TERMINAL_CELLS)
        truncated = not terminated and self._steps >= self.max_episode_steps
        info = {"reward_features": features, "position": self._position()}
        return self._state, reward, terminated, truncated, info

    def render(self):
        if self.render_mode == "ansi":
            return self.board.to_text(self._state) + "\n"
        if self.render_mode == "rgb_array":
            return self.board.render_rgb(self._state)
        return None

    def _position(self) -> tuple[int, int]:
        return divmod(self._state, self.board.shape[1])


def make_board(kind: str, board_seed: int | None = None) -> Board:
    """A named board: "delivery" or "random" (drawn from the paper's grid with `board_seed`)."""
    if kind == "delivery":
        return delivery_board()
    if kind == "random":
        return random_board(np.random.default_rng(board_seed))
    raise ValueError(f"unknown board {kind!r}; use 'delivery', 'random' or a Board")
