import json

import numpy as np
import pytest
import torch

from agents.envs.board import Board
from agents.envs.delivery import delivery_board
from agents.envs.random_mdp import random_board
from agents.experiments import main as experiment_main
from agents.planning import solve, uniform_policy
from agents.preferences.learner import PreferenceLearner, RewardLearningContext
from agents.preferences.models import PartialReturnModel, RegretModel, build_reward, to_batch
from agents.preferences.policy_set import PolicySet, policy_occupancy, sample_policy_set
from agents.preferences.segments import sample_segment_pairs
from agents.preferences.teachers import Teacher, partial_returns, regret_from_values
from agents.reward_learning import RewardLearner
from agents.train import main as train_main
from recsys.errors import UserInputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def delivery():
    mdp = delivery_board().tabular()
    rng = np.random.default_rng(0)
    data = Teacher().label(mdp, sample_segment_pairs(mdp, 300, 3, rng), rng)
    return mdp, data


@pytest.fixture(scope="module")
def delivery_policies(delivery):
    # the paper's 100 sampled policies: far fewer make the soft maximum a poor stand-in for V*
    return sample_policy_set(delivery[0], 100, np.random.default_rng(1))


def exact_policy_set(mdp) -> PolicySet:
    """The optimal policy beside the uniform one: the soft maximum then recovers V* exactly."""
    policies = np.stack([solve(mdp).policy, uniform_policy(mdp)])
    occupancy, basis = policy_occupancy(mdp, policies)
    return PolicySet(policies, occupancy, basis)


def true_linear_reward(mdp):
    reward = build_reward("linear", mdp.n_features)
    with torch.no_grad():
        reward.linear.weight[:] = torch.as_tensor(mdp.reward_weights)[None]
    return reward


def test_models_reproduce_the_teachers_statistics(delivery):
    mdp, data = delivery
    reward, batch = true_linear_reward(mdp), to_batch(data)
    with torch.no_grad():
        regret_scores = RegretModel(exact_policy_set(mdp), mdp.gamma).segment_scores(reward, batch).numpy()
        partial_scores = PartialReturnModel().segment_scores(reward, batch).numpy()
    v_star = solve(mdp).values
    np.testing.assert_allclose(
        regret_scores, -regret_from_values(data.pairs, mdp.reward_weights, v_star, mdp.gamma), atol=1e-6
    )
    np.testing.assert_allclose(partial_scores, partial_returns(data.pairs, mdp.reward_weights), atol=1e-9)


def test_loss_covers_both_orders_of_each_pair(delivery, delivery_policies):
    mdp, data = delivery
    model = RegretModel(delivery_policies, mdp.gamma)
    reward = build_reward("linear", 6)
    doubled = data.both_orders()
    assert len(doubled) == 2 * len(data)
    one_pass = model.loss(reward, to_batch(data))
    logits = model.logits(reward, to_batch(doubled))
    explicit = torch.nn.functional.binary_cross_entropy_with_logits(logits, to_batch(doubled)["labels"])
    assert float(one_pass) == pytest.approx(float(explicit), rel=1e-12)
    mlp = build_reward("mlp", 6, (8,))
    assert float(PartialReturnModel().loss(mlp, to_batch(data))) == pytest.approx(
        float(PartialReturnModel().loss(mlp, to_batch(doubled))), rel=1e-12
    )


def test_regret_learner_recovers_the_delivery_ordering(delivery, delivery_policies):
    mdp, data = delivery
    torch.manual_seed(0)
    learner = PreferenceLearner("regret").attach(RewardLearningContext(mdp, delivery_policies))
    learner.fit_full_batch(data, 300)
    gas, goal, sheep, coin, roadblock, mud = learner.reward_weights() / abs(learner.reward_weights()[0])
    assert goal > coin > 0 > gas > mud > sheep
    assert learner.scaled_return() > 0.99


def test_mlp_reward_trains_under_the_regret_model(delivery, delivery_policies):
    mdp, data = delivery
    torch.manual_seed(0)
    learner = PreferenceLearner("regret", reward="mlp", hidden_sizes=(16,))
    learner.attach(RewardLearningContext(mdp, delivery_policies))
    batch = learner.preference.prepare(to_batch(data))
    before = float(learner.loss(batch))
    after = learner.fit_full_batch(data, 60, lr=0.01)
    assert after < before
    rewards = learner.learned_rewards()
    assert rewards.shape == (mdp.n_states, 4) and np.all(rewards[mdp.absorbing] == 0)


