"""Proximal Policy Optimization (Schulman et al., 2017) as a LightningModule, CleanRL-style.

One Lightning epoch is one PPO iteration: `on_train_epoch_start` collects `num_steps` steps from
each of `num_envs` vectorized environments with the current policy and computes GAE advantages;
the epoch's "data loader" then yields `update_epochs x num_minibatches` shuffled minibatches of that
rollout, and `training_step` takes one clipped (optionally dual-clipped, Ye et al. 2020) policy
step with an entropy bonus and a (clipped) value loss. The budget is `total_timesteps`; the module
sets the trainer's epoch count from it.

The reward the agent maximizes is the env reward plus `human_reward_coef * info["human_goal_reward"]`
(0 by default; > 0 gives the "naive sum" agent of the RLHG experiment). With `agent_only_fraction`
beta > 0 that human term is off in a fraction beta of the episodes (agent-only episodes), drawn by the
same schedule RLHG uses for its beta, so the naive sum and RLHG can be compared on equal terms.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

import gymnasium as gym
import numpy as np
import pytorch_lightning as pl
import torch
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv
from torch.utils.data import DataLoader, IterableDataset

from agents.networks import ActorCritic, as_tensor
from recsys.errors import UserInputError

log = logging.getLogger(__name__)
# Rollouts are produced in-process by the policy itself: loader workers would only copy the policy,
# and the minibatch stream's length is exact.
warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*has `__len__` defined.*")

Policy = Callable[[np.ndarray, dict], np.ndarray]


# --- the pieces of the algorithm, as plain functions ---------------------------------------------------
def generalized_advantages(rewards: torch.Tensor, values: torch.Tensor, next_values: torch.Tensor,
                           ended: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE(gamma, lambda) over a (T, N) rollout; returns (advantages, lambda-returns).

    `next_values[t]` is the value of the state after step t: 0 when step t terminated the episode,
    the value of the final observation when it was truncated. `ended[t]` (terminated or truncated)
    cuts the trace so no advantage leaks across episodes.
    """
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        delta = rewards[t] + gamma * next_values[t] - values[t]
        running = delta + gamma * lam * (1.0 - ended[t]) * running
        advantages[t] = running
    return advantages, advantages + values


def clipped_policy_loss(logratio: torch.Tensor, advantages: torch.Tensor, clip_coef: float,
                        dual_clip: float | None = None) -> torch.Tensor:
    """PPO's clipped surrogate, negated for minimization.

    With `dual_clip = c > 1`, the objective of negative-advantage samples is bounded below by c * A, so
    a huge ratio on a bad action cannot produce an unbounded step (Ye et al., 2020).
    """
    ratio = logratio.exp()
    objective = torch.min(ratio * advantages, ratio.clamp(1 - clip_coef, 1 + clip_coef) * advantages)
    if dual_clip is not None:
        objective = torch.where(advantages < 0, torch.max(objective, dual_clip * advantages), objective)
    return -objective.mean()


def value_loss(values: torch.Tensor, returns: torch.Tensor, old_values: torch.Tensor,
               clip_coef: float | None) -> torch.Tensor:
    """0.5 * squared error; with `clip_coef`, the pessimum of the clipped and unclipped errors (CleanRL)."""
    unclipped = (values - returns) ** 2
    if clip_coef is None:
        return 0.5 * unclipped.mean()
    clipped = old_values + (values - old_values).clamp(-clip_coef, clip_coef)
    return 0.5 * torch.max(unclipped, (clipped - returns) ** 2).mean()


def normalize(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean()) / (x.std() + 1e-8) if x.numel() > 1 else x


# --- environments and rollouts -----------------------------------------------------------------------
VECTOR_ENVS = ("sync", "async")
START_METHODS = ("spawn", "forkserver", "fork")


def check_vector_env(vector_env: str, start_method: str) -> None:
    if vector_env not in VECTOR_ENVS:
        raise UserInputError(f"vector_env must be one of {list(VECTOR_ENVS)}, got {vector_env!r}")
    if start_method not in START_METHODS:
        raise UserInputError(f"vector_env_start_method must be one of {list(START_METHODS)}, got {start_method!r}")


