"""Pluralistic reward learning: K reward prototypes in a shared space, each person a mixture of them.

A PAL-style model (Chen et al., "Pluralistic alignment framework") over segment-pair preferences.
Prototype k is a reward vector p_k in a latent space that the reward features map into by a shared
linear projection (r_k(phi) = p_k . (A phi); A is the identity when `latent_dim` is None). Person u
holds weights pi_u = softmax(z_u) over the prototypes. Two forms tie a person to the prototypes:

    mixture      P(sigma_1 > sigma_2 | u) = sum_k pi_uk sigmoid(l_k(sigma_1, sigma_2))
                 (a mixture of Bradley-Terry models: the person answers as one prototype would);
    ideal_point  the person's own reward is the point sum_k pi_uk p_k of the prototypes' hull, and
                 P = sigmoid(l_{w_u}(sigma_1, sigma_2))  (PAL-A's ideal point, with an inner product).

l_w is the log-odds of the partial-return or the regret preference model (agents.preferences.models)
under the linear reward w; the regret form needs the policy set whose values approximate V*.
K = 1 is one shared reward. `place_people` fits new people's weights from a few comparisons with the
prototypes frozen.

Batches are `to_batch` dicts plus "people" (B,) long: the person who answered each pair.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from agents.preferences.dataset import PreferenceDataset
from agents.preferences.models import DTYPE, PartialReturnModel, RegretModel, to_batch
from agents.preferences.policy_set import PolicySet
from recsys.errors import UserInputError

FORMS = ("mixture", "ideal_point")
PREFERENCE_FORMS = ("partial_return", "regret")


class PairScorer(nn.Module):
    """Log-odds of every pair under each of R linear rewards: (B, R), partial return or regret."""

    def __init__(
        self,
        preference: Literal["partial_return", "regret"] = "partial_return",
        policy_set: PolicySet | None = None,
        gamma: float = 1.0,
        temperature: float = 0.001,
    ) -> None:
        super().__init__()
        if preference not in PREFERENCE_FORMS:
            raise UserInputError(f"preference must be one of {PREFERENCE_FORMS}, got {preference!r}")
        if preference == "regret" and policy_set is None:
            raise UserInputError("the regret form needs a policy set to approximate V*")
        self.preference = preference
        self.model = (
            RegretModel(policy_set, gamma, temperature) if preference == "regret" else PartialReturnModel()
        )

    def prepare(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.model.prepare(batch) if "feature_difference" not in batch else batch

    def logits(self, weights: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """weights (R, d) -> (B, R)."""
        out = batch["feature_difference"] @ weights.T
        if self.preference == "regret":
            m = self.model
            # soft maximum over the policy set of V^pi(s) = occupancy[pi, s] . (basis @ w)
            values = torch.einsum("psu,ur->rps", m.occupancy, m.basis @ weights.T)
            v_star = (torch.softmax(values / m.temperature, dim=1) * values).sum(1)  # (R, S)
            index, coef = batch["value_index"], batch["value_coef"]  # (B, 4)
            out = out + (coef[:, None, :] * v_star[:, index].permute(1, 0, 2)).sum(-1)
        return out


class PluralisticReward(nn.Module):
    """K prototypes and per-person mixture weights (see the module docstring)."""

    def __init__(
        self,
        n_people: int,
        n_types: int = 4,
        n_features: int = 6,
        form: Literal["mixture", "ideal_point"] = "mixture",
        latent_dim: int | None = None,
        init_scale: float = 1.0,
        generator: torch.Generator | None = None,
        prototype_l2: float = 0.0,
    ) -> None:
        super().__init__()
        self.prototype_l2 = float(prototype_l2)
        if form not in FORMS:
            raise UserInputError(f"form must be one of {FORMS}, got {form!r}")
        if n_types < 1 or n_people < 0:
            raise UserInputError(f"n_types must be >= 1 and n_people >= 0, got {n_types}, {n_people}")
        self.form, self.n_types = form, n_types
        width = n_features if latent_dim is None else latent_dim
        self.prototypes = nn.Parameter(init_scale * torch.randn(n_types, width, dtype=DTYPE, generator=generator))
        self.projection = (
            None
            if latent_dim is None
            else nn.Parameter(torch.randn(latent_dim, n_features, dtype=DTYPE, generator=generator) / np.sqrt(n_features))
        )
        self.person_logits = nn.Parameter(torch.zeros(n_people, n_types, dtype=DTYPE))

    def prototype_weights(self) -> Tensor:
        """The prototypes as reward weights over the features: (K, d)."""
        return self.prototypes if self.projection is None else self.prototypes @ self.projection

    def mixtures(self) -> Tensor:
        return torch.softmax(self.person_logits, dim=1)

    def probabilities(self, scorer: PairScorer, batch: dict[str, Tensor]) -> Tensor:
        """P(first preferred) for every pair, by the person who answered it: (B,)."""
        people = batch["people"]
        weights = self.mixtures()
        if self.form == "mixture":
            logits = scorer.logits(self.prototype_weights(), batch)  # (B, K)
            return (weights[people] * torch.sigmoid(logits)).sum(1)
        return torch.sigmoid(person_logits(scorer, weights @ self.prototype_weights(), batch))

    def loss(self, scorer: PairScorer, batch: dict[str, Tensor], logit_l2: float = 0.0) -> Tensor:
        p = self.probabilities(scorer, batch).clamp(1e-12, 1 - 1e-12)
        nll = nn.functional.binary_cross_entropy(p, batch["labels"])
        # a Gaussian prior on the weights' logits (MAP): its pull on a person is the same whatever the
        # batch size, so a person with few pairs stays near the uniform mixture of the prototypes
        if logit_l2:
            nll = nll + logit_l2 * self.person_logits.pow(2).sum() / len(p)
        if self.prototype_l2 and self.prototypes.requires_grad:
            # the same L2 as the shared baseline's, per prototype
            nll = nll + self.prototype_l2 * self.prototype_weights().pow(2).sum() / self.n_types
        return nll


class PerPersonReward(nn.Module):
    """The per-person baseline: every person their own linear reward, fitted on their pairs alone."""

    def __init__(self, n_people: int, n_features: int = 6) -> None:
        super().__init__()
        self.person_weights = nn.Parameter(torch.zeros(n_people, n_features, dtype=DTYPE))

    def probabilities(self, scorer: PairScorer, batch: dict[str, Tensor]) -> Tensor:
        return torch.sigmoid(person_logits(scorer, self.person_weights, batch))

    def loss(self, scorer: PairScorer, batch: dict[str, Tensor], l2: float = 0.0) -> Tensor:
        logits = person_logits(scorer, self.person_weights, batch)
        nll = nn.functional.binary_cross_entropy_with_logits(logits, batch["labels"])
        return nll + l2 * self.person_weights.pow(2).sum(1).mean() if l2 else nll


class SharedReward(PerPersonReward):
    """The one-shared-reward baseline: a single linear reward answers for every person."""

    def __init__(self, n_people: int = 1, n_features: int = 6) -> None:
        super().__init__(1, n_features)

    def probabilities(self, scorer: PairScorer, batch: dict[str, Tensor]) -> Tensor:
        return torch.sigmoid(scorer.logits(self.person_weights, batch)[:, 0])

    def loss(self, scorer: PairScorer, batch: dict[str, Tensor], l2: float = 0.0) -> Tensor:
        logits = scorer.logits(self.person_weights, batch)[:, 0]
        nll = nn.functional.binary_cross_entropy_with_logits(logits, batch["labels"])
        return nll + l2 * self.person_weights.pow(2).sum() if l2 else nll


def person_logits(scorer: PairScorer, weights: Tensor, batch: dict[str, Tensor]) -> Tensor:
    """Log-odds of each pair under its own person's reward weights (N, d): (B,)."""
    people = batch["people"]
    if scorer.preference == "partial_return":
        return (batch["feature_difference"] * weights[people]).sum(1)
    used, local = torch.unique(people, return_inverse=True)  # V* only for the people in the batch
    return scorer.logits(weights[used], batch).gather(1, local[:, None])[:, 0]


