"""prefengine/RecSim-v0 on a small preference world: API, seeding, the click and leave model against
hand-set extremes and frequencies, the user's goal against the world's own truth, scorer policies."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import agents.envs  # noqa: F401
from agents.envs.recsim import RecSimEnv, scorer_policy
from agents.ppo import make_vector_env
from recsys.errors import UserInputError

WORLD = {"world": "toy", "world_seed": 0,
         "world_overrides": {"n_users": 60, "n_items": 80, "interactions_per_user": 8.0}}
SURE_CLICK = {"click_bias": 50.0, "position_bias": 1.0, "leave_bias": -50.0}


def make(**kwargs) -> RecSimEnv:
    return RecSimEnv(**WORLD, **kwargs)


def stated_match_from_catalog(env: RecSimEnv, user: int, item: int) -> float:
    """Agreement of an item with a user's statements, read from the catalog columns by name."""
    catalog = env.world.items.catalog().frame
    rows = env.world.preferences[env.world.preferences["user"] == user]
    total = 0.0
    for row in rows.itertuples():
        sign = 1.0 if row.polarity == "like" else -1.0
        if row.kind == "aspect":
            total += sign * (catalog.loc[item, f"aspect_{row.aspect}"] == row.value)
        else:
            total += sign * (catalog.loc[item, "category"] == row.category)
    return total / len(rows)


def test_check_env_and_vector_env():
    env = gym.make("prefengine/RecSim-v0", **WORLD)
    check_env(env.unwrapped, skip_render_check=True)
    envs = make_vector_env("prefengine/RecSim-v0", WORLD, 2)
    obs, infos = envs.reset(seed=0)
    assert obs.shape == (2, env.observation_space.shape[0]) and infos["user"].shape == (2,)
    for _ in range(5):
        obs, rewards, terminated, truncated, infos = envs.step(envs.action_space.sample())
        assert set(np.unique(rewards)) <= {0.0, 1.0}
    envs.close()


def test_same_seed_same_session():
    def session(seed):
        env = make()
        obs, info = env.reset(seed=seed)
        slates = np.random.default_rng(0).integers(0, 80, size=(20, 5))
        trace = [info["user"]]
        for slate in slates:
            obs, reward, terminated, truncated, info = env.step(slate)
            trace += [reward, info["human_goal_reward"]]
            if terminated or truncated:
                break
        return trace

    assert session(3) == session(3)
    assert any(session(3) != session(s) for s in (4, 5, 6))


def test_sure_click_takes_the_first_new_item_and_pays_the_users_goal():
    env = make(**SURE_CLICK, max_steps=3)
    _, info = env.reset(seed=1, options={"user": 7})
    liked = np.flatnonzero(env.world.truly_liked(np.full(80, 7), np.arange(80)))
    disliked = np.setdiff1d(np.arange(80), liked)
    a, b = int(liked[0]), int(disliked[0])
    _, reward, terminated, truncated, info = env.step([a, b, b, b, b])
    assert reward == 1.0 and env.last_click == a and not (terminated or truncated)
    assert info["human_goal_reward"] == pytest.approx(1.0 + 0.5 * stated_match_from_catalog(env, 7, a), abs=1e-6)
    assert env.fatigue == pytest.approx(0.1)  # a liked click adds no disappointment
    obs, reward, _, _, info = env.step([a, b, a, b, a])  # a is consumed now: the user clicks b
    assert env.last_click == b and obs[-80 + a] == 1.0 and obs[-80 + b] == 1.0
    assert info["human_goal_reward"] == pytest.approx(0.5 * stated_match_from_catalog(env, 7, b), abs=1e-6)
    assert env.fatigue == pytest.approx(0.2 + 0.3)
    _, reward, terminated, truncated, info = env.step([a, a, b, b, a])  # nothing new: a skip, then the cap
    assert reward == 0.0 and truncated and not terminated
    assert info["clicks"] == 2.0 and info["liked_clicks"] == 1.0 and info["liked_share_of_clicks"] == 0.5


def test_leave_and_position_probabilities_match_the_model():
    # No click: fatigue 0.1 + 0.3 after the first step, so leave_bias -0.4 makes leaving a coin flip.
    env = make(click_bias=-50.0, leave_bias=-0.4)
    left = 0
    for seed in range(400):
        env.reset(seed=seed)
        left += env.step([0, 1, 2, 3, 4])[2]
    assert left / 400 == pytest.approx(0.5, abs=0.08)
    # Position 0 already consumed, so a click needs the user to go on to position 1: probability 0.5.
    env = make(click_bias=50.0, leave_bias=-50.0, position_bias=0.5)
    clicks = 0
    for seed in range(400):
        env.reset(seed=seed)
        env.step([0, 9, 9, 9, 9])
        clicks += env.step([0, 1, 2, 3, 4])[1]
    assert clicks / 400 == pytest.approx(0.5, abs=0.08)


def test_scorer_policy_shows_the_top_items_not_yet_consumed():
    env = make(**SURE_CLICK)
    obs, info = env.reset(seed=0)
    scores = np.arange(80, dtype=float)[None, :]  # item 79 best
    policy = scorer_policy(lambda users: np.repeat(scores, len(users), axis=0), slate_size=5)
    slate = policy(obs[None], {"user": np.array([info["user"]])})
    np.testing.assert_array_equal(slate, [[79, 78, 77, 76, 75]])
    obs, *_ = env.step(slate[0])
    np.testing.assert_array_equal(policy(obs[None], {"user": np.array([info["user"]])}), [[78, 77, 76, 75, 74]])


@pytest.mark.parametrize("kwargs", [{"slate_size": 0}, {"slate_size": 81}, {"position_bias": 2.0},
                                    {"world_overrides": {"n_users": -1}}])
def test_bad_arguments_are_user_errors(kwargs):
    with pytest.raises(UserInputError):
        RecSimEnv(**{**WORLD, **kwargs})


def test_a_serving_bundle_ranks_the_slates(tmp_path):
    from agents.recommenders import recommender_policy
    from recsys.export.embeddings import write_bundle

    rng = np.random.default_rng(0)
    users, items = rng.standard_normal((60, 8)).astype(np.float32), rng.standard_normal((80, 8)).astype(np.float32)
    # The bundle knows users 0..49 only, and lists items in reverse order (ids are matched, not positions).
    order = np.arange(80)[::-1]
    bundle = write_bundle(tmp_path / "bundle", users[:50], items[order], [str(u) for u in range(50)],
                          [str(i) for i in order], {"title": [f"t{i}" for i in order], "category": ["c"] * 80},
                          np.arange(80)[order], {"indptr": np.zeros(51, dtype=np.int64), "indices": np.zeros(0, np.int64)},
                          {}, "mf")
    policy = recommender_policy(bundle, "prefengine/RecSim-v0", WORLD)
    env = make()
    obs, info = env.reset(seed=0, options={"user": 3})
    expected = np.argsort(-(users[3] @ items.T), kind="stable")[:5]
    np.testing.assert_array_equal(policy(obs[None], {"user": np.array([3])})[0], expected)
    obs, info = env.reset(seed=0, options={"user": 55})  # unknown to the bundle: most popular items first
    np.testing.assert_array_equal(policy(obs[None], {"user": np.array([55])})[0], [79, 78, 77, 76, 75])
