"""Fast paths every fit takes, against the plain definitions they stand in for.

- The regret model's prepared linear path (`RegretModel.prepare` + `linear_logits`: the pair logit as
  w . (sum phi_1 - sum phi_2) plus a linear combination of V* at four states) must give the logits of
  the regret definition, -regret(segment 1) + regret(segment 2), computed by the teacher from the true
  optimal values.
- RLHG's human-gain targets bootstrap a rollout cut off mid-episode with V_phi + Delta of the state
  after its last step (the gain the human still expects), and only there.
"""

import math

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from agents.envs.delivery import delivery_board
from agents.planning import solve, uniform_policy
from agents.ppo import PPO, Rollout
from agents.preferences.models import PartialReturnModel, RegretModel, build_reward, to_batch
from agents.preferences.policy_set import PolicySet, policy_occupancy
from agents.preferences.segments import sample_segment_pairs
from agents.preferences.teachers import Teacher, partial_returns, regret_from_values
from agents.rlhg import RLHG

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def delivery():
    mdp = delivery_board().tabular()
    rng = np.random.default_rng(3)
    data = Teacher().label(mdp, sample_segment_pairs(mdp, 400, 3, rng), rng)
    return mdp, data


def _exact_policy_set(mdp) -> PolicySet:
    """The optimal policy beside the uniform one: the soft maximum over them is V* itself."""
    policies = np.stack([solve(mdp).policy, uniform_policy(mdp)])
    occupancy, basis = policy_occupancy(mdp, policies)
    return PolicySet(policies, occupancy, basis)


def _linear_reward(weights) -> torch.nn.Module:
    reward = build_reward("linear", len(weights))
    with torch.no_grad():
        reward.linear.weight[:] = torch.as_tensor(np.asarray(weights, dtype=float))[None]
    return reward


def test_regret_prepared_linear_logits_are_the_regret_difference(delivery):
    mdp, data = delivery
    model = RegretModel(_exact_policy_set(mdp), mdp.gamma)
    batch = model.prepare(to_batch(data))
    assert {"feature_difference", "value_index", "value_coef"} <= set(batch)
    reward = _linear_reward(mdp.reward_weights)
    with torch.no_grad():
        logits = model.logits(reward, batch).numpy()  # the prepared linear path
    regret = regret_from_values(data.pairs, mdp.reward_weights, solve(mdp).values, mdp.gamma)
    np.testing.assert_allclose(logits, regret[:, 1] - regret[:, 0], atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_regret_prepared_path_matches_the_step_by_step_path_for_any_reward(delivery, seed):
    """Values and gradients, for a reward far from the truth (so every V* term matters)."""
    mdp, data = delivery
    model = RegretModel(_exact_policy_set(mdp), mdp.gamma, temperature=0.5)
    torch.manual_seed(seed)
    weights = torch.randn(mdp.n_features).numpy() * 5
    fast_reward, slow_reward = _linear_reward(weights), _linear_reward(weights)
    batch = to_batch(data)
    fast = model.loss(fast_reward, model.prepare(batch))
    scores = model.segment_scores(slow_reward, batch)
    slow = torch.nn.functional.binary_cross_entropy_with_logits(scores[:, 0] - scores[:, 1], batch["labels"])
    fast.backward()
    slow.backward()
    assert fast.item() == pytest.approx(slow.item(), rel=1e-9)
    torch.testing.assert_close(fast_reward.linear.weight.grad, slow_reward.linear.weight.grad, rtol=1e-7, atol=1e-9)


def test_partial_return_prepared_linear_logits_are_the_return_difference(delivery):
    mdp, data = delivery
    model = PartialReturnModel()
    with torch.no_grad():
        logits = model.logits(_linear_reward(mdp.reward_weights), model.prepare(to_batch(data))).numpy()
    returns = partial_returns(data.pairs, mdp.reward_weights)
    np.testing.assert_allclose(logits, returns[:, 0] - returns[:, 1], atol=1e-9)


SMALL = dict(num_envs=2, num_steps=16, num_minibatches=2, update_epochs=2)


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory):
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(PPO(total_timesteps=64, seed=0, **SMALL))
    path = tmp_path_factory.mktemp("base") / "base.ckpt"
    trainer.save_checkpoint(path)
    return str(path)


def _constant(network: torch.nn.Sequential, value: float) -> None:
    with torch.no_grad():
        network[-1].weight.zero_()
        network[-1].bias.fill_(value)


def test_rlhg_bootstraps_a_cut_off_rollout_with_human_value_plus_gain(base_checkpoint):
    module = RLHG(base_checkpoint=base_checkpoint, alpha=0.5, beta=0.0, human_lambda=1.0, gamma=0.9,
                  gae_lambda=1.0, total_timesteps=64, human_value_timesteps=32, **SMALL)
    _constant(module.human_value, 1.0)  # V_phi = 1 everywhere
    _constant(module.gain.body, 0.0)  # Delta = softplus(0) = log 2 everywhere
    module._rng = np.random.default_rng(0)
    module._agent_only = np.array([False, False])
    obs = torch.zeros(2, 2, module.observation_space.shape[0])
    # env 0 is cut off by the rollout's end; env 1's episode ends at its last step
    ended = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    rollout = Rollout(obs=obs, next_obs=obs.clone(), actions=torch.zeros(2, 2, dtype=torch.long),
                      logprobs=torch.zeros(2, 2), task_rewards=torch.zeros(2, 2),
                      human_rewards=torch.tensor([[0.0, 0.0], [2.0, 2.0]]), terminated=ended.clone(), ended=ended)
    with torch.no_grad():
        gains = module.rollout_targets(rollout, module.agent.value(rollout.obs))["gains"]
    after = 1.0 + math.log(2.0)  # V_phi + Delta of the state after the cut
    last = torch.tensor([2.0 + 0.9 * after, 2.0])  # human returns at t1: bootstrapped / episode over
    first = 0.9 * last  # t0: reward 0, then gamma x the return from t1 (lambda 1)
    torch.testing.assert_close(gains, torch.stack([first, last]) - 1.0)  # minus V_phi
