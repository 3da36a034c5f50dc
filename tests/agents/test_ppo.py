"""PPO: GAE, the clipped and dual-clipped losses and the slate distribution on hand values; learning a
tiny corridor; seeding; checkpoints."""

import itertools
import math

import gymnasium as gym
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from gymnasium import spaces

from agents.checkpoints import load_agent, read_checkpoint
from agents.networks import Categorical, IndependentCategoricals, Slate
from agents.ppo import (
    PPO,
    EpisodeTracker,
    clipped_policy_loss,
    collect_rollout,
    generalized_advantages,
    make_vector_env,
    value_loss,
)
from recsys.errors import DataFormatError, UserInputError


class Corridor(gym.Env):
    """Walk right from cell 0 to cell 4: -0.1 per step, +1 on arrival (terminated)."""

    observation_space = spaces.Box(0.0, 1.0, shape=(5,), dtype=np.float32)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position = 0
        return np.eye(5, dtype=np.float32)[0], {}

    def step(self, action):
        self.position = int(np.clip(self.position + (1 if action == 1 else -1), 0, 4))
        arrived = self.position == 4
        return np.eye(5, dtype=np.float32)[self.position], 1.0 if arrived else -0.1, arrived, False, {}


gym.register("tests/Corridor-v0", entry_point=Corridor, max_episode_steps=20)


def fit(module: pl.LightningModule) -> pl.LightningModule:
    pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False).fit(module)
    return module


def test_gae_matches_hand_computation():
    gamma, lam = 0.9, 0.8
    rewards = torch.tensor([[1.0, 0.0], [2.0, 1.0], [3.0, 1.0]])
    values = torch.tensor([[0.5, 1.0], [0.6, 1.0], [0.7, 1.0]])
    # column 0 terminates at t=2; column 1 is truncated at t=1 (bootstrap 2.0 from its final observation)
    # and the rollout ends mid-episode at t=2 (bootstrap 5.0)
    next_values = torch.tensor([[0.6, 1.0], [0.7, 2.0], [0.0, 5.0]])
    ended = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    advantages, returns = generalized_advantages(rewards, values, next_values, ended, gamma, lam)
    # column 0: deltas 1.04, 2.03, 2.3; column 1: deltas -0.1, 1.8 (cut), 4.5
    expected = torch.tensor([[1.04 + 0.72 * (2.03 + 0.72 * 2.3), -0.1 + 0.72 * 1.8],
                             [2.03 + 0.72 * 2.3, 1.8], [2.3, 4.5]])
    torch.testing.assert_close(advantages, expected)
    torch.testing.assert_close(returns, expected + values)


def test_clipped_and_dual_clipped_policy_loss_on_hand_values():
    logratio = torch.log(torch.tensor([1.5, 0.5, 1.1, 5.0]))
    advantages = torch.tensor([1.0, 1.0, -1.0, -2.0])
    # per-sample objectives: min(1.5, 1.2)=1.2; min(0.5, 0.8)=0.5; -1.1; min(-10, -2.4)=-10 (dual: max(-10, -6)=-6)
    assert clipped_policy_loss(logratio, advantages, 0.2).item() == pytest.approx(-(1.2 + 0.5 - 1.1 - 10) / 4)
    assert clipped_policy_loss(logratio, advantages, 0.2, dual_clip=3.0).item() == pytest.approx(-(1.2 + 0.5 - 1.1 - 6) / 4)


def test_value_loss_clipped_and_unclipped():
    values, returns, old = torch.tensor([1.0, 2.0]), torch.tensor([1.5, 0.0]), torch.tensor([0.8, 2.5])
    assert value_loss(values, returns, old, None).item() == pytest.approx(0.5 * (0.25 + 4.0) / 2)
    # clipped predictions 1.0 and 2.3: errors 0.25 and 5.29 are the larger ones
    assert value_loss(values, returns, old, 0.2).item() == pytest.approx(0.5 * (0.25 + 5.29) / 2)


