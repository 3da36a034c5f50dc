"""`python -m agents simulate`: run episodes of a trained policy in an environment and summarize them.

    python -m agents simulate --env prefengine/Collab-v0 --policy run/rlhg.ckpt --episodes 200 --seed 0 --out DIR

The policy is an agent checkpoint (PPO or RLHG) or, for the recommendation simulator, a serving
bundle directory (`python -m recsys export`) whose scorer ranks the slate. Writes
DIR/episodes.csv (one row per episode: return, human-goal return, length, the env's final info),
DIR/summary.json (mean, std and 95% interval of each column) and DIR/episodes.png.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from agents.ppo import EpisodeTracker, Policy, make_vector_env, step_info
from recsys.errors import UserInputError

log = logging.getLogger(__name__)
ID_COLUMNS = ("env", "episode", "user")  # which sub-env, its episode count, the simulated user: not metrics


def run_episodes(env_id: str, env_kwargs: dict | None, policy: Policy, episodes: int, seed: int,
                 num_envs: int = 8, progress: bool = False, vector_env: str = "sync") -> list[dict]:
    """`episodes` finished episodes of `policy` (a callable `(obs batch, infos) -> actions`).

    Each sub-env runs a fixed quota of episodes, so short episodes are not over-counted (taking the
    first N to finish would favour them). The same seed gives the same episodes, with the envs in this
    process or in worker processes (`vector_env="async"`).
    """
    if episodes < 1:
        raise UserInputError(f"--episodes must be >= 1, got {episodes}")
    num_envs = max(1, min(num_envs, episodes))
    quota = np.full(num_envs, episodes // num_envs) + (np.arange(num_envs) < episodes % num_envs)
    envs = make_vector_env(env_id, env_kwargs, num_envs, vector_env)
    tracker = EpisodeTracker(num_envs)
    done_per_env = np.zeros(num_envs, dtype=np.int64)
    records: list[dict] = []
    try:
        obs, infos = envs.reset(seed=seed)
        with tqdm(total=episodes, desc=f"simulate {env_id}", disable=not progress, leave=False) as bar:
            while (done_per_env < quota).any():
                obs, rewards, terminated, truncated, infos = envs.step(policy(obs, infos))
                ended = terminated | truncated
                finished = tracker.update(rewards, step_info(infos, "human_goal_reward", ended), ended, infos)
                for env_index, record in zip(np.flatnonzero(ended), finished):
                    if done_per_env[env_index] < quota[env_index]:
                        records.append({"env": int(env_index), "episode": int(done_per_env[env_index]), **record})
                        bar.update(1)
                    done_per_env[env_index] += 1
    finally:
        envs.close()  # ends async workers also when the policy fails
    return sorted(records, key=lambda r: (r["episode"], r["env"]))


def summarize(records: Sequence[dict]) -> dict[str, dict[str, float]]:
    """Mean, standard deviation and a normal 95% interval of every numeric column but the ids."""
    frame = pd.DataFrame(list(records)).drop(columns=list(ID_COLUMNS), errors="ignore")
    summary = {}
    for column in frame.select_dtypes("number").columns:
        values = frame[column].dropna().to_numpy(dtype=float)
        mean, std = float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0
        half = 1.96 * std / math.sqrt(len(values)) if len(values) > 1 else 0.0
        summary[column] = {"mean": mean, "std": std, "ci95_low": mean - half, "ci95_high": mean + half,
                           "n": int(len(values))}
    return summary


def load_policy(path: str, env_id: str | None, env_kwargs: dict, deterministic: bool,
                seed: int) -> tuple[Policy, str, dict]:
    """The policy in `path`, the env to run it in and its arguments.

    An agent checkpoint runs in its own env (unless `env_id` names another; `env_kwargs` from the
    command line override its own). A recommender checkpoint or a serving bundle directory ranks the
    slates of `env_id`, a recommendation simulator.
    """
    from agents.checkpoints import AGENT_CLASSES, checkpoint_kind, load_agent

    source = Path(path)
    if not source.exists():
        raise UserInputError(f"--policy {path}: no such checkpoint file or bundle directory")
    if source.is_dir() or checkpoint_kind(source) not in AGENT_CLASSES:
        from agents.recommenders import recommender_policy

        if env_id is None:
            raise UserInputError(f"--policy {path}: a recommender needs --env (the recommendation simulator)")
        return recommender_policy(source, env_id, env_kwargs), env_id, env_kwargs
    agent = load_agent(source)
    trained_env = agent.hparams.env_id
    kwargs = dict(agent.hparams.env_kwargs or {}) if env_id in (None, trained_env) else {}
    return agent.policy(deterministic=deterministic, seed=seed), env_id or trained_env, {**kwargs, **env_kwargs}


def plot_episodes(frame: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [c for c in ("return", "human_goal_return", "length") if c in frame]
    fig, axes = plt.subplots(1, len(columns), figsize=(4 * len(columns), 3.2))
    for ax, column in zip(np.atleast_1d(axes), columns):
        values = frame[column].to_numpy(dtype=float)
        if np.allclose(values, np.round(values)) and values.max() - values.min() <= 60:
            bins = np.arange(values.min(), values.max() + 2) - 0.5  # one bar per integer value
        else:
            bins = 30
        ax.hist(values, bins=bins, color="#4c72b0")
        ax.axvline(frame[column].mean(), color="#c44e52", label=f"mean {frame[column].mean():.3g}")
        ax.set_xlabel(column)
        ax.legend(fontsize=8)
    np.atleast_1d(axes)[0].set_ylabel("episodes")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_json_object(text: str | None, name: str) -> dict:
    """A JSON object given on the command line (e.g. env constructor arguments); {} when absent."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserInputError(f"{name} is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise UserInputError(f"{name} must be a JSON object")
    return value


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m agents simulate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default=None, help="environment id (default: the one the checkpoint was trained in)")
    parser.add_argument("--env-kwargs", default=None, help="JSON object of env constructor arguments")
    parser.add_argument("--policy", required=True, help="agent checkpoint (.ckpt) or serving bundle directory")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--vector-env", choices=("sync", "async"), default="sync",
                        help="run the envs in this process (sync) or one worker process each (async)")
    parser.add_argument("--deterministic", action="store_true", help="take the most likely action instead of sampling")
    parser.add_argument("--out", required=True, help="output directory")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    import torch

    args = parse_args(argv)
    torch.set_num_threads(1)  # one small policy network: more threads only contend
    policy, env_id, env_kwargs = load_policy(args.policy, args.env, parse_json_object(args.env_kwargs, "--env-kwargs"),
                                             args.deterministic, args.seed)
    records = run_episodes(env_id, env_kwargs, policy, args.episodes, args.seed, args.num_envs, progress=True,
                           vector_env=args.vector_env)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(records)
    frame.to_csv(out / "episodes.csv", index=False)
    summary = {"env": env_id, "env_kwargs": env_kwargs, "policy": str(args.policy), "episodes": args.episodes,
               "seed": args.seed, "deterministic": args.deterministic, "metrics": summarize(records)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_episodes(frame, out / "episodes.png", f"{env_id}: {Path(args.policy).name}, {args.episodes} episodes")
    for name, stats in summary["metrics"].items():
        print(f"{name:>20}: {stats['mean']:.4g}  (95% CI {stats['ci95_low']:.4g} .. {stats['ci95_high']:.4g})")
    print(f"wrote {out / 'episodes.csv'}, {out / 'summary.json'}, {out / 'episodes.png'}")
    return 0
