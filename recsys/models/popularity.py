"""The non-learned popularity baseline: every user gets the items most often seen in training.

It runs through the same LightningModule path as the learned models (fit, validate, test,
predict, checkpoints, the evaluator), so its numbers are directly comparable. "Training" reads
the training item counts once; no step changes anything.
"""

from __future__ import annotations

import torch

from recsys.models.base import RecommenderModule


class PopularityRecommender(RecommenderModule):
    """score(u, i) = number of training positives of item i (the same for every user)."""

    model_kind = "popularity"
    training_batches = "none"  # the DataModule hands one empty batch per epoch

    def __init__(self, n_users: int, n_items: int, eval_ks: list[int] = (10, 20), predict_k: int = 20,
                 monitor: str | None = None):
        super().__init__(eval_ks=eval_ks, predict_k=predict_k, monitor=monitor)
        self.save_hyperparameters()
        self.register_buffer("item_counts", torch.zeros(n_items, dtype=torch.float32))
        self.automatic_optimization = False  # nothing to optimize

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if getattr(self.trainer, "datamodule", None) is not None:  # a loaded checkpoint overrides these later
            counts = self._datamodule().split.train.item_counts()
            self.item_counts.copy_(torch.as_tensor(counts, dtype=torch.float32))

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        return self.item_counts.unsqueeze(0).expand(len(users), -1)

    def training_step(self, batch, batch_idx: int) -> None:
        return None

    def configure_optimizers(self):
        return None
