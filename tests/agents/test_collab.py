"""prefengine/Collab-v0: API conformance, seeding, and the dynamics checked on hand-made layouts."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import agents.envs  # noqa: F401
from agents.envs.collab import CollabEnv
from agents.ppo import make_vector_env
from recsys.errors import UserInputError

STAY, UP, DOWN, LEFT, RIGHT, PICK_UP = range(6)


def deterministic_env(**kwargs) -> CollabEnv:
    """A human that never idles and never moves at random: its path is the BFS shortest path."""
    return CollabEnv(human_noise=0.0, human_idle=kwargs.pop("human_idle", 0.0), **kwargs)


def still_human_env(**kwargs) -> CollabEnv:
    """A human that never moves (idles every step): only the agent's actions change the board."""
    return CollabEnv(human_noise=0.0, human_idle=1.0, **kwargs)


def test_check_env_and_render():
    env = gym.make("prefengine/Collab-v0", render_mode="rgb_array")
    check_env(env.unwrapped, skip_render_check=True)
    env.reset(seed=0)
    image = env.render()
    assert image.shape == (6 * 16, 6 * 16, 3) and image.dtype == np.uint8
    text = CollabEnv(render_mode="ansi")
    text.reset(seed=0)
    board = text.render().splitlines()
    assert len(board) == 7 and all(len(row) == 6 for row in board[1:])


def test_same_seed_same_episode_and_different_seed_differs():
    def rollout(seed):
        env = CollabEnv()
        obs, _ = env.reset(seed=seed)
        actions = np.random.default_rng(123).integers(5, size=40)
        trace = [obs]
        for a in actions:
            obs, reward, terminated, truncated, info = env.step(a)
            trace += [obs, np.array([reward, info["human_goal_reward"]])]
            if terminated:
                break
        return np.concatenate(trace)

    a, b, c = rollout(7), rollout(7), rollout(8)
    np.testing.assert_array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_vector_env_steps_and_autoresets():
    envs = make_vector_env("prefengine/Collab-v0", {"time_limit": 5}, 3)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (3, envs.single_observation_space.shape[0])
    ends = 0
    for _ in range(12):
        obs, rewards, terminated, truncated, infos = envs.step(envs.action_space.sample())
        ends += int(terminated.sum())
        if terminated.any():
            assert "task_success" in infos["final_info"]
    assert ends >= 6  # a 5-step deadline ends every episode at least twice in 12 steps
    envs.close()


def test_agent_collects_and_human_follows_the_shortest_path_around_blockers():
    env = deterministic_env(size=5, n_items=2, n_blockers=3)
    layout = {"agent": (0, 0), "human": (2, 0), "items": [(0, 1, 1), (2, 4, 0)],
              "blockers": [(1, 1), (2, 1), (3, 1)]}
    env.reset(options={"layout": layout})
    assert env.human_target == 1  # the goal-kind item, reachable only around the blocker wall
    _, reward, terminated, _, info = env.step(RIGHT)
    assert (reward, info["human_goal_reward"], terminated) == (1.0, 0.0, False)
    # Shortest path (2,0)->(1,0)->(0,0)->(0,1)->(0,2)->(1,2)->(2,2)->(2,3)->(2,4): 8 moves, one done.
    for step in range(7):
        _, reward, terminated, _, info = env.step(STAY)
        if step < 6:
            assert reward == 0.0 and not terminated
    assert (reward, info["human_goal_reward"], terminated) == (1.0 + 2.0, 1.0, True)  # item + completion bonus
    assert info["task_success"] == 1.0 and info["items_by_human"] == 1.0 and env.human_goal_total == 1


@pytest.mark.parametrize(("agent_moves", "arrival"), [([STAY], 7), ([LEFT], 3)])
def test_clearing_a_blocker_shortens_the_humans_path(agent_moves, arrival):
    # The human at (2,0) wants the item at (2,3) behind the wall (1,1),(2,1),(3,1): 7 moves around it,
    # 3 through the gap the agent opens by stepping into (2,1) before the human moves.
    env = deterministic_env(size=5, n_items=2, n_blockers=3)
    env.reset(options={"layout": {"agent": (2, 2), "human": (2, 0), "items": [(4, 4, 1), (2, 3, 0)],
                                  "blockers": [(1, 1), (2, 1), (3, 1)]}})
    for step in range(1, arrival + 1):
        _, _, _, _, info = env.step(agent_moves[step - 1] if step <= len(agent_moves) else STAY)
        assert info["human_goal_reward"] == (1.0 if step == arrival else 0.0)
    assert env.blockers_cleared == (1 if agent_moves == [LEFT] else 0)