def test_learner_refuses_mismatched_wiring(delivery):
    mdp, _ = delivery
    with pytest.raises(UserInputError, match="policy set"):
        RewardLearner("regret").attach(RewardLearningContext(mdp, None))
    with pytest.raises(UserInputError, match="7 reward features"):
        PreferenceLearner("partial_return", n_features=7).attach(RewardLearningContext(mdp, None))
    with pytest.raises(UserInputError, match="preference_model"):
        RewardLearner("return")
    with pytest.raises(UserInputError, match="lr"):
        RewardLearner(lr=0.0)


def test_small_experiment_regret_beats_partial_return(tmp_path):
    out = tmp_path / "exp"
    argv = [
        "regret-vs-return",
        "--mdps",
        "1",
        "--prefs",
        "100,300",
        "--steps",
        "300",
        "--seed",
        "2",
        "--workers",
        "1",
        "--out",
        str(out),
    ]
    assert experiment_main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"regret", "partial_return"} and set(results["regret"]) == {"100", "300"}
    for n in ("100", "300"):
        regret, partial = results["regret"][n], results["partial_return"][n]
        assert set(regret) == {"near_optimal", "scaled_return"}
        assert regret["near_optimal"] > partial["near_optimal"]
    assert results["regret"]["300"]["near_optimal"] == 1.0
    assert (out / "regret_vs_return.png").stat().st_size > 10_000
    assert "| 300 |" in (out / "report.md").read_text()
    per_mdp = json.loads((out / "per_mdp.json").read_text())
    assert [m["name"] for m in per_mdp["mdps"]] == ["delivery", "random-1"]


def test_experiment_dispatch_rejects_unknown_names():
    with pytest.raises(UserInputError, match="unknown experiment"):
        experiment_main(["regret-vs-everything"])


def test_cli_fit_on_a_tiny_config(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(
        f"""
seed_everything: 0
trainer:
  max_epochs: 2
  accelerator: cpu
  logger: false
  enable_progress_bar: false
  enable_model_summary: false
  default_root_dir: {tmp_path}
model:
  class_path: agents.reward_learning.RewardLearner
  init_args: {{preference_model: regret}}
data:
  class_path: agents.reward_learning.PreferenceDataModule
  init_args:
    env: prefengine/RandomGrid-v0
    env_kwargs: {{board_seed: 5}}
    n_pairs: 200
    n_policies: 20
    steps_per_epoch: 20
    save_preferences: {tmp_path / "prefs.jsonl"}
"""
    )
    assert train_main(["fit", "-c", str(config)]) == 0
    checkpoints = list(tmp_path.rglob("*.ckpt"))
    assert len(checkpoints) == 1
    info = torch.load(checkpoints[0], weights_only=False)["prefengine"]
    assert info["model_kind"] == "reward_learner" and info["feature_names"][0] == "gas"
    assert len(info["reward_weights"]) == 6 and "val/scaled_return" in info["metrics"]
    assert sum(1 for _ in open(tmp_path / "prefs.jsonl")) == 201  # header + 200 pairs


def test_data_module_reads_a_preference_file(tmp_path):
    from agents.reward_learning import PreferenceDataModule

    board = Board.from_text(["...", ".SG"], delivery_board().reward_weights, gamma=0.9)
    mdp = board.tabular()
    rng = np.random.default_rng(4)
    path = Teacher().label(mdp, sample_segment_pairs(mdp, 50, 3, rng), rng).save(tmp_path / "p.jsonl")
    module = PreferenceDataModule(preferences=str(path), n_policies=0, val_fraction=0.2)
    module.setup("fit")  # the delivery board has 100 states, so these ids fit; features match
    assert len(module.train_data) == 40 and len(module.val_data) == 10
    mini = PreferenceDataModule(preferences=str(path), n_policies=0, val_fraction=0.2, batch_size=16)
    mini.setup("fit")
    batches = list(mini.train_dataloader())
    assert [len(b["labels"]) for b in batches] == [16, 16, 8] and batches[0]["states"].shape == (16, 2, 4)
    with pytest.raises(UserInputError, match="cannot make environment"):
        PreferenceDataModule(env_kwargs={"board_sed": 1}).setup("fit")
    delivery_mdp = delivery_board().tabular()
    big = Teacher().label(delivery_mdp, sample_segment_pairs(delivery_mdp, 50, 3, rng), rng)
    small_seed = next(
        s for s in range(100) if random_board(np.random.default_rng(s)).n_states < big.pairs.states.max()
    )
    wrong = PreferenceDataModule(
        env="prefengine/RandomGrid-v0",
        env_kwargs={"board_seed": small_seed},
        preferences=str(big.save(tmp_path / "big.jsonl")),
    )
    with pytest.raises(UserInputError, match="state ids"):
        wrong.setup("fit")
