"""RLHG: the gain network, the combined advantage on hand values, agent-only episodes, and a small
two-stage run from a base agent."""

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from agents.checkpoints import load_agent, read_checkpoint
from agents.ppo import PPO, Rollout, generalized_advantages
from agents.rlhg import RLHG, GainNetwork, positive_gain_loss
from recsys.errors import UserInputError

SMALL = dict(num_envs=2, num_steps=16, num_minibatches=2, update_epochs=2)


def fit(module):
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(module)
    return trainer


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory):
    trainer = fit(PPO(total_timesteps=64, seed=0, **SMALL))
    path = tmp_path_factory.mktemp("base") / "base.ckpt"
    trainer.save_checkpoint(path)
    return str(path)


def constant(network: torch.nn.Sequential, value: float) -> None:
    """Make an MLP output `value` everywhere (zero last layer, bias = value)."""
    with torch.no_grad():
        network[-1].weight.zero_()
        network[-1].bias.fill_(value)


def test_gain_network_is_non_negative_and_fits_the_mean_positive_gain():
    torch.manual_seed(0)
    gain = GainNetwork(3, (16,))
    extreme = torch.cat([torch.randn(256, 3) * 100, -torch.ones(1, 3) * 1e4])
    assert (gain(extreme) >= 0).all()
    # One state, gains -1, 2, 4: only the positive ones count, so Delta converges to their mean, 3.
    obs, gains = torch.zeros(3, 3), torch.tensor([-1.0, 2.0, 4.0])
    optimizer = torch.optim.Adam(gain.parameters(), lr=0.05)
    for _ in range(400):
        optimizer.zero_grad()
        positive_gain_loss(gain(obs), gains).backward()
        optimizer.step()
    assert gain(obs[:1]).item() == pytest.approx(3.0, abs=0.05)
    assert positive_gain_loss(torch.ones(2), torch.tensor([-1.0, 0.0])).item() == 0.0
    assert positive_gain_loss(torch.ones(2), torch.tensor([3.0, -5.0])).item() == pytest.approx(4.0)