def test_agent_moves_first_on_a_tie_and_the_deadline_fails_the_task():
    env = deterministic_env(size=3, n_items=2, n_blockers=0)
    env.reset(options={"layout": {"agent": (0, 0), "human": (0, 2), "items": [(0, 1, 0), (2, 2, 1)],
                                  "blockers": []}})
    _, reward, _, _, info = env.step(RIGHT)  # both reach (0,1); the agent takes it, the human re-targets
    assert (reward, info["human_goal_reward"], env.by_agent, env.by_human, env.human) == (1.0, 0.0, 1, 0, 5)
    _, reward, terminated, _, info = env.step(STAY)  # the human reaches (2,2): a non-goal item
    assert (reward, info["human_goal_reward"], terminated, info["task_success"]) == (3.0, 0.0, True, 1.0)

    late = deterministic_env(size=5, n_items=1, n_blockers=0, time_limit=2)
    late.reset(options={"layout": {"agent": (0, 0), "human": (4, 0), "items": [(0, 4, 1)], "blockers": []}})
    _, _, terminated, _, _ = late.step(STAY)
    assert not terminated
    _, _, terminated, truncated, info = late.step(STAY)
    assert terminated and not truncated and info["task_success"] == 0.0 and late.human_goal_total == 0


def test_observation_lists_items_nearest_first_relative_to_the_agent():
    env = deterministic_env(size=5, n_items=2, n_blockers=1)
    obs, _ = env.reset(options={"layout": {"agent": (2, 2), "human": (0, 0), "items": [(4, 4, 0), (2, 3, 1)],
                                           "blockers": [(0, 4)]}})
    scale = 4
    # own cell, the human's offset, empty hands
    np.testing.assert_allclose(obs[:7], [2 / scale, 2 / scale, -2 / scale, -2 / scale, 0, 0, 0])
    # slot 0: the kind-1 item one step right; slot 1: the goal item (the human's target) at (+2, +2)
    np.testing.assert_allclose(obs[7:13], [1, 0, 0, 0, 1 / scale, 5 / (2 * scale)])
    np.testing.assert_allclose(obs[13:19], [1, 1, 1, 2 / scale, 2 / scale, 1.0])  # human distance 8, capped
    np.testing.assert_allclose(obs[19:22], [1, -2 / scale, 2 / scale])
    assert obs[-1] == 1.0 and obs.shape == env.observation_space.shape


def test_pick_up_carry_and_hand_over_a_goal_item():
    # The agent lifts the goal item next to it, walks it to the human (who never moves) and hands it over
    # on the step the two become neighbours: the human's goal and the team's task both count it then.
    env = still_human_env(size=5, n_items=2, n_blockers=0)
    env.reset(options={"layout": {"agent": (0, 0), "human": (4, 4), "items": [(0, 1, 0), (2, 2, 1)],
                                  "blockers": []}})
    assert env.human_target == 0
    obs, reward, _, _, info = env.step(PICK_UP)
    assert (reward, info["human_goal_reward"], env.carried, env.agent) == (0.0, 0.0, 0, 0)  # lifted, not moved
    np.testing.assert_allclose(obs[4:7], [1, 1, 1])  # carrying a goal-kind item, which the human wants
    np.testing.assert_allclose(obs[7:13], [1, 0, 0, 2 / 4, 2 / 4, 4 / 8])  # slot 0 now the other item
    assert env.human_target == 0  # still the goal item, now in the agent's hands
    for action in (DOWN, DOWN, DOWN, DOWN, RIGHT, RIGHT):  # (4,2): still two cells from the human
        _, reward, _, _, info = env.step(action)
        assert (reward, info["human_goal_reward"], env.carried) == (0.0, 0.0, 0)
    obs, reward, terminated, _, info = env.step(RIGHT)  # (4,3): next to the human
    assert (reward, info["human_goal_reward"], terminated, env.carried) == (1.0, 1.0, False, None)
    assert (env.handed, env.by_human, env.by_agent, env.human_goal_total) == (1, 0, 0, 1)
    np.testing.assert_allclose(obs[4:7], [0, 0, 0])
    assert env.human_target == 1
    _, reward, terminated, _, info = env.step(UP)  # (3,3) -> collect the last item at (2,2) two moves on
    _, reward, terminated, _, info = env.step(LEFT)
    _, reward, terminated, _, info = env.step(UP)
    assert (reward, terminated, info["task_success"], info["items_handed"], info["items_by_agent"]) == (
        3.0, True, 1.0, 1.0, 1.0)