def make_vector_env(env_id: str, env_kwargs: dict | None, num_envs: int, vector_env: str = "sync",
                    start_method: str = "spawn") -> VectorEnv:
    """`num_envs` copies of a registered env that reset themselves in the step that ends an episode.

    `vector_env="sync"` steps them one after the other in this process; "async" runs each in its own
    worker process (`gymnasium.vector.AsyncVectorEnv`, started with `start_method`). Both give the same
    transitions for the same reset seed. "spawn" is the default because forking a process that already
    runs torch's thread pools can deadlock; the workers import only `agents.envs` (no torch). Close the
    result (`.close()`) to end the workers.
    """
    from agents.envs import make_env  # registers prefengine/*

    check_vector_env(vector_env, start_method)
    try:
        gym.spec(env_id)
    except gym.error.Error as error:
        raise UserInputError(f"unknown environment '{env_id}': {error}") from None
    factories = [partial(make_env, env_id, dict(env_kwargs or {})) for _ in range(num_envs)]
    if vector_env == "async":
        if not env_id.startswith("prefengine/"):
            log.warning("async vector env: '%s' must be registered on import of its module in the worker "
                        "processes too (prefengine/* are)", env_id)
        return AsyncVectorEnv(factories, context=start_method, autoreset_mode=AutoresetMode.SAME_STEP)
    return SyncVectorEnv(factories, autoreset_mode=AutoresetMode.SAME_STEP)


def step_info(infos: dict, key: str, ended: np.ndarray, default: float = 0.0) -> np.ndarray:
    """Per-env value of `key` for the step just taken.

    A sub-env that ended was reset within the same step, so its own info sits in `final_info`.
    """
    n = len(ended)
    values = np.asarray(infos[key], dtype=np.float64) if key in infos else np.full(n, default)
    values = np.where(infos.get(f"_{key}", np.ones(n, bool)), values, default)
    final = infos.get("final_info")
    if final is not None and key in final:
        values = np.where(ended & final[f"_{key}"], np.asarray(final[key], dtype=np.float64), values)
    return values


