"""Preference optimization of the generative retriever: DPO and S-DPO over semantic-ID sequence likelihoods.

DPO (Rafailov et al., 2023) fine-tunes a supervised model (the policy) so that, for a query x, a
chosen item y+ gains log-likelihood relative to a frozen copy of the starting model (the reference)
more than a rejected item y- does:

    loss = -log sigmoid(beta * [(log pi(y+|x) - log ref(y+|x)) - (log pi(y-|x) - log ref(y-|x))])

S-DPO (Chen et al., 2024, for recommenders) puts one chosen item against several rejected ones in a
softmax:

    loss = -log sigmoid(-log sum_j exp(beta * [(log pi(y-_j|x) - log ref(y-_j|x)) - (log pi(y+|x) - log ref(y+|x))]))

which equals DPO with one rejected item. log pi(y|x) of an item is the sum over levels of its
semantic-ID codes' log-probabilities, each level's softmax over that level's codes (the likelihood
the beam search ranks by). The chosen / rejected pairs come from `recsys.preferences.pairs`.

"Preference learning algorithms do not learn preference rankings" (Chen et al., 2024) warns that such
training often leaves ranking accuracy low, so every step logs two accuracies beside the loss:
`ranking_accuracy`, the share of (chosen, rejected) pairs whose policy log-ratio (the implicit reward)
ranks the chosen item first, and `likelihood_accuracy`, the share where the policy's likelihood alone does.

`PreferenceOptimization` starts from a trained TIGER / Mender checkpoint; `save_policy` writes the
fine-tuned retriever as an ordinary `GenerativeRetriever` checkpoint, so it evaluates and exports
like any other.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from recsys.errors import UserInputError
from recsys.models.generative import GenerativeRetriever

log = logging.getLogger(__name__)

Objective = Literal["dpo", "sdpo"]


# ---------------------------------------------------------------------------------------------
# the objectives (plain functions: tested against hand computations)
# ---------------------------------------------------------------------------------------------
def _log_ratios(policy_chosen, policy_rejected, reference_chosen, reference_rejected):
    return policy_chosen - reference_chosen, policy_rejected - reference_rejected


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, reference_chosen: torch.Tensor,
             reference_rejected: torch.Tensor, beta: float, rejected_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean DPO loss over every (chosen, rejected) pair. Chosen (B,), rejected (B, R) log-likelihoods;
    rejected_mask (B, R) marks the real rejected items (None: all)."""
    chosen, rejected = _log_ratios(policy_chosen, policy_rejected, reference_chosen, reference_rejected)
    losses = -F.logsigmoid(beta * (chosen[:, None] - rejected))
    if rejected_mask is None:
        return losses.mean()
    weights = rejected_mask.to(losses.dtype)
    return (losses * weights).sum() / weights.sum().clamp_min(1.0)


def sdpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, reference_chosen: torch.Tensor,
              reference_rejected: torch.Tensor, beta: float, rejected_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean S-DPO loss over queries: one chosen item against all of its (real) rejected ones at once."""
    chosen, rejected = _log_ratios(policy_chosen, policy_rejected, reference_chosen, reference_rejected)
    gaps = beta * (rejected - chosen[:, None])
    if rejected_mask is not None:
        gaps = gaps.masked_fill(~rejected_mask, float("-inf"))
    return -F.logsigmoid(-torch.logsumexp(gaps, dim=1)).mean()


def ranking_accuracy(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, reference_chosen: torch.Tensor,
                     reference_rejected: torch.Tensor, rejected_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Share of (chosen, rejected) pairs whose policy log-ratio ranks the chosen item above the rejected one."""
    chosen, rejected = _log_ratios(policy_chosen, policy_rejected, reference_chosen, reference_rejected)
    return _share(chosen[:, None] > rejected, rejected_mask)