def test_the_human_takes_the_item_when_it_walks_next_to_the_agent():
    # A non-goal item handed over is team progress but not the human's goal. The human walks its only
    # shortest path down column 2 to its goal item and passes the agent: the hand-over happens after the
    # human's move, in the same step as the pick-up.
    env = deterministic_env(size=5, n_items=2, n_blockers=0)
    env.reset(options={"layout": {"agent": (2, 2), "human": (0, 2), "items": [(2, 3, 1), (4, 2, 0)],
                                  "blockers": []}})
    _, reward, _, _, info = env.step(PICK_UP)
    assert (reward, info["human_goal_reward"], env.human, env.carried, env.handed) == (1.0, 0.0, 7, None, 1)
    for _ in range(2):
        _, reward, terminated, _, info = env.step(STAY)
        assert (reward, terminated) == (0.0, False)
    _, reward, terminated, _, info = env.step(STAY)  # the human collects its goal item: the last one
    assert (reward, info["human_goal_reward"], terminated, info["task_success"]) == (1.0 + 2.0, 1.0, True, 1.0)
    assert (info["items_handed"], info["items_by_human"], info["items_by_agent"]) == (1.0, 1.0, 0.0)


def test_the_human_walks_up_to_the_agent_for_a_carried_goal_item():
    # Its goal item in the agent's hands counts as lying on the agent's cell, nearer goals first: the
    # human leaves the non-goal item and walks 7 of the 8 cells to the standing agent, then takes it.
    env = deterministic_env(size=5, n_items=2, n_blockers=0)
    env.reset(options={"layout": {"agent": (0, 0), "human": (4, 4), "items": [(4, 0, 1), (0, 1, 0)],
                                  "blockers": []}})
    env.step(PICK_UP)
    assert (env.carried, env.human_target) == (1, 1)
    for step in range(2, 7):  # the human moves every step, the pick-up step included
        _, reward, _, _, info = env.step(STAY)
        assert (reward, env.carried) == (0.0, 1), step
    _, reward, _, _, info = env.step(STAY)
    assert (reward, info["human_goal_reward"], env.carried, env.handed, env.human_target) == (1.0, 1.0, None, 1, 0)
    assert abs(env.human // 5 - 0) + abs(env.human % 5 - 0) == 1


def test_pick_up_needs_empty_hands_and_a_neighbouring_item():
    env = still_human_env(size=5, n_items=2, n_blockers=0, time_limit=4)
    env.reset(options={"layout": {"agent": (2, 2), "human": (4, 4), "items": [(2, 3, 1), (1, 2, 0)],
                                  "blockers": []}})
    env.step(PICK_UP)  # two neighbours: the lower item index wins (the first observation slot)
    assert env.carried == 0 and env.item_left.tolist() == [False, True] and env.agent == 12
    env.step(PICK_UP)  # hands full: nothing happens
    assert env.carried == 0 and env.item_left.tolist() == [False, True] and env.agent == 12
    # The board is cleared, but the carried item never reaches the human: no completion, the task fails.
    _, reward, terminated, _, _ = env.step(UP)
    assert (reward, terminated, env.by_agent) == (1.0, False, 1)
    _, reward, terminated, _, info = env.step(STAY)
    assert (reward, terminated, info["task_success"], info["items_handed"]) == (0.0, True, 0.0, 0.0)
    bare = still_human_env(size=5, n_items=1, n_blockers=0)
    bare.reset(options={"layout": {"agent": (2, 2), "human": (4, 4), "items": [(0, 0, 0)], "blockers": []}})
    bare.step(PICK_UP)  # nothing next to the agent: it stays
    assert bare.carried is None and bare.item_left.all() and bare.agent == 12


@pytest.mark.parametrize("kwargs", [{"size": 2}, {"n_items": 40, "n_blockers": 10}, {"human_goal_kinds": [3]},
                                    {"human_noise": 1.5}, {"render_mode": "human"}])
def test_bad_arguments_are_user_errors(kwargs):
    with pytest.raises(UserInputError):
        CollabEnv(**kwargs)


def test_bad_layout_is_a_user_error():
    env = CollabEnv(size=4, n_items=1, n_blockers=0)
    with pytest.raises(UserInputError, match="distinct cells"):
        env.reset(options={"layout": {"agent": (0, 0), "human": (0, 1), "items": [(0, 0, 0)], "blockers": []}})
    with pytest.raises(UserInputError, match="n_items=1"):
        env.reset(options={"layout": {"agent": (0, 0), "human": (0, 1), "items": [], "blockers": []}})
