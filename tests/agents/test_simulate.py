"""`python -m agents simulate`: episode quotas, seeding, summaries against numpy, files, and user errors."""

import json

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl

from agents.cli import main as agents_main
from agents.ppo import PPO
from agents.simulate import main, run_episodes, summarize
from recsys.errors import UserInputError


def always(action: int):
    return lambda obs, infos: np.full(len(obs), action)


def test_run_episodes_fills_each_env_quota_and_repeats_with_the_seed():
    kwargs = {"time_limit": 4, "n_items": 3}
    records = run_episodes("prefengine/Collab-v0", kwargs, always(0), episodes=7, seed=5, num_envs=3)
    assert len(records) == 7
    assert sorted((r["env"], r["episode"]) for r in records) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0), (2, 1)]
    # the same episodes again, with the envs in worker processes this time
    again = run_episodes("prefengine/Collab-v0", kwargs, always(0), episodes=7, seed=5, num_envs=3,
                         vector_env="async")
    assert records == again
    other = run_episodes("prefengine/Collab-v0", kwargs, always(0), episodes=7, seed=6, num_envs=3)
    assert records != other
    for record in records:  # a standing agent collects nothing: the human did all of the return
        assert record["items_by_agent"] == 0 and record["return"] == record["items_by_human"]
        assert record["length"] <= 4


def test_summarize_matches_numpy():
    records = [{"env": 0, "episode": i, "return": float(v), "flag": float(v > 2)} for i, v in enumerate([1, 2, 3, 6])]
    summary = summarize(records)
    values = np.array([1, 2, 3, 6.0])
    assert summary["return"]["mean"] == pytest.approx(values.mean())
    assert summary["return"]["std"] == pytest.approx(values.std(ddof=1))
    half = 1.96 * values.std(ddof=1) / 2
    assert summary["return"]["ci95_low"] == pytest.approx(values.mean() - half)
    assert summary["flag"]["mean"] == 0.5 and "env" not in summary and summary["return"]["n"] == 4


def test_simulate_cli_writes_episodes_summary_and_plot(tmp_path):
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(PPO(num_envs=2, num_steps=16, total_timesteps=32, num_minibatches=2, env_kwargs={"time_limit": 6}))
    checkpoint = tmp_path / "agent.ckpt"
    trainer.save_checkpoint(checkpoint)
    out = tmp_path / "sim"
    assert agents_main(["simulate", "--policy", str(checkpoint), "--episodes", "6", "--seed", "1",
                        "--num-envs", "2", "--out", str(out)]) == 0
    frame = pd.read_csv(out / "episodes.csv")
    summary = json.loads((out / "summary.json").read_text())
    assert len(frame) == 6 and (out / "episodes.png").stat().st_size > 1000
    assert summary["env"] == "prefengine/Collab-v0" and summary["env_kwargs"] == {"time_limit": 6}
    assert (frame["length"] <= 6).all()
    for column in ("return", "human_goal_return", "task_success"):
        assert summary["metrics"][column]["mean"] == pytest.approx(frame[column].mean())
    # --env-kwargs overrides the checkpoint's own env arguments
    main(["--policy", str(checkpoint), "--episodes", "2", "--env-kwargs", '{"time_limit": 2}', "--out", str(out)])
    assert (pd.read_csv(out / "episodes.csv")["length"] <= 2).all()


def test_simulate_user_errors(tmp_path, capsys):
    assert agents_main(["simulate", "--policy", str(tmp_path / "none.ckpt"), "--out", str(tmp_path)]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    with pytest.raises(UserInputError, match="JSON"):
        main(["--policy", str(tmp_path), "--env", "prefengine/RecSim-v0", "--env-kwargs", "{oops",
              "--out", str(tmp_path)])
    with pytest.raises(UserInputError, match="episodes"):
        run_episodes("prefengine/Collab-v0", {}, always(0), episodes=0, seed=0)
