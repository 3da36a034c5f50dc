import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import agents  # noqa: F401  (registers the environments)
from agents.envs.board import COIN, FEATURES, GOAL, HOUSE, ROADBLOCK, SHEEP, Board
from agents.envs.delivery import DELIVERY_WEIGHTS
from agents.envs.gridworld import GridWorldEnv
from agents.envs.random_mdp import PAPER_GRID, random_board

UP, RIGHT, DOWN, LEFT = range(4)
WEIGHTS = np.array([-1.0, 10.0, -10.0, 1.0, -1.0, -2.0])


def tiny_env(rows, **kwargs) -> GridWorldEnv:
    return GridWorldEnv(Board.from_text(rows, WEIGHTS, name="tiny"), **kwargs)


@pytest.mark.parametrize(
    "env_id, kwargs", [("prefengine/Delivery-v0", {}), ("prefengine/RandomGrid-v0", {"board_seed": 4})]
)
def test_registered_envs_pass_the_gymnasium_checker(env_id, kwargs):
    for mode in ("ansi", "rgb_array"):
        env = gym.make(env_id, render_mode=mode, **kwargs)
        check_env(env.unwrapped)
        env.close()


def test_delivery_board_is_the_papers_setting():
    env = gym.make("prefengine/Delivery-v0").unwrapped
    assert env.board.shape == (10, 10)
    np.testing.assert_array_equal(env.board.reward_weights, [-1, 50, -50, 1, -1, -2])
    np.testing.assert_array_equal(DELIVERY_WEIGHTS, env.board.reward_weights)
    for cell in (GOAL, HOUSE, SHEEP, COIN, ROADBLOCK):
        assert (env.board.cells == cell).any()


def test_step_features_follow_the_cell_rules():
    # row 0: start . coin roadblock goal ; row 1: mud sheep house blank blank
    env = tiny_env([".cRG", "mSH."], max_episode_steps=50)
    env.reset(seed=0, options={"start": 0})
    _, reward, terminated, _, info = env.step(RIGHT)  # onto the coin: gas + coin
    np.testing.assert_array_equal(info["reward_features"], [1, 0, 0, 1, 0, 0])
    assert reward == pytest.approx(0.0) and not terminated
    _, reward, _, _, info = env.step(UP)  # bump into the edge from the coin cell: gas only
    np.testing.assert_array_equal(info["reward_features"], [1, 0, 0, 0, 0, 0])
    assert info["position"] == (0, 1)
    _, reward, _, _, info = env.step(RIGHT)  # roadblock: gas + roadblock
    assert reward == pytest.approx(-2.0)
    obs, reward, terminated, truncated, info = env.step(RIGHT)  # goal: the goal feature alone, episode ends
    np.testing.assert_array_equal(info["reward_features"], [0, 1, 0, 0, 0, 0])
    assert (reward, terminated, truncated, obs) == (10.0, True, False, 3)

    env.reset(options={"start": 4})  # mud cell
    _, reward, _, _, info = env.step(LEFT)  # bump in mud costs mud, not gas
    np.testing.assert_array_equal(info["reward_features"], [0, 0, 0, 0, 0, 1])
    _, reward, terminated, _, info = env.step(RIGHT)  # into the sheep
    assert (reward, terminated) == (-10.0, True)

    env.reset(options={"start": 7})
    obs, _, _, _, info = env.step(LEFT)  # the house blocks: stay, pay gas
    assert obs == 7 and info["reward_features"][0] == 1


def test_truncation_after_max_episode_steps():
    env = tiny_env(["..G"], max_episode_steps=3)
    env.reset(options={"start": 0})
    flags = [env.step(LEFT)[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]


def test_reset_seed_reproduces_episodes():
    def episode(seed):
        env = gym.make("prefengine/Delivery-v0")
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        trace = [obs]
        for _ in range(20):
            obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            trace += [obs, reward]
            if terminated or truncated:
                break
        return trace

    assert episode(3) == episode(3)
    starts = {gym.make("prefengine/Delivery-v0").reset(seed=s)[0] for s in range(20)}
    assert len(starts) > 5


def test_vector_env_steps_and_reports_features():
    envs = gym.make_vec("prefengine/Delivery-v0", num_envs=3, vectorization_mode="sync")
    obs, _ = envs.reset(seed=1)
    assert obs.shape == (3,)
    obs, rewards, terminated, truncated, infos = envs.step(np.array([0, 1, 2]))
    assert obs.shape == rewards.shape == terminated.shape == (3,)
    features = infos["reward_features"]
    assert features.shape == (3, len(FEATURES))
    np.testing.assert_allclose(rewards, features @ DELIVERY_WEIGHTS)
    envs.close()


def test_text_and_rgb_renders_show_the_agent():
    env = tiny_env([".c.", "S.G"], render_mode="ansi")
    env.reset(options={"start": 4})
    assert env.render() == ".c.\nS@G\n"
    env = tiny_env([".c.", "S.G"], render_mode="rgb_array")
    env.reset(options={"start": 4})
    image = env.render()
    assert image.shape == (48, 72, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[36, 36], (33, 99, 201))  # agent drawn in its cell
    assert not np.array_equal(image[12, 12], (33, 99, 201))


def test_env_steps_match_the_tabular_model():
    env = gym.make("prefengine/RandomGrid-v0", board_seed=11).unwrapped
    mdp = env.mdp
    for s in mdp.start_states()[:20]:
        for a in range(4):
            env.reset(options={"start": int(s)})
            obs, reward, _, _, info = env.step(a)
            assert mdp.transitions[s, a, obs] == 1.0
            np.testing.assert_array_equal(info["reward_features"], mdp.features[s, a])
            assert reward == pytest.approx(mdp.features[s, a] @ mdp.reward_weights)


def test_random_boards_come_from_the_paper_grid():
    boards = [random_board(np.random.default_rng(seed)) for seed in range(40)]
    again = random_board(np.random.default_rng(7))
    np.testing.assert_array_equal(again.cells, boards[7].cells)
    np.testing.assert_array_equal(again.reward_weights, boards[7].reward_weights)
    for board in boards:
        h, w = board.shape
        assert h in PAPER_GRID.heights and w in PAPER_GRID.widths
        assert (board.cells == GOAL).sum() == 1
        gas, goal, sheep, coin, roadblock, mud = board.reward_weights
        assert gas == -1 and goal in PAPER_GRID.goal_rewards and sheep in PAPER_GRID.sheep_rewards
        assert (
            coin in PAPER_GRID.coin_rewards
            and roadblock in PAPER_GRID.roadblock_rewards
            and mud in PAPER_GRID.mud_rewards
        )
        n_sheep = (board.cells == SHEEP).sum()
        exact = {int(f * h * w) for f in PAPER_GRID.sheep_fractions}
        assert n_sheep in exact or n_sheep + 1 in exact  # the goal may cover one
    assert len({b.shape for b in boards}) > 5


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown board"):
        GridWorldEnv(board="moon")
    with pytest.raises(ValueError, match="render_mode"):
        GridWorldEnv(render_mode="human")
    with pytest.raises(ValueError, match="board rows"):
        Board.from_text(["..x"], WEIGHTS)
    env = tiny_env(["..G"])
    with pytest.raises(ValueError, match="not a valid start"):
        env.reset(options={"start": 2})
