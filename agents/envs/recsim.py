"""`prefengine/RecSim-v0`: a recommender shows slates to users of the preference world in sessions.

Each episode is one session of one user drawn from the world (`recsys.data.world`: true utilities,
Big-Five traits, stated preferences). Every step the agent shows a slate of `slate_size` items
(a MultiDiscrete action of item ids). The user scans the slate top-down (cascade): position j is
examined with probability `position_bias ** j`; an examined item not consumed before is clicked
with probability

    sigmoid(click_bias + taste_weight * z(u, i) + lure_weight * lure(i) - fatigue),

where z is the item's true utility relative to the user's like threshold, in units of the user's
utility spread, and lure is the world's item attractiveness to people who will *not* like it
(clickbait). The first click ends the scan. Fatigue grows every step, more after a slate without a
click and after a click on an item the user turns out not to like; the user leaves with
probability sigmoid(leave_bias + fatigue) after each step (`terminated`); `max_steps` caps a
session (`truncated`).

The platform's reward is engagement: 1 per click. The user's own goal is in
`info["human_goal_reward"]`: for the clicked item, 1 if the user truly likes it, plus
`stated_weight` times how well it matches the user's stated preferences (the mean, over their
statements, of +1 for an item with a liked pole or category, -1 for a disliked one, 0 otherwise).

Observation (float32): standardized Big-Five traits; the stated preferences as a signed pole per
aspect and a signed category vector; [step / max_steps, fatigue / 5, clicks / max_steps]; and last,
the mask of items already consumed this session. `info["user"]` is the user's internal id, so any
`Recommender` (scores of every item for users) can act as the policy (`scorer_policy`). The
adapters that make a recommender checkpoint or a serving bundle a `Recommender` live in
`agents.recommenders`: the simulator knows neither the exporter nor the serving layer.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Protocol

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from recsys.data.interactions import BIG_FIVE
from recsys.errors import UserInputError


class Recommender(Protocol):
    """What the simulator needs of a recommender: scores of every item for a batch of its users.

    `users` are the simulator's internal user ids (`info["user"]`), shape (n,); the answer is
    (n, n_items) (numpy, or a torch tensor), higher is better; -inf never shows an item.
    """

    def __call__(self, users: np.ndarray) -> np.ndarray: ...


@lru_cache(maxsize=4)
def _world(preset: str, seed: int, overrides: tuple):
    """One generated world per (preset, seed, overrides) per process: vector sub-envs share it."""
    from recsys.data.world import WorldConfig, generate_world

    return generate_world(WorldConfig.preset(preset, seed=seed, **dict(overrides)))


class UserTruth:
    """What the simulator needs of the world, as dense arrays (computed once per world)."""

    def __init__(self, world):
        from recsys.data.world.population import standardized_traits

        users = np.arange(world.n_users)
        utility = world.true_utility(users)
        model = world.utility
        self.n_users, self.n_items = world.n_users, world.n_items
        self.z = ((utility - model.like_threshold[:, None]) / np.maximum(model.user_std, 1e-9)[:, None]).astype(np.float32)
        self.liked = utility > model.like_threshold[:, None]
        lure = world.items.lure
        self.lure = ((lure - lure.mean()) / max(lure.std(), 1e-9)).astype(np.float32)
        self.traits = standardized_traits(world.population.traits).astype(np.float32)
        self.stated_aspects, self.stated_categories, self.stated_match = _stated(world)


def _stated(world) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per user: the preferred pole per aspect (+1/-1/0), category likes (+1) and dislikes (-1),
    and the (n_users, n_items) mean agreement of each item with the user's statements."""
    items = world.items
    n_users, n_aspects, n_categories = world.n_users, len(items.aspects), len(items.categories)
    aspect_index = {a.key: k for k, a in enumerate(items.aspects)}
    category_index = {c.name: k for k, c in enumerate(items.categories)}
    aspects = np.zeros((n_users, n_aspects), dtype=np.float32)
    categories = np.zeros((n_users, n_categories), dtype=np.float32)
    match = np.zeros((n_users, world.n_items), dtype=np.float32)
    counts = np.zeros(n_users, dtype=np.float32)
    category_onehot = np.eye(n_categories, dtype=np.float32)[items.category]
    prefs = world.preferences
    for user, kind, polarity, aspect, value, category in zip(
            prefs["user"].to_numpy(), prefs["kind"].to_numpy(), prefs["polarity"].to_numpy(),
            prefs["aspect"].to_numpy(), prefs["value"].to_numpy(), prefs["category"].to_numpy()):
        sign = 1.0 if polarity == "like" else -1.0
        if kind == "aspect":
            k = aspect_index[aspect]
            aspects[user, k] = sign * value  # the pole the user wants
            match[user] += sign * (items.aspect_values[:, k] == value)
        else:
            c = category_index[category]
            categories[user, c] = sign
            match[user] += sign * category_onehot[:, c]
        counts[user] += 1
    match /= np.maximum(counts, 1.0)[:, None]
    return aspects, categories, match