@dataclass
class Rollout:
    """(T, N, ...) tensors of one rollout plus the episodes that finished in it."""

    obs: torch.Tensor
    next_obs: torch.Tensor  # the observation after each step within the same episode (final one at an end)
    actions: torch.Tensor
    logprobs: torch.Tensor
    task_rewards: torch.Tensor
    human_rewards: torch.Tensor
    terminated: torch.Tensor
    ended: torch.Tensor
    episodes: list[dict] = field(default_factory=list)

    def next_values(self, value_fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """V(next state), 0 after a termination."""
        return value_fn(self.next_obs) * (1.0 - self.terminated)


class EpisodeTracker:
    """Running per-env sums; emits one record per finished episode (return, human goal, length, final info)."""

    STEP_KEYS = ("human_goal_reward",)  # per-step info, summed into human_goal_return instead

    def __init__(self, num_envs: int):
        self.returns = np.zeros(num_envs)
        self.human = np.zeros(num_envs)
        self.lengths = np.zeros(num_envs, dtype=np.int64)

    def update(self, task_rewards, human_rewards, ended, infos) -> list[dict]:
        self.returns += task_rewards
        self.human += human_rewards
        self.lengths += 1
        finished = []
        final = infos.get("final_info", {})
        for i in np.flatnonzero(ended):
            record = {"return": float(self.returns[i]), "human_goal_return": float(self.human[i]),
                      "length": int(self.lengths[i])}
            for key, value in final.items():
                if key.startswith("_") or key in self.STEP_KEYS:
                    continue
                if final.get(f"_{key}", np.zeros(len(ended), bool))[i]:
                    if np.isscalar(value[i]) and np.issubdtype(np.asarray(value[i]).dtype, np.number):
                        record[key] = float(value[i])
            finished.append(record)
            self.returns[i] = self.human[i] = self.lengths[i] = 0
        return finished


def collect_rollout(envs: VectorEnv, act: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                    obs: np.ndarray, num_steps: int, tracker: EpisodeTracker) -> tuple[Rollout, np.ndarray]:
    """Run `num_steps` vector steps; `act(obs) -> (actions, logprobs)`. Returns the rollout and the next obs."""
    columns: dict[str, list] = {k: [] for k in ("obs", "next_obs", "actions", "logprobs", "task_rewards",
                                                "human_rewards", "terminated", "ended")}
    episodes: list[dict] = []
    for _ in range(num_steps):
        actions, logprobs = act(as_tensor(obs))
        next_obs, rewards, terminated, truncated, infos = envs.step(actions.numpy())
        ended = terminated | truncated
        human = step_info(infos, "human_goal_reward", ended)
        after = next_obs.copy()
        if ended.any():
            for i in np.flatnonzero(ended):
                after[i] = infos["final_obs"][i]
        for key, value in (("obs", obs), ("next_obs", after), ("actions", actions), ("logprobs", logprobs),
                           ("task_rewards", rewards), ("human_rewards", human), ("terminated", terminated),
                           ("ended", ended)):
            columns[key].append(torch.as_tensor(np.asarray(value)) if not torch.is_tensor(value) else value)
        episodes += tracker.update(rewards, human, ended, infos)
        obs = next_obs
    stacked = {k: torch.stack(v) for k, v in columns.items()}
    for key in ("obs", "next_obs", "logprobs", "task_rewards", "human_rewards", "terminated", "ended"):
        stacked[key] = stacked[key].float()
    return Rollout(**stacked, episodes=episodes), obs


class AgentOnlyEpisodes:
    """Which episodes are agent-only (their human terms off): each episode is, with probability `fraction`.

    Each env slot draws its episodes' flags from its own stream seeded by (seed, slot), so two agents with
    the same seed and fraction get the same schedule: the k-th episode of env slot i is agent-only in both
    (their episodes may differ in length, not in which are agent-only). Counts what it flagged."""

    def __init__(self, fraction: float, num_envs: int, seed: int):
        self.fraction = float(fraction)
        self._streams = [np.random.default_rng([seed, 0xB57A, slot]) for slot in range(num_envs)]
        self.current = np.array([self._draw(slot) for slot in range(num_envs)])
        self.history: list[list[bool]] = [[bool(flag)] for flag in self.current]  # per slot, in episode order
        self.steps = 0
        self.agent_only_steps = 0

    def _draw(self, slot: int) -> bool:
        return bool(self._streams[slot].random() < self.fraction)  # always draw: streams stay aligned

    def step_flags(self, ended: torch.Tensor) -> torch.Tensor:
        """(T, N) 1.0 where the step belongs to an agent-only episode; an episode's end draws the next one."""
        flags = torch.empty_like(ended)
        for t in range(ended.shape[0]):
            flags[t] = torch.as_tensor(self.current, dtype=flags.dtype)
            for slot in np.flatnonzero(ended[t].numpy()):
                self.current[slot] = self._draw(slot)
                self.history[slot].append(bool(self.current[slot]))
        self.steps += int(ended.numel())
        self.agent_only_steps += int(flags.sum())
        return flags

    def counts(self) -> dict[str, int | float]:
        """Steps and episodes seen (the episodes still running included) and how many were agent-only."""
        return {"fraction": self.fraction, "steps": self.steps, "agent_only_steps": self.agent_only_steps,
                "episodes": sum(map(len, self.history)), "agent_only_episodes": int(sum(map(sum, self.history)))}


class _Minibatches(IterableDataset):
    """The current rollout as shuffled minibatches; its length lets the progress bar show a total."""

    def __init__(self, module: PPO):
        self.module = module

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return self.module.minibatches()

    def __len__(self) -> int:
        return self.module.hparams.update_epochs * self.module.hparams.num_minibatches


class _CloseEnvsOnException(pl.Callback):
    """Lightning skips the module's own end hooks when fitting fails: close the env workers anyway."""

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(pl_module, PPO):
            pl_module.close_envs()


# --- the LightningModule ------------------------------------------------------------------------------
class PPO(pl.LightningModule):
    model_kind = "ppo"

    def __init__(
        self,
        env_id: str = "prefengine/Collab-v0",
        env_kwargs: dict | None = None,
        num_envs: int = 8,
        num_steps: int = 128,
        total_timesteps: int = 200_000,
        learning_rate: float = 2.5e-4,
        anneal_lr: bool = True,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        num_minibatches: int = 4,
        update_epochs: int = 4,
        norm_adv: bool = True,
        clip_coef: float = 0.2,
        dual_clip: float | None = 3.0,
        clip_vloss: bool = False,
        vf_coef: float = 0.5,
        ent_coef: float = 0.01,
        max_grad_norm: float = 0.5,
        hidden_sizes: tuple[int, ...] = (64, 64),
        action_distribution: str = "auto",
        human_reward_coef: float = 0.0,
        agent_only_fraction: float = 0.0,
        init_from: str | None = None,
        seed: int = 0,
        torch_threads: int | None = 1,
        vector_env: str = "sync",
        vector_env_start_method: str = "spawn",
    ):
        """
        Args:
            env_id, env_kwargs: the registered environment and its constructor arguments.
            num_envs, num_steps: a rollout is num_envs x num_steps transitions.
            total_timesteps: the training budget in environment steps.
            learning_rate, anneal_lr: Adam step size, linearly decayed to 0 when anneal_lr.
            gamma, gae_lambda: discount and GAE lambda.
            num_minibatches, update_epochs: each rollout is split into minibatches and reused this often.
            norm_adv: normalize advantages per minibatch.
            clip_coef: PPO ratio clip; dual_clip: lower bound c * A for negative advantages (None = off).
            clip_vloss: clip value updates like the policy ratio (CleanRL's default; off here because it
                slows value learning when returns are far above the clip range, as Andrychowicz et al.
                2021 also found).
            vf_coef, ent_coef: weights of the value loss and the entropy bonus.
            max_grad_norm: global gradient-norm clip.
            hidden_sizes: the policy and value MLPs' hidden layers.
            action_distribution: "auto" (Discrete -> categorical, MultiDiscrete -> independent categoricals)
                or "slate" (MultiDiscrete of k equal sizes -> k distinct items, Plackett-Luce).
            human_reward_coef: weight of info["human_goal_reward"] added to the env reward.
            agent_only_fraction: fraction of episodes whose human reward term is off (agent-only
                episodes, RLHG's beta; the same seed gives RLHG and this agent the same schedule).
            init_from: a PPO/RLHG checkpoint whose agent weights start this run (fine-tuning).
            seed: seeds network init, env resets, action sampling and minibatch order.
            torch_threads: torch intra-op threads while fitting (None leaves torch's setting). Small MLPs
                run fastest on one: more threads only contend, badly so on a shared machine.
            vector_env: "sync" steps the rollout envs in this process; "async" runs each in a worker
                process (gymnasium's AsyncVectorEnv). Same seed, same rollouts; async pays off only when
                an env step costs more than the inter-process round trip and there are free cores.
            vector_env_start_method: how async workers start: "spawn" (safe default), "forkserver", "fork".
        """
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.batch_size = num_envs * num_steps
        self.num_iterations = total_timesteps // self.batch_size
        if self.num_iterations < 1:
            raise UserInputError(f"total_timesteps={total_timesteps} is less than one rollout "
                                 f"(num_envs x num_steps = {self.batch_size})")
        if self.batch_size % num_minibatches:
            raise UserInputError(f"num_minibatches={num_minibatches} must divide num_envs x num_steps = {self.batch_size}")
        if not 0.0 <= agent_only_fraction <= 1.0:
            raise UserInputError(f"agent_only_fraction is a fraction of episodes, got {agent_only_fraction}")
        self.agent_only_fraction = agent_only_fraction
        self.agent_only = AgentOnlyEpisodes(agent_only_fraction, num_envs, seed)
        check_vector_env(vector_env, vector_env_start_method)
        probe = make_vector_env(env_id, env_kwargs, 1)  # in-process: only the spaces are needed
        self.observation_space, self.action_space = probe.single_observation_space, probe.single_action_space
        probe.close()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            try:
                self.agent = ActorCritic(self.observation_space, self.action_space, hidden_sizes, action_distribution)
            except ValueError as error:
                raise UserInputError(f"{env_id}: {error}") from None
        self.timesteps_done = 0
        self._envs: VectorEnv | None = None
        self._batch: dict[str, torch.Tensor] = {}
        self._stats: dict[str, list[float]] = {}
        self.last_episodes: list[dict] = []

    # --- acting ----------------------------------------------------------------------------------
    def policy(self, deterministic: bool = False, seed: int = 0) -> Policy:
        """A callable `(obs batch, infos) -> actions` for simulation; samples with its own seeded generator."""
        generator = torch.Generator().manual_seed(seed)

        def act(obs: np.ndarray, infos: dict | None = None) -> np.ndarray:
            with torch.no_grad():
                dist = self.agent.distribution(as_tensor(obs))
                return (dist.mode() if deterministic else dist.sample(generator)).numpy()

        return act

    def _sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            dist = self.agent.distribution(obs)
            actions = dist.sample(self._generator)
            return actions, dist.log_prob(actions)

    # --- Lightning hooks -------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        # Runs before Lightning restores a resumed checkpoint, so resuming wins over init_from.
        if stage == "fit" and self.hparams.init_from:
            self.load_agent_weights(self.hparams.init_from)

    def load_agent_weights(self, path: str) -> None:
        from agents.checkpoints import read_checkpoint

        checkpoint = read_checkpoint(path)
        weights = {k.removeprefix("agent."): v for k, v in checkpoint["state_dict"].items() if k.startswith("agent.")}
        try:
            self.agent.load_state_dict(weights)
        except RuntimeError as error:
            raise UserInputError(f"{path}: its agent does not fit {self.hparams.env_id}: {error}") from None

    def on_fit_start(self) -> None:
        if self.hparams.torch_threads:
            torch.set_num_threads(self.hparams.torch_threads)
        self.trainer.fit_loop.max_epochs = self.num_iterations
        log.info("PPO: %d iterations of %d steps (%d timesteps)", self.num_iterations, self.batch_size,
                 self.num_iterations * self.batch_size)
        seed = self.hparams.seed
        self._generator = torch.Generator().manual_seed(seed)
        self._rng = np.random.default_rng(seed)
        self._envs = make_vector_env(self.hparams.env_id, self.hparams.env_kwargs, self.hparams.num_envs,
                                     self.hparams.vector_env, self.hparams.vector_env_start_method)
        self._obs, _ = self._envs.reset(seed=seed)
        self._tracker = EpisodeTracker(self.hparams.num_envs)
        self.agent_only = AgentOnlyEpisodes(self.agent_only_fraction, self.hparams.num_envs, seed)

    @property
    def _agent_only(self) -> np.ndarray:
        """Whether each env slot's current episode is agent-only."""
        return self.agent_only.current

    @_agent_only.setter
    def _agent_only(self, flags: np.ndarray) -> None:
        self.agent_only.current = np.asarray(flags, dtype=bool).copy()

    def on_fit_end(self) -> None:
        self.close_envs()

    def teardown(self, stage: str) -> None:
        self.close_envs()

    def configure_callbacks(self) -> list[pl.Callback]:
        return [_CloseEnvsOnException()]

    def close_envs(self) -> None:
        """End the rollout envs (and with async envs their worker processes); safe to call twice."""
        if self._envs is not None:
            envs, self._envs = self._envs, None
            envs.close()

    def configure_optimizers(self):
        return torch.optim.Adam(self.agent.parameters(), lr=self.hparams.learning_rate, eps=1e-5)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_Minibatches(self), batch_size=None)

    def on_train_epoch_start(self) -> None:
        if self.hparams.anneal_lr:
            for group in self._agent_optimizer().param_groups:
                group["lr"] = self.lr_fraction() * self.hparams.learning_rate
        rollout = self.collect()
        with torch.no_grad():
            values = self.agent.value(rollout.obs)
            targets = self.rollout_targets(rollout, values)
        batch = {"obs": rollout.obs, "actions": rollout.actions, "logprobs": rollout.logprobs, "values": values,
                 **targets}
        self._batch = {k: v.reshape(self.batch_size, *v.shape[2:]) for k, v in batch.items()}

    def lr_fraction(self) -> float:
        """Linear decay from 1 at the first iteration towards 0 at the last."""
        return 1.0 - self.current_epoch / self.num_iterations

    def collect(self) -> Rollout:
        """One rollout with the current policy; keeps the episodes that finished in it."""
        rollout, self._obs = collect_rollout(self._envs, self._sample, self._obs, self.hparams.num_steps, self._tracker)
        self.timesteps_done += self.batch_size
        self.last_episodes = rollout.episodes
        return rollout

    def rollout_targets(self, rollout: Rollout, values: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-step `advantages` for the policy and `returns` for the value head (RLHG adds its own)."""
        human_terms = 1.0 - self.agent_only.step_flags(rollout.ended)
        rewards = rollout.task_rewards + self.hparams.human_reward_coef * human_terms * rollout.human_rewards
        advantages, returns = generalized_advantages(rewards, values, rollout.next_values(self.agent.value),
                                                     rollout.ended, self.hparams.gamma, self.hparams.gae_lambda)
        return {"advantages": advantages, "returns": returns}

    def minibatches(self) -> Iterator[dict[str, torch.Tensor]]:
        size = self.batch_size // self.hparams.num_minibatches
        for _ in range(self.hparams.update_epochs):
            order = torch.as_tensor(self._rng.permutation(self.batch_size))
            for start in range(0, self.batch_size, size):
                index = order[start:start + size]
                yield {k: v[index] for k, v in self._batch.items()}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.policy_step(batch)

    def policy_step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One clipped-PPO step of the policy and the task value head on a minibatch."""
        hp = self.hparams
        dist = self.agent.distribution(batch["obs"])
        logratio = dist.log_prob(batch["actions"]) - batch["logprobs"]
        advantages = normalize(batch["advantages"]) if hp.norm_adv else batch["advantages"]
        policy_loss = clipped_policy_loss(logratio, advantages, hp.clip_coef, hp.dual_clip)
        v_loss = value_loss(self.agent.value(batch["obs"]), batch["returns"], batch["values"],
                            hp.clip_coef if hp.clip_vloss else None)
        entropy = dist.entropy().mean()
        loss = policy_loss - hp.ent_coef * entropy + hp.vf_coef * v_loss
        optimizer = self._agent_optimizer()
        optimizer.zero_grad()
        self.manual_backward(loss)
        self.clip_gradients(optimizer, gradient_clip_val=hp.max_grad_norm, gradient_clip_algorithm="norm")
        optimizer.step()
        with torch.no_grad():
            approx_kl = ((logratio.exp() - 1) - logratio).mean()
            clip_fraction = ((logratio.exp() - 1).abs() > hp.clip_coef).float().mean()
        self.record(policy_loss=policy_loss, value_loss=v_loss, entropy=entropy, approx_kl=approx_kl,
                    clip_fraction=clip_fraction)
        return loss

    def record(self, **stats: torch.Tensor) -> None:
        """Keep minibatch statistics; their epoch means are logged once per iteration (self.log per step is slow)."""
        for key, value in stats.items():
            self._stats.setdefault(key, []).append(float(value.detach()))

    def on_train_epoch_end(self) -> None:
        metrics = {"timesteps": float(self.timesteps_done)}
        metrics.update({f"train/{k}": float(np.mean(v)) for k, v in self._stats.items()})
        self._stats = {}
        for key in sorted(set().union(*self.last_episodes)) if self.last_episodes else ():
            metrics[f"episode/{key}"] = float(np.mean([e[key] for e in self.last_episodes if key in e]))
        self.log_dict(metrics, on_epoch=True)
        shown = {name: metrics[f"episode/{key}"] for name, key in (("return", "return"), ("human", "human_goal_return"))
                 if f"episode/{key}" in metrics}
        if shown:
            self.log_dict(shown, on_epoch=True, prog_bar=True, logger=False)

    def _agent_optimizer(self):
        """The policy/value optimizer (the first one; RLHG adds its own after it)."""
        optimizers = self.optimizers()
        return optimizers[0] if isinstance(optimizers, list | tuple) else optimizers

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["prefengine"] = {"model_kind": self.model_kind, "env_id": self.hparams.env_id,
                                    "env_kwargs": dict(self.hparams.env_kwargs or {}),
                                    "timesteps": self.timesteps_done}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.timesteps_done = int(checkpoint.get("prefengine", {}).get("timesteps", 0))