def likelihood_accuracy(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
                        rejected_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Share of pairs where the policy's own likelihood ranks the chosen item first (what generation sees)."""
    return _share(policy_chosen[:, None] > policy_rejected, rejected_mask)


def _share(wins: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    wins = wins.float()
    if mask is None:
        return wins.mean()
    return (wins * mask).sum() / mask.float().sum().clamp_min(1.0)


OBJECTIVES = {"dpo": dpo_loss, "sdpo": sdpo_loss}


def item_log_likelihood(model: GenerativeRetriever, memory: torch.Tensor, padding: torch.Tensor,
                        items: torch.Tensor) -> torch.Tensor:
    """log p(item | query) (B, C) of candidate items (B, C) for queries encoded as memory (B, S, d)."""
    batch, candidates = items.shape
    codes = model.item_codes[items.reshape(-1)]  # (B*C, L)
    memory = memory.repeat_interleave(candidates, dim=0)
    padding = padding.repeat_interleave(candidates, dim=0)
    logits = model.decode(memory, padding, codes[:, :-1])  # (B*C, L, V)
    total = torch.zeros(len(codes), dtype=logits.dtype, device=logits.device)
    for level in range(model.n_levels):
        logp = F.log_softmax(model.level_logits(logits[:, level], level), dim=-1)
        total = total + logp.gather(1, codes[:, level:level + 1]).squeeze(1)
    return total.reshape(batch, candidates)


# ---------------------------------------------------------------------------------------------
# the LightningModule
# ---------------------------------------------------------------------------------------------
class PreferenceOptimization(pl.LightningModule):
    """DPO / S-DPO fine-tuning of a trained `GenerativeRetriever` against a frozen copy of itself.

    Batches are dicts: the query (`history`, and for Mender `prefs`, `pref_mask`, `pref_negative`),
    `chosen` (B,) item ids, `rejected` (B, R) item ids with `rejected_mask` (B, R).
    `n_negatives` is R, the rejected items per query that the pairs are built with (S-DPO's
    softmax width; DPO averages over the R pairs). `sft_weight` adds that multiple of the chosen
    item's negative log-likelihood (0 = pure DPO).
    """

    def __init__(self, checkpoint: str | None = None, beta: float = 0.1, n_negatives: int = 4,
                 objective: Objective = "sdpo", lr: float = 1e-4, weight_decay: float = 0.0, sft_weight: float = 0.0,
                 policy: GenerativeRetriever | None = None):
        super().__init__()
        if objective not in OBJECTIVES:
            raise UserInputError(f"dpo.objective must be 'dpo' or 'sdpo', got {objective!r}")
        if beta <= 0 or n_negatives < 1 or lr <= 0 or weight_decay < 0 or sft_weight < 0:
            raise UserInputError("dpo: beta and lr must be > 0, n_negatives >= 1, weight_decay and sft_weight >= 0")
        if (checkpoint is None) == (policy is None):
            raise UserInputError("PreferenceOptimization starts from exactly one of a checkpoint or a model")
        self.save_hyperparameters(ignore=["policy"])
        if policy is None:
            if not Path(checkpoint).is_file():
                raise UserInputError(f"{checkpoint}: checkpoint not found")
            policy = GenerativeRetriever.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=False)
        self.policy = policy
        self.reference = copy.deepcopy(policy)
        self.reference.requires_grad_(False)
        self.reference.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.reference.eval()  # no dropout in the reference: its log-likelihoods are fixed targets
        return self

    def _likelihoods(self, model: GenerativeRetriever, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        memory, padding = model.encode(batch["history"], batch.get("prefs"), batch.get("pref_mask"),
                                       batch.get("pref_negative"))
        items = torch.cat([batch["chosen"][:, None], batch["rejected"].clamp_min(0)], dim=1)
        logp = item_log_likelihood(model, memory, padding, items)
        return logp[:, 0], logp[:, 1:]

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        policy_chosen, policy_rejected = self._likelihoods(self.policy, batch)
        with torch.no_grad():
            reference_chosen, reference_rejected = self._likelihoods(self.reference, batch)
        mask = batch.get("rejected_mask")
        if mask is None:
            mask = batch["rejected"] >= 0
        loss = OBJECTIVES[self.hparams.objective](policy_chosen, policy_rejected, reference_chosen,
                                                  reference_rejected, self.hparams.beta, mask)
        if self.hparams.sft_weight:
            loss = loss - self.hparams.sft_weight * policy_chosen.mean() / self.policy.n_levels
        with torch.no_grad():
            diagnostics = {"ranking_accuracy": ranking_accuracy(policy_chosen, policy_rejected, reference_chosen,
                                                                reference_rejected, mask),
                           "likelihood_accuracy": likelihood_accuracy(policy_chosen, policy_rejected, mask),
                           "chosen_log_ratio": (policy_chosen - reference_chosen).mean()}
        return {"loss": loss, **diagnostics}

    def _log(self, prefix: str, values: dict[str, torch.Tensor], size: int) -> None:
        for name, value in values.items():
            self.log(f"{prefix}/{name}", value, prog_bar=name in ("loss", "ranking_accuracy"), on_step=False,
                     on_epoch=True, batch_size=size, sync_dist=True)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        values = self.step(batch)
        self._log("train", values, len(batch["chosen"]))
        return values["loss"]

    def validation_step(self, batch, batch_idx: int) -> None:
        self._log("valid", self.step(batch), len(batch["chosen"]))

    def configure_optimizers(self):
        return torch.optim.AdamW(self.policy.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    def save_policy(self, path: Path | str, extra: dict[str, Any] | None = None) -> Path:
        """The fine-tuned retriever as a `GenerativeRetriever` checkpoint (loads, evaluates and exports as one)."""
        return save_retriever(self.policy, path, {"preference_optimization": {
            key: self.hparams[key] for key in ("beta", "n_negatives", "objective", "lr", "sft_weight")}, **(extra or {})})


def save_retriever(model: GenerativeRetriever, path: Path | str, meta: dict[str, Any] | None = None) -> Path:
    """A checkpoint that `GenerativeRetriever.load_from_checkpoint` reads, without a Trainer."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint: dict[str, Any] = {"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                                  "hyper_parameters": dict(model.hparams),
                                  "pytorch-lightning_version": pl.__version__}
    model.on_save_checkpoint(checkpoint)
    checkpoint["prefengine"].update(meta or {})
    torch.save(checkpoint, path)
    return path
