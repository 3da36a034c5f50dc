"""`prefengine/Collab-v0`: a learned agent and a scripted human collect items as a team.

The team's task is to collect every item on a square grid before the deadline; the env reward
is that team task reward (+1 per item, whoever collects it, and `completion_bonus` when the last
one is collected in time). The scripted human partner has its own goal: it wants to get items of
its goal kinds *itself* (the kinds are configurable), by collecting them or by being handed them,
and each such item pays `info["human_goal_reward"] = 1`.

The agent is faster than the noisy human, so an agent trained on the task reward alone races the
human to the nearest items and *dominates*: the team finishes sooner, the human achieves little.
The agent can also *help*: leave the human the item it is heading for, clear the blockers that
stand in the human's way (blockers stop the human only; the agent removes one by stepping on it),
and *hand items over*.

Actions: 0 stay, 1-4 move up/down/left/right (stepping onto an item collects it for the team, as the
agent's own), 5 pick up. Hand-over:
- `pick up` lifts the item of the first observation slot (the nearest item, ties to the lower item
  index) if it lies on a neighbouring cell and the agent's hands are empty; otherwise the agent just
  stays. A carried item is off the board but not yet collected; the human treats it as lying on the
  agent's cell (it walks up to the agent to take it when it is its nearest goal).
- The agent carries one item at a time and hands it over automatically whenever the two players stand
  on the same or neighbouring cells after either one's move. A handed item counts exactly as if the
  human had collected it itself: +1 team task reward, and `human_goal_reward = 1` if it is of a
  human goal kind. (Automatic, because a hand action would only add a step the agent must learn to
  take at the one moment it is useful; carrying has no other use.) An item still carried at the
  deadline is not collected, so the task fails.

Observation (float32 in [-1, 1], positions relative to the agent so a small MLP learns fast): the
agent's own cell; the human's offset; [carrying an item, of a human goal kind, the human's target]; per
item slot (nearest first, items on the board only) [present, of a human goal kind, the human's current
target, row offset, column offset, the human's path distance to it]; per blocker slot (nearest first)
[present, row offset, column offset]; the fraction of time left. The deadline is part of the task (and
observed), so reaching it `terminated` the episode. The episode's last info holds `task_success`,
`items_by_agent`, `items_by_human` (collected by the human from the board), `items_handed` and
`blockers_cleared`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from recsys.errors import UserInputError

# stay, up, down, left, right as (row, col) steps; the action after the moves picks up an item
MOVES = np.array([(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)], dtype=np.int64)
PICK_UP = len(MOVES)
AGENT_FEATURES = ("row", "col", "human_row_offset", "human_col_offset", "carrying", "carrying_goal_kind",
                  "carrying_human_target")
ITEM_FEATURES = ("present", "goal_kind", "human_target", "row_offset", "col_offset", "human_distance")
BLOCKER_FEATURES = ("present", "row_offset", "col_offset")


class CollabEnv(gym.Env):
    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(
        self,
        size: int = 6,
        n_items: int = 5,
        n_kinds: int = 2,
        human_goal_kinds: Sequence[int] | None = (0,),
        n_blockers: int = 5,
        time_limit: int = 25,
        completion_bonus: float = 2.0,
        human_noise: float = 0.3,
        human_idle: float = 0.3,
        render_mode: str | None = None,
    ):
        """
        Args:
            size: side of the square grid.
            n_items: items to collect; the task succeeds when all are collected before `time_limit`.
            n_kinds: item kinds (kinds are drawn uniformly per item).
            human_goal_kinds: kinds the human wants to collect itself (None: every kind).
            n_blockers: cells the human cannot cross; the agent clears one by stepping on it.
            time_limit: the deadline in steps.
            completion_bonus: team reward for collecting the last item before the deadline.
            human_noise: probability that the human takes a uniformly random move.
            human_idle: probability that the human does nothing this step (it is slower than the agent).
        """
        goal_kinds = tuple(range(n_kinds)) if human_goal_kinds is None else tuple(int(k) for k in human_goal_kinds)
        if size < 3 or n_items < 1 or time_limit < 1 or n_blockers < 0 or n_kinds < 1:
            raise UserInputError(f"Collab-v0: need size >= 3, n_items >= 1, n_kinds >= 1, n_blockers >= 0, "
                                 f"time_limit >= 1 (got size={size}, n_items={n_items}, n_kinds={n_kinds}, "
                                 f"n_blockers={n_blockers}, time_limit={time_limit})")
        if n_items + n_blockers + 2 > size * size:
            raise UserInputError(f"Collab-v0: {n_items} items and {n_blockers} blockers do not fit a {size}x{size} grid")
        if not goal_kinds or any(k < 0 or k >= n_kinds for k in goal_kinds):
            raise UserInputError(f"Collab-v0: human_goal_kinds {list(goal_kinds)} must be non-empty kinds in 0..{n_kinds - 1}")
        for name, p in (("human_noise", human_noise), ("human_idle", human_idle)):
            if not 0.0 <= p <= 1.0:
                raise UserInputError(f"Collab-v0: {name} must be a probability, got {p}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise UserInputError(f"Collab-v0: render_mode must be one of {self.metadata['render_modes']}")
        self.size, self.n_items, self.n_kinds, self.n_blockers = size, n_items, n_kinds, n_blockers
        self.human_goal_kinds = goal_kinds
        self.time_limit, self.human_noise, self.human_idle = time_limit, human_noise, human_idle
        self.completion_bonus = completion_bonus
        self.render_mode = render_mode
        obs_dim = len(AGENT_FEATURES) + len(ITEM_FEATURES) * n_items + len(BLOCKER_FEATURES) * n_blockers + 1
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(obs_dim,), dtype=np.float32)
        self.action_space = spaces.Discrete(len(MOVES) + 1)
        self._neighbours = [self._cell_neighbours(c) for c in range(size * size)]

    # --- gymnasium API ------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """A random layout, or the one in `options["layout"]`: {"agent": (row, col), "human": (row, col),
        "items": [(row, col, kind), ...] (exactly n_items), "blockers": [(row, col), ...] (exactly n_blockers)}."""
        super().reset(seed=seed)
        cells = self.np_random.permutation(self.size * self.size)
        kinds = self.np_random.integers(0, self.n_kinds, size=self.n_items)
        if options and "layout" in options:
            cells, kinds = self._layout(options["layout"])
        self.agent, self.human = int(cells[0]), int(cells[1])
        self.item_cells = np.asarray(cells[2:2 + self.n_items], dtype=np.int64)
        self.item_kinds = np.asarray(kinds, dtype=np.int64)
        self.item_is_goal = np.isin(self.item_kinds, self.human_goal_kinds)
        self.item_left = np.ones(self.n_items, dtype=bool)  # still on the board
        # Plain Python containers: the human's path search runs every step and numpy scalars are slow there.
        self.item_at = {int(c): i for i, c in enumerate(self.item_cells)}
        self.blocker_cells = np.asarray(cells[2 + self.n_items:2 + self.n_items + self.n_blockers], dtype=np.int64)
        self.blocked = bytearray(self.size * self.size)
        for cell in self.blocker_cells:
            self.blocked[int(cell)] = 1
        self.carried: int | None = None  # the index of the item in the agent's hands
        self.t = 0
        self.by_agent = self.by_human = self.handed = self.human_goal_total = self.blockers_cleared = 0
        self._plan_human()
        return self._observation(), {"human_goal_reward": 0.0}

    def step(self, action):
        action = int(action)
        if not self.action_space.contains(action):
            raise ValueError(f"Collab-v0: action {action} outside Discrete({self.action_space.n})")
        self.t += 1
        task_reward, human_goal_reward = 0.0, 0.0
        # The agent moves first, so when both reach an item on the same step the agent takes it.
        if action == PICK_UP:
            replan = self._pick_up()  # the human's target may be gone
        else:
            moved_to = self._moved(self.agent, action)
            replan = self.carried is not None and moved_to != self.agent  # the carried item moves along
            self.agent = moved_to
            if self.blocked[self.agent]:
                self.blocked[self.agent] = 0
                self.blockers_cleared += 1
                replan = True  # a cleared blocker may open a shorter path
            if self._collect(self.agent) is not None:
                task_reward += 1.0
                self.by_agent += 1
                replan = True  # the human's target may be gone
        received = [self._hand_over()]
        if replan or received[0] is not None:
            self._plan_human()
        moved_to = self._human_move()
        if moved_to != self.human:
            self.human = moved_to
            kind = self._collect(self.human)
            if kind is not None:
                self.by_human += 1
                received.append(kind)
            received.append(self._hand_over())
            self._plan_human()
        for kind in received:
            if kind is not None:  # the human got an item, from the board or from the agent's hands
                task_reward += 1.0
                if kind in self.human_goal_kinds:
                    human_goal_reward += 1.0
                    self.human_goal_total += 1
        completed = not self.item_left.any() and self.carried is None
        if completed:
            task_reward += self.completion_bonus
        done = completed or self.t >= self.time_limit
        info = {"human_goal_reward": human_goal_reward}
        if done:
            info.update(task_success=float(completed), items_by_agent=float(self.by_agent),
                        items_by_human=float(self.by_human), items_handed=float(self.handed),
                        blockers_cleared=float(self.blockers_cleared))
        return self._observation(), task_reward, done, False, info

    def render(self):
        if self.render_mode == "ansi":
            return self._text()
        if self.render_mode == "rgb_array":
            return self._image()
        return None

    def _layout(self, layout: dict) -> tuple[list[int], list[int]]:
        """Cells in reset order (agent, human, items, blockers) and item kinds from a layout option."""
        try:
            items = [tuple(item) for item in layout["items"]]
            blockers = [tuple(b) for b in layout.get("blockers", [])]
            points = [tuple(layout["agent"]), tuple(layout["human"]), *[i[:2] for i in items], *blockers]
            kinds = [int(i[2]) for i in items]
        except (KeyError, TypeError, IndexError, ValueError) as error:
            raise UserInputError(f"Collab-v0 layout: needs agent, human, items [(row, col, kind)], blockers "
                                 f"[(row, col)] ({error!r})") from None
        if len(items) != self.n_items or len(blockers) != self.n_blockers:
            raise UserInputError(f"Collab-v0 layout: {len(items)} items and {len(blockers)} blockers given, the env "
                                 f"has n_items={self.n_items}, n_blockers={self.n_blockers}")
        if any(not (0 <= r < self.size and 0 <= c < self.size) for r, c in points):
            raise UserInputError(f"Collab-v0 layout: every (row, col) must lie in the {self.size}x{self.size} grid")
        cells = [int(r) * self.size + int(c) for r, c in points]
        if len(set(cells[2:])) != len(cells) - 2 or set(cells[:2]) & set(cells[2:]):
            raise UserInputError("Collab-v0 layout: items, blockers and the two players must sit on distinct cells")
        if any(not 0 <= k < self.n_kinds for k in kinds):
            raise UserInputError(f"Collab-v0 layout: item kinds must lie in 0..{self.n_kinds - 1}")
        return cells, kinds

    # --- the human ----------------------------------------------------------------------------------
    def _human_move(self) -> int:
        roll = self.np_random.random()
        if roll < self.human_idle:
            return self.human
        if roll < self.human_idle + (1.0 - self.human_idle) * self.human_noise:
            return self._moved(self.human, int(self.np_random.integers(len(MOVES))), human=True)
        return self._next_cell

    def _plan_human(self) -> None:
        """Pick the human's target and its first step: the nearest reachable item of its goal kinds, else the
        nearest reachable item (ties to the lower item index), where the item in the agent's hands counts as
        lying on the agent's cell (the human walks up to take it); stay if nothing is reachable."""
        distance, parent = self._bfs(self.human)
        self._human_distance = distance
        candidates = list(self.item_at.items())
        if self.carried is not None:
            candidates.append((self.agent, self.carried))
        best, best_cell, best_key = None, self.human, None
        for cell, i in candidates:
            if distance[cell] < 0:
                continue
            key = (not self.item_is_goal[i], distance[cell], i)
            if best_key is None or key < best_key:
                best, best_cell, best_key = i, cell, key
        self.human_target = best
        cell = best_cell
        while cell != self.human and parent[cell] != self.human:
            cell = parent[cell]
        self._next_cell = cell

    def _bfs(self, start: int) -> tuple[list[int], list[int]]:
        """Distances (-1 unreachable) and parents over the cells the human may enter."""
        distance = [-1] * (self.size * self.size)
        parent = [-1] * (self.size * self.size)
        distance[start] = 0
        queue = deque([start])
        blocked, neighbours = self.blocked, self._neighbours
        while queue:
            cell = queue.popleft()
            for nxt in neighbours[cell]:
                if distance[nxt] < 0 and not blocked[nxt]:
                    distance[nxt], parent[nxt] = distance[cell] + 1, cell
                    queue.append(nxt)
        return distance, parent

    # --- helpers ------------------------------------------------------------------------------------
    def _cell_neighbours(self, cell: int) -> list[int]:
        r, c = divmod(cell, self.size)
        out = []
        for dr, dc in MOVES[1:]:
            if 0 <= r + dr < self.size and 0 <= c + dc < self.size:
                out.append(int((r + dr) * self.size + c + dc))
        return out

    def _moved(self, cell: int, action: int, human: bool = False) -> int:
        r, c = divmod(cell, self.size)
        dr, dc = MOVES[action]
        nr, nc = r + dr, c + dc
        if not (0 <= nr < self.size and 0 <= nc < self.size):
            return cell
        nxt = int(nr * self.size + nc)
        return cell if human and self.blocked[nxt] else nxt

    def _pick_up(self) -> bool:
        """Lift the item of the first observation slot if it is next to the agent and the hands are empty."""
        if self.carried is not None:
            return False
        ar, ac = divmod(self.agent, self.size)
        adjacent = [i for cell, i in self.item_at.items()
                    if abs(cell // self.size - ar) + abs(cell % self.size - ac) == 1]
        if adjacent:
            # No item ever lies under the agent (stepping on one collects it), so the nearest item is at
            # distance 1 exactly when some item is, and the observation's slot order breaks ties by index.
            self.carried = min(adjacent)
            del self.item_at[int(self.item_cells[self.carried])]
            self.item_left[self.carried] = False
        return bool(adjacent)

    def _hand_over(self) -> int | None:
        """Give the carried item to the human when the two are on the same or neighbouring cells; its kind."""
        if self.carried is None:
            return None
        ar, ac = divmod(self.agent, self.size)
        hr, hc = divmod(self.human, self.size)
        if abs(ar - hr) + abs(ac - hc) > 1:
            return None
        kind, self.carried = int(self.item_kinds[self.carried]), None
        self.handed += 1
        return kind

    def _collect(self, cell: int) -> int | None:
        i = self.item_at.pop(cell, None)
        if i is None:
            return None
        self.item_left[i] = False
        return int(self.item_kinds[i])

    def _observation(self) -> np.ndarray:
        # Plain Python on purpose: ~60 numbers, and a numpy call per feature costs more than the math.
        size, scale = self.size, self.size - 1
        ar, ac = divmod(self.agent, size)
        hr, hc = divmod(self.human, size)
        slots = []
        for i, cell in enumerate(self.item_cells.tolist()):
            if self.item_left[i]:
                r, c = divmod(cell, size)
                reach = self._human_distance[cell]
                slots.append((abs(r - ar) + abs(c - ac), i, [
                    1.0, float(self.item_is_goal[i]), float(i == self.human_target), (r - ar) / scale,
                    (c - ac) / scale, 1.0 if reach < 0 else min(reach / (2 * scale), 1.0)]))
        # Slots sorted nearest-first, collected items (all zeros) last: "go to slot 0" is one simple rule.
        slots.sort(key=lambda slot: slot[:2])
        carrying = self.carried is not None
        values = [ar / scale, ac / scale, (hr - ar) / scale, (hc - ac) / scale, float(carrying),
                  float(carrying and self.item_is_goal[self.carried]),
                  float(carrying and self.carried == self.human_target)]
        for _, _, features in slots:
            values += features
        values += [0.0] * (len(ITEM_FEATURES) * (self.n_items - len(slots)))
        blockers = sorted((abs(r - ar) + abs(c - ac), k, (r - ar) / scale, (c - ac) / scale)
                          for k, (r, c) in enumerate(divmod(cell, size) for cell in self.blocker_cells.tolist())
                          if self.blocked[r * size + c])
        for _, _, dr, dc in blockers:
            values += [1.0, dr, dc]
        values += [0.0] * (len(BLOCKER_FEATURES) * (self.n_blockers - len(blockers)))
        values.append(1.0 - self.t / self.time_limit)
        return np.array(values, dtype=np.float32)

    def _text(self) -> str:
        grid = [["." for _ in range(self.size)] for _ in range(self.size)]
        for cell in np.flatnonzero(np.frombuffer(self.blocked, dtype=np.uint8)):
            grid[cell // self.size][cell % self.size] = "#"
        for i in np.flatnonzero(self.item_left):
            r, c = divmod(int(self.item_cells[i]), self.size)
            grid[r][c] = "*" if self.item_kinds[i] in self.human_goal_kinds else "o"
        for cell, mark in ((self.human, "H"), (self.agent, "A" if self.agent != self.human else "B")):
            grid[cell // self.size][cell % self.size] = mark
        carried = "-" if self.carried is None else ("*" if self.item_is_goal[self.carried] else "o")
        header = (f"t={self.t}/{self.time_limit} agent={self.by_agent} human={self.by_human} "
                  f"handed={self.handed} carrying={carried}")
        return "\n".join([header, *("".join(row) for row in grid)]) + "\n"

    def _image(self, pixels: int = 16) -> np.ndarray:
        colours = {".": (235, 235, 235), "#": (60, 60, 60), "*": (230, 160, 20), "o": (120, 170, 230),
                   "H": (200, 40, 40), "A": (40, 140, 60), "B": (120, 90, 50)}
        rows = self._text().splitlines()[1:]
        image = np.zeros((self.size * pixels, self.size * pixels, 3), dtype=np.uint8)
        for r, row in enumerate(rows):
            for c, mark in enumerate(row):
                image[r * pixels:(r + 1) * pixels, c * pixels:(c + 1) * pixels] = colours[mark]
        return image