def test_slate_is_a_plackett_luce_distribution_over_distinct_items():
    logits = torch.tensor([[0.5, -1.0, 2.0, 0.0]])
    slate = Slate(logits, 2)
    pairs = torch.tensor([p for p in itertools.permutations(range(4), 2)])
    probabilities = Slate(logits.expand(len(pairs), 4), 2).log_prob(pairs).exp()
    assert probabilities.sum().item() == pytest.approx(1.0, abs=1e-6)
    e = np.exp([0.5, -1.0, 2.0, 0.0])
    hand = e[2] / e.sum() * e[0] / (e.sum() - e[2])
    assert Slate(logits, 2).log_prob(torch.tensor([[2, 0]])).exp().item() == pytest.approx(hand, rel=1e-6)
    draws = Slate(logits.expand(20_000, 4), 2).sample(torch.Generator().manual_seed(0))
    assert (draws[:, 0] != draws[:, 1]).all()
    frequency = (draws == torch.tensor([2, 0])).all(-1).float().mean().item()
    assert frequency == pytest.approx(hand, abs=0.01)
    torch.testing.assert_close(slate.mode(), torch.tensor([[2, 0]]))


def test_categoricals_log_prob_and_entropy():
    logits = torch.tensor([[0.0, math.log(3.0)]])
    dist = Categorical(logits)
    assert dist.log_prob(torch.tensor([1])).exp().item() == pytest.approx(0.75)
    assert dist.entropy().item() == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))
    both = IndependentCategoricals(torch.cat([logits, logits], -1), [2, 2])
    assert both.log_prob(torch.tensor([[1, 0]])).exp().item() == pytest.approx(0.75 * 0.25)


def test_rollout_keeps_the_final_observation_of_an_episode_that_ended():
    envs = make_vector_env("prefengine/Collab-v0", {"time_limit": 3}, 2)
    obs, _ = envs.reset(seed=0)

    def stay(batch):
        return torch.zeros(len(batch), dtype=torch.long), torch.zeros(len(batch))

    rollout, _ = collect_rollout(envs, stay, obs, 7, EpisodeTracker(2))
    ended = rollout.ended.bool()
    # time left is the last feature: 0 in the final observation, 1 again after the reset
    assert ended[2].all() and ended[5].all() and ended.sum() == 4
    torch.testing.assert_close(rollout.next_obs[2][:, -1], torch.zeros(2))
    torch.testing.assert_close(rollout.obs[3][:, -1], torch.ones(2))
    for t in range(6):  # within an episode the next observation is the following step's observation
        for i in range(2):
            if not ended[t, i]:
                torch.testing.assert_close(rollout.next_obs[t, i], rollout.obs[t + 1, i])
    assert len(rollout.episodes) == 4 and all(e["length"] == 3 for e in rollout.episodes)
    envs.close()


def test_ppo_learns_the_corridor():
    # A uniformly random walker needs 16 steps on average (return about -0.5).
    module = fit(PPO(env_id="tests/Corridor-v0", num_envs=8, num_steps=16, total_timesteps=1024,
                     learning_rate=1e-2, update_epochs=4, num_minibatches=2, ent_coef=0.0, seed=1))
    assert module.timesteps_done == 1024
    returns = [e["return"] for e in module.last_episodes]
    assert np.mean(returns) > 0.6  # optimal: three steps at -0.1, then +1
    policy = module.policy(deterministic=True)
    assert all(policy(np.eye(5, dtype=np.float32)[:4], {}) == 1)


def test_same_seed_same_weights_and_checkpoint_round_trip(tmp_path):
    def run(seed):
        return fit(PPO(num_envs=2, num_steps=16, total_timesteps=64, num_minibatches=2, seed=seed))

    a, b, c = run(3), run(3), run(4)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb)
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(a)
    path = tmp_path / "agent.ckpt"
    trainer.save_checkpoint(path)
    meta = read_checkpoint(path)["prefengine"]
    assert meta == {"model_kind": "ppo", "env_id": "prefengine/Collab-v0", "env_kwargs": {}, "timesteps": 64}
    loaded = load_agent(path)
    obs = np.random.default_rng(0).random((4, a.observation_space.shape[0])).astype(np.float32)
    np.testing.assert_array_equal(loaded.policy(True)(obs, {}), a.policy(True)(obs, {}))


def test_user_errors(tmp_path):
    with pytest.raises(UserInputError, match="unknown environment"):
        PPO(env_id="prefengine/Nope-v0")
    with pytest.raises(UserInputError, match="less than one rollout"):
        PPO(num_envs=4, num_steps=8, total_timesteps=16)
    with pytest.raises(UserInputError, match="slate"):
        PPO(action_distribution="slate")
    with pytest.raises(UserInputError, match="no such checkpoint"):
        read_checkpoint(tmp_path / "missing.ckpt")
    (tmp_path / "junk.ckpt").write_text("not a checkpoint")
    with pytest.raises(DataFormatError, match="junk.ckpt"):
        read_checkpoint(tmp_path / "junk.ckpt")