def test_advantage_combines_task_and_human_gain_terms(base_checkpoint):
    module = RLHG(base_checkpoint=base_checkpoint, alpha=0.5, beta=0.0, human_lambda=1.0, gamma=0.9,
                  gae_lambda=1.0, total_timesteps=64, human_value_timesteps=32, **SMALL)
    constant(module.human_value, 1.0)  # V_phi = 1
    constant(module.gain.body, 0.0)  # Delta = softplus(0) = log 2
    constant(module.agent.critic, 0.0)  # task values 0
    module._rng = np.random.default_rng(0)
    module._agent_only = np.array([False, True])  # env 1 runs an agent-only episode
    obs = torch.zeros(2, 2, module.observation_space.shape[0])
    rollout = Rollout(obs=obs, next_obs=obs.clone(), actions=torch.zeros(2, 2, dtype=torch.long),
                      logprobs=torch.zeros(2, 2), task_rewards=torch.tensor([[1.0, 1.0], [0.0, 0.0]]),
                      human_rewards=torch.tensor([[0.0, 0.0], [2.0, 2.0]]), terminated=torch.tensor([[0.0, 0.0], [1.0, 1.0]]),
                      ended=torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    with torch.no_grad():
        targets = module.rollout_targets(rollout, module.agent.value(rollout.obs))
    # G_H: t0 = 0 + 0.9 * 2 = 1.8, t1 = 2; gains g = G_H - V_phi = 0.8, 1.0
    torch.testing.assert_close(targets["gains"], torch.tensor([[0.8, 0.8], [1.0, 1.0]]))
    # task returns (values 0): t0 = 1, t1 = 0
    human = torch.tensor([0.8, 1.0]) - torch.log(torch.tensor(2.0))
    expected = torch.stack([torch.tensor([1.0, 0.0]) + 0.5 * human, torch.tensor([1.0, 0.0])], dim=1)
    torch.testing.assert_close(targets["advantages"], expected)
    torch.testing.assert_close(targets["returns"], torch.tensor([[1.0, 1.0], [0.0, 0.0]]))


def test_beta_one_turns_every_human_term_off(base_checkpoint):
    module = RLHG(base_checkpoint=base_checkpoint, beta=1.0, total_timesteps=64, human_value_timesteps=32, **SMALL)
    module._rng = np.random.default_rng(0)
    module._agent_only = np.ones(2, dtype=bool)
    obs = torch.randn(3, 2, module.observation_space.shape[0])
    rollout = Rollout(obs=obs, next_obs=torch.randn_like(obs), actions=torch.zeros(3, 2, dtype=torch.long),
                      logprobs=torch.zeros(3, 2), task_rewards=torch.rand(3, 2), human_rewards=torch.rand(3, 2),
                      terminated=torch.zeros(3, 2), ended=torch.tensor([[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]))
    with torch.no_grad():
        values = module.agent.value(obs)
        targets = module.rollout_targets(rollout, values)
        task, _ = generalized_advantages(rollout.task_rewards, values, rollout.next_values(module.agent.value),
                                         rollout.ended, module.hparams.gamma, module.hparams.gae_lambda)
    torch.testing.assert_close(targets["advantages"], task)


def test_naive_sum_turns_its_human_reward_off_in_agent_only_episodes(base_checkpoint):
    module = PPO(human_reward_coef=2.0, agent_only_fraction=0.5, gamma=0.9, gae_lambda=0.95, total_timesteps=64,
                 **SMALL)
    module._agent_only = np.array([False, True])  # env 1 runs an agent-only episode until its end at t1
    obs = torch.randn(3, 2, module.observation_space.shape[0])
    rollout = Rollout(obs=obs, next_obs=torch.randn_like(obs), actions=torch.zeros(3, 2, dtype=torch.long),
                      logprobs=torch.zeros(3, 2), task_rewards=torch.rand(3, 2), human_rewards=torch.rand(3, 2),
                      terminated=torch.zeros(3, 2), ended=torch.tensor([[0.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    with torch.no_grad():
        values = module.agent.value(obs)
        targets = module.rollout_targets(rollout, values)
        mask = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0 - float(module._agent_only[1])]])
        expected, _ = generalized_advantages(rollout.task_rewards + 2.0 * mask * rollout.human_rewards, values,
                                             rollout.next_values(module.agent.value), rollout.ended, 0.9, 0.95)
    torch.testing.assert_close(targets["advantages"], expected)
    assert module.agent_only.counts()["steps"] == 6 and module.agent_only.counts()["agent_only_steps"] == 3 - int(mask[2, 1])


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_beta_matched_naive_and_rlhg_see_the_same_steps_and_agent_only_episodes(base_checkpoint, beta):
    naive = PPO(human_reward_coef=0.5, agent_only_fraction=beta, init_from=base_checkpoint, total_timesteps=64,
                seed=3, **SMALL)
    rlhg = RLHG(base_checkpoint=base_checkpoint, alpha=0.5, beta=beta, total_timesteps=64, human_value_timesteps=32,
                seed=3, **SMALL)
    fit(naive)
    fit(rlhg)
    a, b = naive.agent_only.counts(), rlhg.agent_only.counts()
    # the same policy-learning steps (RLHG's stage I, with the frozen base agent, is not among them) ...
    assert a["steps"] == b["steps"] == 64 and naive.timesteps_done == 64 and rlhg.timesteps_done == 96
    # ... and the same schedule: the k-th episode of each env slot is agent-only in both or in neither
    for first, second in zip(naive.agent_only.history, rlhg.agent_only.history):
        shared = min(len(first), len(second))
        assert shared >= 2 and first[:shared] == second[:shared]
    if beta == 0.0:
        assert a["agent_only_episodes"] == b["agent_only_episodes"] == a["agent_only_steps"] == b["agent_only_steps"] == 0
    else:
        assert a["agent_only_episodes"] > 0 and b["agent_only_episodes"] > 0
        assert 0 < a["agent_only_steps"] < a["steps"] and 0 < b["agent_only_steps"] < b["steps"]


def test_two_stage_run_freezes_the_agent_in_stage_one(base_checkpoint, tmp_path):
    base_state = read_checkpoint(base_checkpoint)["state_dict"]
    stage_one = RLHG(base_checkpoint=base_checkpoint, total_timesteps=32, human_value_timesteps=64, **SMALL)
    value_before = [p.clone() for p in stage_one.human_value.parameters()]
    trainer = fit(stage_one)  # stage I only: 2 iterations; stage II: 1 iteration
    assert stage_one.stage_one_iterations == 2 and stage_one.stage_two_iterations == 1
    assert stage_one.timesteps_done == 96
    assert any(not torch.equal(a, b) for a, b in zip(value_before, stage_one.human_value.parameters()))

    frozen = RLHG(base_checkpoint=base_checkpoint, total_timesteps=32, human_value_timesteps=64, **SMALL)
    frozen.num_iterations = frozen.stage_one_iterations  # stop after stage I
    fit(frozen)
    for name, weight in frozen.agent.state_dict().items():
        torch.testing.assert_close(weight, base_state[f"agent.{name}"])
    assert any(not torch.equal(weight, base_state[f"agent.{name}"])
               for name, weight in stage_one.agent.state_dict().items())

    path = tmp_path / "rlhg.ckpt"
    trainer.save_checkpoint(path)
    assert read_checkpoint(path)["prefengine"]["model_kind"] == "rlhg"
    loaded = load_agent(path)
    torch.testing.assert_close(loaded.gain.body[0].weight, stage_one.gain.body[0].weight)


def test_rlhg_user_errors(base_checkpoint):
    with pytest.raises(UserInputError, match="base_checkpoint"):
        fit(RLHG(total_timesteps=32, human_value_timesteps=32, **SMALL))
    with pytest.raises(UserInputError, match="beta"):
        RLHG(base_checkpoint=base_checkpoint, beta=1.5, **SMALL)
    with pytest.raises(UserInputError, match="agent_only_fraction"):
        RLHG(base_checkpoint=base_checkpoint, beta=0.2, agent_only_fraction=0.5, **SMALL)
    with pytest.raises(UserInputError, match="agent_only_fraction"):
        PPO(agent_only_fraction=-0.1, **SMALL)
    with pytest.raises(UserInputError, match="not init_from"):
        RLHG(base_checkpoint=base_checkpoint, init_from=base_checkpoint, **SMALL)


def test_configs_match_the_experiment_settings():
    from pathlib import Path

    import yaml

    from agents.experiments.rlhg import COLLAB, SETTINGS

    setting = SETTINGS[COLLAB]
    root = Path(__file__).resolve().parents[2] / "configs" / "agents"
    ppo = yaml.safe_load((root / "ppo.yaml").read_text())["model"]["init_args"]
    rlhg = yaml.safe_load((root / "rlhg.yaml").read_text())["model"]["init_args"]
    for key, value in setting.ppo.items():
        expected = list(value) if isinstance(value, tuple) else value
        assert ppo[key] == expected and rlhg[key] == expected, key
    assert ppo["total_timesteps"] == setting.base_timesteps and rlhg["total_timesteps"] == setting.finetune_timesteps
    assert (rlhg["alpha"], rlhg["beta"], rlhg["human_value_timesteps"]) == (
        setting.alpha, setting.beta, setting.human_value_timesteps)
    assert ppo["env_kwargs"] == rlhg["env_kwargs"] == setting.env_kwargs
    naive = yaml.safe_load((root / "naive.yaml").read_text())["model"]["init_args"]
    for key, value in setting.ppo.items():
        assert naive[key] == (list(value) if isinstance(value, tuple) else value), key
    assert (naive["human_reward_coef"], naive["agent_only_fraction"], naive["total_timesteps"]) == (
        rlhg["alpha"], rlhg["beta"], rlhg["total_timesteps"])
    assert naive["init_from"] == rlhg["base_checkpoint"]


def test_small_experiment_writes_results_plot_and_report(tmp_path):
    import json

    from agents.experiments import main as experiment_main

    out = tmp_path / "exp"
    assert experiment_main(["rlhg", "--seeds", "2", "--alpha", "0.5", "--alphas", "0.5", "--base-timesteps", "64",
                            "--finetune-timesteps", "32", "--human-value-timesteps", "32", "--eval-episodes", "4",
                            "--ppo", '{"num_envs": 2, "num_steps": 16, "num_minibatches": 2}', "--workers", "1",
                            "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    for agent in ("base", "continued", "naive", "rlhg"):
        assert len(results[agent]["per_seed"]["human_goal"]) == 2
        assert results[agent]["human_goal"] == pytest.approx(np.mean(results[agent]["per_seed"]["human_goal"]))
        low, high = results[agent]["ci95"]["task_success"]
        assert low <= results[agent]["task_success"] <= high
    gain = results["comparison_with_base"]["rlhg"]["human_goal_relative_gain"]
    if results["base"]["human_goal"]:
        assert gain == pytest.approx(results["rlhg"]["human_goal"] / results["base"]["human_goal"] - 1)
    assert set(results["checks"]) == {"human_goal_gain_at_least_20pct", "task_success_at_least_95pct_of_base"}
    assert (out / "alpha_tradeoff.png").stat().st_size > 1000 and "| rlhg |" in (out / "report.md").read_text()
    assert len(list((out / "checkpoints").glob("*.ckpt"))) == 8  # base, continued, naive, rlhg x 2 seeds
    # beta matched (the default): naive and RLHG fine-tune on as many steps with the same agent-only share
    meta = results["meta"]
    assert meta["beta_schedule"] == "matched" and meta["agent_only_fraction"] == {"naive": 0.2, "rlhg": 0.2}
    for seed in (0, 1):
        naive, rlhg = (meta["agent_only_counts"][f"{kind}_alpha0.5_seed{seed}"] for kind in ("naive", "rlhg"))
        assert naive["steps"] == rlhg["steps"] == 32 and naive["fraction"] == rlhg["fraction"] == 0.2
    versus = results["rlhg_vs_naive"]["0.5"]["human_goal"]
    assert versus["per_seed_difference"] == pytest.approx(np.subtract(results["rlhg"]["per_seed"]["human_goal"],
                                                                      results["naive"]["per_seed"]["human_goal"]))
    assert versus["verdict"] in ("ahead", "tied", "behind") and "RLHG minus naive" in (out / "report.md").read_text()

    # the other way, neither agent gets agent-only episodes; base and continued are reused, not retrained
    args = ["rlhg", "--seeds", "2", "--alpha", "0.5", "--alphas", "0.5", "--base-timesteps", "64",
            "--finetune-timesteps", "32", "--human-value-timesteps", "32", "--eval-episodes", "4",
            "--ppo", '{"num_envs": 2, "num_steps": 16, "num_minibatches": 2}', "--workers", "1"]
    none = tmp_path / "none"
    assert experiment_main([*args, "--beta-schedule", "none", "--reuse-base", str(out), "--out", str(none)]) == 0
    other = json.loads((none / "results.json").read_text())
    assert other["base"]["per_seed"] == results["base"]["per_seed"]  # the same agents on the same episodes
    assert other["continued"]["per_seed"] == results["continued"]["per_seed"]
    assert not (none / "checkpoints" / "base_seed0.ckpt").exists()
    for seed in (0, 1):
        for kind in ("naive", "rlhg"):
            counts = other["meta"]["agent_only_counts"][f"{kind}_alpha0.5_seed{seed}"]
            assert counts["steps"] == 32 and counts["agent_only_steps"] == 0
    with pytest.raises(UserInputError, match="differs in finetune_timesteps"):
        experiment_main([*args[:10], "64", *args[11:], "--reuse-base", str(out), "--out", str(tmp_path / "x")])
    with pytest.raises(UserInputError, match="--env"):
        experiment_main(["rlhg", "--env", "prefengine/Delivery-v0", "--out", str(out)])


@pytest.mark.parametrize("schedule, naive_share, rlhg_share", [("matched", 0.3, 0.3), ("none", 0.0, 0.0),
                                                                ("rlhg-only", 0.0, 0.3)])
def test_beta_schedule_flag_sets_both_agents_shares(schedule, naive_share, rlhg_share):
    from agents.experiments.rlhg import naive_beta, parse_args, rlhg_beta, setting_from_args

    setting = setting_from_args(parse_args(["--out", "x", "--beta", "0.3", "--beta-schedule", schedule]))
    assert (naive_beta(setting), rlhg_beta(setting)) == (naive_share, rlhg_share)


def test_paired_test_verdicts():
    from agents.experiments.rlhg import paired_test

    ahead = paired_test([2.0, 3.1, 4.0, 5.2], [1.0, 2.0, 3.1, 4.0])
    assert ahead["verdict"] == "ahead" and ahead["mean_difference"] == pytest.approx(1.05)
    assert ahead["p_value"] == pytest.approx(0.000505, rel=0.01)  # diffs 1, 1.1, 0.9, 1.2: t = 16.27 on 3 df
    assert paired_test([1.0, 2.0, 3.0], [1.5, 1.0, 3.2])["verdict"] == "tied"
    assert paired_test([1.0, 2.0, 3.0], [2.0, 3.1, 4.0])["verdict"] == "behind"


def test_documented_rlhg_results_are_consistent_and_render():
    """docs/results/rlhg.json: the beta-matched agents trained on as many steps with the same agent-only share,
    the paired differences are the per-seed differences, and the docs' tables render from it."""
    import json
    from pathlib import Path

    from agents.experiments.docs_tables import render
    from agents.experiments.rlhg import holm

    doc = json.loads((Path(__file__).resolve().parents[2] / "docs" / "results" / "rlhg.json").read_text())
    for env in doc["envs"].values():
        assert len(env["seeds"]) >= 5
        for schedule, run in env["schedules"].items():
            share = {"matched": (0.2, 0.2), "none": (0.0, 0.0)}[schedule]
            assert (run["agent_only_fraction"]["naive"], run["agent_only_fraction"]["rlhg"]) == share
            for alpha, tests in run["rlhg_vs_naive"].items():
                for seed in env["seeds"]:
                    naive = run["agent_only_counts"][f"naive_alpha{alpha}_seed{seed}"]
                    rlhg = run["agent_only_counts"][f"rlhg_alpha{alpha}_seed{seed}"]
                    assert naive["steps"] == rlhg["steps"] == run["setting"]["finetune_timesteps"] // 512 * 512
                    if share[0] == 0:
                        assert naive["agent_only_steps"] == rlhg["agent_only_steps"] == 0
                    else:  # about a fifth of the episodes and steps in both
                        for counts in (naive, rlhg):
                            assert abs(counts["agent_only_episodes"] / counts["episodes"] - 0.2) < 0.03
                for metric, test in tests.items():
                    expected = np.subtract(run["per_seed"][f"rlhg_alpha{alpha}"][metric],
                                           run["per_seed"][f"naive_alpha{alpha}"][metric])
                    assert test["per_seed_difference"] == pytest.approx(expected)
        finding = env["findings"]["rlhg_ahead_of_naive_on_human_goal_or_task"]
        tests = [t[m] for r in env["schedules"].values() for t in r["rlhg_vs_naive"].values() for m in t]
        assert finding["holm_adjusted_p"] == pytest.approx(holm([t["p_value"] for t in tests]))
    table = render(doc)
    assert table.count("| matched |") == table.count("| none |") == 6