class RecSimEnv(gym.Env):
    metadata = {"render_modes": ["ansi"], "render_fps": 1}

    def __init__(
        self,
        world: str = "toy",
        world_seed: int = 0,
        world_overrides: dict | None = None,
        slate_size: int = 5,
        max_steps: int = 20,
        position_bias: float = 0.7,
        click_bias: float = -1.0,
        taste_weight: float = 1.0,
        lure_weight: float = 2.5,
        fatigue_per_step: float = 0.1,
        skip_fatigue: float = 0.3,
        disappointment: float = 0.3,
        leave_bias: float = -3.5,
        stated_weight: float = 0.5,
        render_mode: str | None = None,
    ):
        """
        Args:
            world, world_seed, world_overrides: the preference world (a WorldConfig preset, its seed and
                field overrides) whose users and items the simulator uses.
            slate_size: items shown per step; max_steps: the session cap.
            position_bias: probability of going on from one slate position to the next.
            click_bias, taste_weight, lure_weight: the click model (see the module docstring).
            fatigue_per_step, skip_fatigue, disappointment: fatigue added every step, after a slate
                without a click, and after clicking an item the user does not truly like.
            leave_bias: log-odds of leaving at zero fatigue.
            stated_weight: weight of the stated-preference match in the user's goal reward.
        """
        if slate_size < 1 or max_steps < 1:
            raise UserInputError(f"RecSim-v0: slate_size and max_steps must be >= 1 (got {slate_size}, {max_steps})")
        if not 0.0 <= position_bias <= 1.0:
            raise UserInputError(f"RecSim-v0: position_bias must be a probability, got {position_bias}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise UserInputError(f"RecSim-v0: render_mode must be one of {self.metadata['render_modes']}")
        self.world = _world(world, int(world_seed), tuple(sorted((world_overrides or {}).items())))
        self.truth = _truth(self.world)
        if slate_size > self.truth.n_items:
            raise UserInputError(f"RecSim-v0: slate_size {slate_size} exceeds the world's {self.truth.n_items} items")
        self.slate_size, self.max_steps = slate_size, max_steps
        self.position_bias, self.click_bias = position_bias, click_bias
        self.taste_weight, self.lure_weight = taste_weight, lure_weight
        self.fatigue_per_step, self.skip_fatigue, self.disappointment = fatigue_per_step, skip_fatigue, disappointment
        self.leave_bias, self.stated_weight = leave_bias, stated_weight
        self.render_mode = render_mode
        t = self.truth
        self.n_user_features = len(BIG_FIVE) + t.stated_aspects.shape[1] + t.stated_categories.shape[1] + 3
        dim = self.n_user_features + t.n_items
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(dim,), dtype=np.float32)
        self.action_space = spaces.MultiDiscrete(np.full(slate_size, t.n_items))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if options and "user" in options:
            self.user = int(options["user"])
            if not 0 <= self.user < self.truth.n_users:
                raise UserInputError(f"RecSim-v0: user {self.user} outside 0..{self.truth.n_users - 1}")
        else:
            self.user = int(self.np_random.integers(self.truth.n_users))
        self.t, self.fatigue, self.clicks, self.liked_clicks, self.goal_total = 0, 0.0, 0, 0, 0.0
        self.consumed = np.zeros(self.truth.n_items, dtype=bool)
        self.last_slate: np.ndarray | None = None
        self.last_click: int | None = None
        return self._observation(), {"user": self.user, "human_goal_reward": 0.0}

    def step(self, action):
        slate = np.asarray(action, dtype=np.int64).reshape(-1)
        if slate.shape != (self.slate_size,) or slate.min() < 0 or slate.max() >= self.truth.n_items:
            raise ValueError(f"RecSim-v0: action must be {self.slate_size} item ids in 0..{self.truth.n_items - 1}")
        t, u = self.truth, self.user
        self.t += 1
        self.last_slate, self.last_click = slate, None
        seen: set[int] = set()
        for position, item in enumerate(slate.tolist()):
            if position and self.np_random.random() >= self.position_bias:
                break  # the user stopped scanning: position j is examined with probability position_bias ** j
            if item in seen or self.consumed[item]:
                continue  # a repeat or an item the user already has: nothing to click
            seen.add(item)
            logit = self.click_bias + self.taste_weight * t.z[u, item] + self.lure_weight * t.lure[item] - self.fatigue
            if self.np_random.random() < 1.0 / (1.0 + np.exp(-logit)):
                self.last_click = item
                break
        reward, goal = 0.0, 0.0
        self.fatigue += self.fatigue_per_step
        if self.last_click is None:
            self.fatigue += self.skip_fatigue
        else:
            item = self.last_click
            self.consumed[item] = True
            self.clicks += 1
            reward = 1.0
            liked = bool(t.liked[u, item])
            self.liked_clicks += liked
            goal = float(liked) + self.stated_weight * float(t.stated_match[u, item])
            self.goal_total += goal
            if not liked:
                self.fatigue += self.disappointment
        leaves = self.np_random.random() < 1.0 / (1.0 + np.exp(-(self.leave_bias + self.fatigue)))
        truncated = not leaves and self.t >= self.max_steps
        info = {"user": u, "human_goal_reward": goal}
        if leaves or truncated:
            info.update(clicks=float(self.clicks), liked_clicks=float(self.liked_clicks),
                        liked_share_of_clicks=self.liked_clicks / self.clicks if self.clicks else 0.0,
                        session_steps=float(self.t))
        return self._observation(), reward, bool(leaves), bool(truncated), info

    def _observation(self) -> np.ndarray:
        t, u = self.truth, self.user
        session = np.array([self.t / self.max_steps, self.fatigue / 5.0, self.clicks / self.max_steps], dtype=np.float32)
        return np.concatenate([t.traits[u], t.stated_aspects[u], t.stated_categories[u], session,
                               self.consumed.astype(np.float32)])

    def render(self):
        if self.render_mode != "ansi":
            return None
        titles = self.world.items.title
        lines = [f"user {self.user}, step {self.t}/{self.max_steps}, clicks {self.clicks} "
                 f"(liked {self.liked_clicks}), fatigue {self.fatigue:.2f}"]
        if self.last_slate is not None:
            for position, item in enumerate(self.last_slate.tolist()):
                mark = "*" if item == self.last_click else " "
                liked = "liked" if self.truth.liked[self.user, item] else "     "
                lines.append(f" {mark} {position + 1}. [{liked}] {titles[item]}")
        return "\n".join(lines) + "\n"


@lru_cache(maxsize=4)
def _truth(world) -> UserTruth:
    """The dense truth of a cached world (worlds hash by identity)."""
    return UserTruth(world)


# --- recommenders as policies --------------------------------------------------------------------
def scorer_policy(scorer: Recommender, slate_size: int) -> Callable[[np.ndarray, dict], np.ndarray]:
    """A policy showing each user the top `slate_size` items by `scorer(users) -> (n, n_items)` scores,
    skipping the items already consumed this session (the last n_items entries of the observation)."""

    def act(obs: np.ndarray, infos: dict) -> np.ndarray:
        users = np.asarray(infos["user"], dtype=np.int64).reshape(-1)
        scores = scorer(users)
        scores = np.asarray(scores.detach().cpu().numpy() if hasattr(scores, "detach") else scores, dtype=np.float64)
        consumed = np.asarray(obs)[:, -scores.shape[1]:] > 0.5
        scores = np.where(consumed, -np.inf, scores)
        top = np.argpartition(-scores, slate_size - 1, axis=1)[:, :slate_size]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        return np.take_along_axis(top, order, axis=1)

    return act
