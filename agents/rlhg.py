"""Reinforcement Learning from Human Gain (Gao et al., ICLR 2024) on top of PPO.

The base agent was trained for the task alone and tends to dominate its human partner. RLHG
fine-tunes it to raise the human's own goal achievement *beyond what the human primitively
achieves* with the base agent, while keeping its task ability:

- Stage I (the first `human_value_timesteps` steps): the base agent is frozen and acts; a
  human-primitive value network V_phi(s) is fit to the human-goal return G_H (the discounted sum of
  `info["human_goal_reward"]`).
- Stage II (`total_timesteps` steps): V_phi is frozen. The human gain of a step is
  g = G_H - V_phi(s). A gain network Delta_omega(s) >= 0 is fit to the positive gains only (the
  gain to expect when the agent does help), and the human advantage is A_H = g - Delta_omega(s).
  The policy follows A = A_task + alpha * A_H with PPO's clipped objective; the value head keeps
  learning the task return alone.
- A fraction `beta` of episodes is agent-only: their human terms are off (A = A_task), which keeps
  the original ability. The schedule is PPO's `AgentOnlyEpisodes`, so a naive-sum agent with
  `agent_only_fraction = beta` and the same seed gets the same agent-only episodes. (The paper calls beta the share of human-agent games; here it is the
  agent-only share, and the human partner stays in the env: only the training signal changes.)

G_H is a lambda-return over V_phi (`human_lambda = 1` is the plain Monte-Carlo return); at the end
of a rollout it is bootstrapped with V_phi + Delta_omega, the expected human return of an agent that
helps, since V_phi alone is the base agent's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from agents.networks import mlp
from agents.ppo import PPO, Rollout, generalized_advantages
from recsys.errors import UserInputError


class GainNetwork(nn.Module):
    """Delta_omega(s) >= 0: the expected positive human gain in a state (softplus keeps it non-negative)."""

    def __init__(self, obs_dim: int, hidden_sizes: Sequence[int]):
        super().__init__()
        self.body = mlp(obs_dim, hidden_sizes, 1, out_std=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return F.softplus(self.body(obs).squeeze(-1))


def positive_gain_loss(predicted: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
    """Squared error of Delta_omega on the samples whose gain is positive (0 when there are none)."""
    positive = gains > 0
    if not positive.any():
        return predicted.sum() * 0.0
    return ((predicted[positive] - gains[positive]) ** 2).mean()


class RLHG(PPO):
    model_kind = "rlhg"

    def __init__(
        self,
        base_checkpoint: str | None = None,
        alpha: float = 1.0,
        beta: float = 0.2,
        human_value_timesteps: int = 50_000,
        human_lambda: float = 0.95,
        human_hidden_sizes: tuple[int, ...] = (64, 64),
        human_learning_rate: float = 1e-3,
        **ppo_kwargs,
    ):
        """
        Args:
            base_checkpoint: the task-trained PPO agent to freeze in stage I and fine-tune in stage II
                (needed to fit; a saved RLHG module loads without it).
            alpha: weight of the human advantage A_H in the policy's advantage.
            beta: fraction of episodes that are agent-only (human terms off).
            human_value_timesteps: environment steps of stage I (fitting V_phi under the frozen base agent).
            human_lambda: lambda of the human-goal return G_H (1.0 = Monte Carlo).
            human_hidden_sizes: hidden layers of V_phi and Delta_omega.
            human_learning_rate: Adam step size of V_phi and Delta_omega.
            **ppo_kwargs: the PPO hyper-parameters; `total_timesteps` is the stage-II budget.
        """
        if ppo_kwargs.get("init_from"):
            raise UserInputError("RLHG: give the base agent as base_checkpoint, not init_from")
        if not 0.0 <= beta <= 1.0:
            raise UserInputError(f"RLHG: beta is a fraction of episodes, got {beta}")
        if alpha < 0:
            raise UserInputError(f"RLHG: alpha must be >= 0, got {alpha}")
        fraction = ppo_kwargs.pop("agent_only_fraction", beta)
        if fraction != beta:
            raise UserInputError(f"RLHG: agent_only_fraction ({fraction}) is beta ({beta}); give beta alone")
        super().__init__(agent_only_fraction=beta, **ppo_kwargs)
        self.save_hyperparameters()
        self.stage_one_iterations = human_value_timesteps // self.batch_size
        if self.stage_one_iterations < 1:
            raise UserInputError(f"RLHG: human_value_timesteps={human_value_timesteps} is less than one rollout "
                                 f"({self.batch_size} steps): stage I would leave V_phi untrained")
        self.stage_two_iterations = self.num_iterations
        self.num_iterations = self.stage_one_iterations + self.stage_two_iterations
        obs_dim = int(self.observation_space.shape[0])
        with torch.random.fork_rng():
            torch.manual_seed(self.hparams.seed + 1)
            self.human_value = mlp(obs_dim, human_hidden_sizes, 1, out_std=1.0)
            self.gain = GainNetwork(obs_dim, human_hidden_sizes)

    def V_phi(self, obs: torch.Tensor) -> torch.Tensor:
        return self.human_value(obs).squeeze(-1)

    @property
    def in_stage_one(self) -> bool:
        return self.current_epoch < self.stage_one_iterations

    # --- Lightning hooks -------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if stage == "fit":
            if not self.hparams.base_checkpoint:
                raise UserInputError("RLHG needs base_checkpoint: a PPO agent trained on the task reward")
            self.load_agent_weights(self.hparams.base_checkpoint)

    def configure_optimizers(self):
        lr = self.hparams.human_learning_rate
        return [torch.optim.Adam(self.agent.parameters(), lr=self.hparams.learning_rate, eps=1e-5),
                torch.optim.Adam(self.human_value.parameters(), lr=lr),
                torch.optim.Adam(self.gain.parameters(), lr=lr)]

    def lr_fraction(self) -> float:
        done = max(0, self.current_epoch - self.stage_one_iterations)
        return 1.0 - done / max(1, self.stage_two_iterations)

    def on_train_epoch_start(self) -> None:
        if not self.in_stage_one:
            return super().on_train_epoch_start()
        rollout = self.collect()  # the agent does not learn in stage I, so this is the frozen base agent
        with torch.no_grad():
            values = self.V_phi(rollout.obs)
            _, human_returns = generalized_advantages(
                rollout.human_rewards, values, rollout.next_values(self.V_phi), rollout.ended,
                self.hparams.gamma, self.hparams.human_lambda)
        batch = {"obs": rollout.obs, "human_returns": human_returns}
        self._batch = {k: v.reshape(self.batch_size, *v.shape[2:]) for k, v in batch.items()}

    def rollout_targets(self, rollout: Rollout, values: torch.Tensor) -> dict[str, torch.Tensor]:
        hp = self.hparams
        task_advantages, task_returns = generalized_advantages(
            rollout.task_rewards, values, rollout.next_values(self.agent.value), rollout.ended, hp.gamma,
            hp.gae_lambda)
        next_human = rollout.next_values(self.V_phi)
        next_human[-1] += self.gain(rollout.next_obs[-1]) * (1.0 - rollout.ended[-1])
        gains, _ = generalized_advantages(rollout.human_rewards, self.V_phi(rollout.obs), next_human,
                                          rollout.ended, hp.gamma, hp.human_lambda)
        human_advantages = gains - self.gain(rollout.obs)
        human_terms = 1.0 - self.agent_only.step_flags(rollout.ended)
        return {"advantages": task_advantages + hp.alpha * human_terms * human_advantages,
                "returns": task_returns, "gains": gains}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        _, value_optimizer, gain_optimizer = self.optimizers()
        if self.in_stage_one:
            loss = 0.5 * ((self.V_phi(batch["obs"]) - batch["human_returns"]) ** 2).mean()
            self._step(value_optimizer, loss)
            self.record(human_value_loss=loss)
            return loss
        gain_loss = positive_gain_loss(self.gain(batch["obs"]), batch["gains"])
        self._step(gain_optimizer, gain_loss)
        self.record(gain_loss=gain_loss, mean_gain=batch["gains"].mean(),
                    positive_gain_fraction=(batch["gains"] > 0).float().mean())
        return self.policy_step(batch)

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        self.log("stage", 1.0 if self.in_stage_one else 2.0, on_epoch=True, prog_bar=True, logger=False)

    def _step(self, optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad()
        self.manual_backward(loss)
        self.clip_gradients(optimizer, gradient_clip_val=self.hparams.max_grad_norm, gradient_clip_algorithm="norm")
        optimizer.step()