def people_batch(
    data: list[PreferenceDataset], scorer: PairScorer | None, first_person: int = 0
) -> dict[str, Tensor]:
    """One batch of every person's pairs (prepared for `scorer` unless it is None); person i of the
    list is id first_person + i."""
    if not data:
        raise UserInputError("no people to batch")
    names = {d.feature_names for d in data}
    if len(names) > 1:
        raise UserInputError(f"people's preferences use different reward features: {sorted(names)}")
    pairs = [to_batch(d) for d in data]
    batch = {key: torch.cat([p[key] for p in pairs]) for key in pairs[0]}
    batch["people"] = torch.cat(
        [torch.full((len(d),), first_person + i, dtype=torch.long) for i, d in enumerate(data)]
    )
    return batch if scorer is None else scorer.prepare(batch)


def fit(
    model: nn.Module,
    scorer: PairScorer,
    batch: dict[str, Tensor],
    steps: int = 500,
    lr: float = 0.05,
    penalty: float = 0.0,
) -> float:
    """Full-batch Adam over the model's trainable parameters; ends on the lowest-loss iterate."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=lr)
    best: tuple[float, dict] | None = None
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = model.loss(scorer, batch, penalty)
        value = float(loss.detach())
        if best is None or value < best[0]:
            best = (value, {k: v.detach().clone() for k, v in model.state_dict().items()})
        loss.backward()
        optimizer.step()
    model.load_state_dict(best[1])
    with torch.no_grad():
        return float(model.loss(scorer, batch, penalty))


def place_people(
    model: PluralisticReward,
    scorer: PairScorer,
    batch: dict[str, Tensor],
    n_people: int,
    steps: int = 300,
    lr: float = 0.1,
    logit_l2: float = 0.01,
) -> PluralisticReward:
    """A model for `n_people` new people (ids 0..n-1 in `batch`), their weights fitted from their
    comparisons with the prototypes (and projection) copied from `model` and frozen."""
    if len(batch["labels"]) and int(batch["people"].max()) >= n_people:
        raise UserInputError(f"batch names person {int(batch['people'].max())} but only {n_people} are placed")
    placed = PluralisticReward(
        n_people, model.n_types, model.prototype_weights().shape[1], model.form,
        None if model.projection is None else model.projection.shape[0],
    )
    placed.prototypes = nn.Parameter(model.prototypes.detach().clone(), requires_grad=False)
    if model.projection is not None:
        placed.projection = nn.Parameter(model.projection.detach().clone(), requires_grad=False)
    if len(batch["labels"]):
        fit(placed, scorer, batch, steps, lr, logit_l2)
    return placed


def fit_restarts(
    n_people: int,
    scorer: PairScorer,
    batch: dict[str, Tensor],
    n_types: int,
    form: str,
    restarts: int = 3,
    seed: int = 0,
    steps: int = 500,
    lr: float = 0.05,
    logit_l2: float = 0.01,
    latent_dim: int | None = None,
    prototype_l2: float = 0.0,
) -> PluralisticReward:
    """The lowest-training-loss of `restarts` fits from random prototypes (mixtures have local optima)."""
    best: tuple[float, PluralisticReward] | None = None
    n_features = batch["feature_difference"].shape[1]
    for r in range(restarts):
        generator = torch.Generator().manual_seed(seed * 1000 + r)
        model = PluralisticReward(
            n_people, n_types, n_features, form, latent_dim, generator=generator, prototype_l2=prototype_l2
        )
        loss = fit(model, scorer, batch, steps, lr, logit_l2)
        if best is None or loss < best[0]:
            best = (loss, model)
    return best[1]


@torch.no_grad()
def pair_accuracy(
    model: nn.Module, scorer: PairScorer, batch: dict[str, Tensor], truth: Tensor, n_people: int | None = None
) -> Tensor:
    """Per person: the fraction of pairs (true ties left out) whose preferred segment is predicted.

    truth (B,) is the noise-free preference (1, 0 or 0.5). Returns (n_people,), NaN for anyone with no
    untied pair."""
    predicted = model.probabilities(scorer, batch) > 0.5
    strict = truth != 0.5
    correct = (predicted == (truth > 0.5)) & strict
    n = int(batch["people"].max()) + 1 if n_people is None else n_people
    hits = torch.zeros(n, dtype=DTYPE).index_add_(0, batch["people"], correct.to(DTYPE))
    counts = torch.zeros(n, dtype=DTYPE).index_add_(0, batch["people"], strict.to(DTYPE))
    return hits / counts


@torch.no_grad()
def validation_loss(model: nn.Module, scorer: PairScorer, batch: dict[str, Tensor]) -> float:
    """Cross-entropy on held-out (noisy) labels: what a hyper-parameter is chosen by."""
    p = model.probabilities(scorer, batch).clamp(1e-12, 1 - 1e-12)
    return float(nn.functional.binary_cross_entropy(p, batch["labels"]))


def fit_selected(
    n_people: int,
    scorer: PairScorer,
    train: dict[str, Tensor],
    validation: dict[str, Tensor],
    n_types: int,
    forms: tuple[str, ...] = FORMS,
    logit_l2_grid: tuple[float, ...] = (0.003, 0.03, 0.3, 3.0),
    prototype_l2_grid: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0),
    restarts: int = 2,
    seed: int = 0,
    steps: int = 300,
    lr: float = 0.05,
) -> tuple[PluralisticReward, dict]:
    """Choose the hyper-parameters by validation cross-entropy, greedily: first the form and the prior
    strength on the weights (prototype L2 at its weakest), then the prototype L2 for that choice.

    The weights' prior matters most: weak lets each person pick a prototype (right when types
    differ), strong keeps everyone near the uniform mixture, so all prototypes see all the data
    (right when there is one type)."""
    best: tuple[float, PluralisticReward, dict] | None = None

    def consider(form: str, logit_l2: float, prototype_l2: float) -> None:
        nonlocal best
        model = fit_restarts(
            n_people, scorer, train, n_types, form, restarts, seed, steps, lr, logit_l2, prototype_l2=prototype_l2
        )
        loss = validation_loss(model, scorer, validation)
        if best is None or loss < best[0]:
            chosen = {"form": form, "logit_l2": logit_l2, "prototype_l2": prototype_l2, "validation_loss": loss}
            best = (loss, model, chosen)

    weakest = min(prototype_l2_grid)
    for form in forms:
        for logit_l2 in logit_l2_grid:
            consider(form, logit_l2, weakest)
    form, logit_l2 = best[2]["form"], best[2]["logit_l2"]
    for prototype_l2 in sorted(prototype_l2_grid):
        if prototype_l2 != weakest:
            consider(form, logit_l2, prototype_l2)
    return best[1], best[2]


def fit_per_person(
    n_people: int,
    scorer: PairScorer,
    train: dict[str, Tensor],
    validation: dict[str, Tensor],
    l2_grid: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0),
    steps: int = 300,
    lr: float = 0.1,
    shared: bool = False,
) -> tuple[PerPersonReward, dict]:
    """The per-person baseline (or with `shared`, the one-shared-reward baseline) with its L2
    strength chosen on validation pairs."""
    best: tuple[float, PerPersonReward, dict] | None = None
    kind = SharedReward if shared else PerPersonReward
    for l2 in l2_grid:
        model = kind(n_people, train["feature_difference"].shape[1])
        fit(model, scorer, train, steps, lr, l2)
        loss = validation_loss(model, scorer, validation)
        if best is None or loss < best[0]:
            best = (loss, model, {"l2": l2, "validation_loss": loss})
    return best[1], best[2]
