"""Policy and value networks for the RL agents, and the action distributions they produce.

CleanRL conventions: tanh MLPs with orthogonal weights; the policy head starts near uniform
(std 0.01) and the value head at std 1. Every distribution samples from an explicit
`torch.Generator`, so a seeded agent acts the same way twice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

ACTION_DISTRIBUTIONS = ("auto", "slate")


def mlp(in_features: int, hidden_sizes: Sequence[int], out_features: int, out_std: float = 1.0) -> nn.Sequential:
    """tanh MLP with orthogonal init; `out_std` scales the last layer."""
    layers: list[nn.Module] = []
    sizes = [in_features, *hidden_sizes]
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [_orthogonal(nn.Linear(a, b), math.sqrt(2)), nn.Tanh()]
    layers.append(_orthogonal(nn.Linear(sizes[-1], out_features), out_std))
    return nn.Sequential(*layers)


def _orthogonal(layer: nn.Linear, std: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, std)
    nn.init.zeros_(layer.bias)
    return layer


class Categorical:
    """One discrete action per step."""

    def __init__(self, logits: torch.Tensor):
        self.logits = logits - logits.logsumexp(-1, keepdim=True)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.multinomial(self.logits.exp(), 1, generator=generator).squeeze(-1)

    def mode(self) -> torch.Tensor:
        return self.logits.argmax(-1)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        return self.logits.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self) -> torch.Tensor:
        return -(self.logits.exp() * self.logits).sum(-1)


class IndependentCategoricals:
    """One categorical per dimension of a MultiDiscrete space; log-probs and entropies add up."""

    def __init__(self, logits: torch.Tensor, nvec: Sequence[int]):
        self.parts = [Categorical(chunk) for chunk in torch.split(logits, list(nvec), dim=-1)]

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.stack([p.sample(generator) for p in self.parts], -1)

    def mode(self) -> torch.Tensor:
        return torch.stack([p.mode() for p in self.parts], -1)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        return sum(p.log_prob(actions[..., i]) for i, p in enumerate(self.parts))

    def entropy(self) -> torch.Tensor:
        return sum(p.entropy() for p in self.parts)


class Slate:
    """Plackett-Luce over ordered slates: `k` distinct items drawn one after another without replacement.

    `log_prob` is exact. `entropy` is the entropy of the first position only: the slate's entropy
    has no closed form, and the first draw carries most of it for the bonus PPO needs.
    """

    def __init__(self, logits: torch.Tensor, k: int):
        self.logits, self.k = logits, k

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        # Gumbel-top-k: the k largest perturbed logits, in order, are one Plackett-Luce draw.
        u = torch.rand(self.logits.shape, generator=generator, dtype=self.logits.dtype).clamp_(1e-12, 1 - 1e-12)
        return (self.logits - torch.log(-torch.log(u))).topk(self.k, dim=-1).indices

    def mode(self) -> torch.Tensor:
        return self.logits.topk(self.k, dim=-1).indices

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        actions = actions.long()
        logits = self.logits
        total = torch.zeros(logits.shape[:-1], dtype=logits.dtype)
        for j in range(self.k):
            chosen = actions[..., j:j + 1]
            total = total + logits.gather(-1, chosen).squeeze(-1) - logits.logsumexp(-1)
            logits = logits.scatter(-1, chosen, float("-inf"))
        return total

    def entropy(self) -> torch.Tensor:
        return Categorical(self.logits).entropy()


class ActorCritic(nn.Module):
    """Separate policy and value MLPs over a flat observation (CleanRL's `Agent`)."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space,
                 hidden_sizes: Sequence[int] = (64, 64), action_distribution: str = "auto"):
        super().__init__()
        if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
            raise ValueError(f"ActorCritic needs a flat Box observation space, got {observation_space}")
        if action_distribution not in ACTION_DISTRIBUTIONS:
            raise ValueError(f"action_distribution must be one of {ACTION_DISTRIBUTIONS}, got {action_distribution!r}")
        obs_dim = int(observation_space.shape[0])
        if isinstance(action_space, spaces.Discrete):
            if action_distribution == "slate":
                raise ValueError("action_distribution 'slate' needs a MultiDiscrete action space")
            n_logits, self._make = int(action_space.n), Categorical
        elif isinstance(action_space, spaces.MultiDiscrete) and action_space.nvec.ndim == 1:
            nvec = [int(n) for n in action_space.nvec]
            if action_distribution == "slate":
                if len(set(nvec)) != 1 or len(nvec) > nvec[0]:
                    raise ValueError(f"a slate needs equal MultiDiscrete sizes and k <= n, got {nvec}")
                n_logits, k = nvec[0], len(nvec)
                self._make = lambda logits: Slate(logits, k)
            else:
                n_logits = sum(nvec)
                self._make = lambda logits: IndependentCategoricals(logits, nvec)
        else:
            raise ValueError(f"ActorCritic supports Discrete and 1-d MultiDiscrete actions, got {action_space}")
        self.actor = mlp(obs_dim, hidden_sizes, n_logits, out_std=0.01)
        self.critic = mlp(obs_dim, hidden_sizes, 1, out_std=1.0)

    def distribution(self, obs: torch.Tensor):
        return self._make(self.actor(obs))

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)


def as_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array), dtype=torch.float32)
