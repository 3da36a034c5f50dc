"""Rollouts in worker processes (AsyncVectorEnv): the same transitions as in-process (SyncVectorEnv) for
the same seed, and no worker outlives training, also when training fails."""

import multiprocessing

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from agents.ppo import PPO, EpisodeTracker, collect_rollout, make_vector_env
from recsys.errors import UserInputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SMALL = dict(num_envs=2, num_steps=16, total_timesteps=64, num_minibatches=2, update_epochs=2)


def random_actor(seed: int, n: int):
    generator = torch.Generator().manual_seed(seed)

    def act(obs: torch.Tensor):
        return torch.randint(n, (len(obs),), generator=generator), torch.zeros(len(obs))

    return act


def test_async_workers_give_the_sync_rollout_for_the_same_seed():
    rollouts = {}
    for mode in ("sync", "async"):
        envs = make_vector_env("prefengine/Collab-v0", {"time_limit": 5}, 3, mode)
        try:
            obs, _ = envs.reset(seed=11)
            rollouts[mode], _ = collect_rollout(envs, random_actor(0, 6), obs, 12, EpisodeTracker(3))
        finally:
            envs.close()
    sync, spawned = rollouts["sync"], rollouts["async"]
    for name in ("obs", "next_obs", "actions", "task_rewards", "human_rewards", "terminated", "ended"):
        torch.testing.assert_close(getattr(spawned, name), getattr(sync, name), rtol=0, atol=0, msg=name)
    assert sync.ended.sum() == 6 and spawned.episodes == sync.episodes  # the 5-step deadline, twice per env


class Watched(PPO):
    """Remembers its env worker processes; optionally fails after the first iteration."""

    def __init__(self, fail: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.fail, self.workers = fail, []

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        self.workers = list(getattr(self._envs, "processes", []))
        if self.fail:
            raise RuntimeError("boom")


def fit(module: PPO) -> PPO:
    pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False).fit(module)
    return module


def test_async_training_matches_sync_and_closes_its_workers():
    sync, spawned = fit(Watched(seed=5, **SMALL)), fit(Watched(seed=5, vector_env="async", **SMALL))
    for a, b in zip(sync.parameters(), spawned.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert len(spawned.workers) == 2 and not any(p.is_alive() for p in spawned.workers)
    assert multiprocessing.active_children() == []

    failing = Watched(fail=True, vector_env="async", **SMALL)
    with pytest.raises(RuntimeError, match="boom"):
        fit(failing)
    assert len(failing.workers) == 2 and not any(p.is_alive() for p in failing.workers)
    assert failing._envs is None and multiprocessing.active_children() == []


def test_vector_env_choices_are_checked():
    with pytest.raises(UserInputError, match="vector_env"):
        PPO(vector_env="threads", **SMALL)
    with pytest.raises(UserInputError, match="start_method"):
        make_vector_env("prefengine/Collab-v0", {}, 2, "async", "teleport")
    envs = make_vector_env("prefengine/Collab-v0", {}, 2)
    assert np.all(envs.action_space.nvec == 6)  # 5 moves and pick-up, per env
    envs.close()
