"""What every recommender LightningModule shares: evaluation, top-K prediction and the checkpoint block.

A subclass provides `model_kind` and `score_users(users) -> (B, n_items)`. Validation and test
run the full-ranking evaluator (`recsys.evaluation.evaluate`) over the DataModule's truth for the
stage and log its flat metrics ("valid/ndcg@20", "test/recall@10", "clean/ndcg@20", ...), so
ModelCheckpoint and EarlyStopping can monitor them. Checkpoints carry `checkpoint["prefengine"]`
(vocabulary, catalog, popularity, training items, metrics) for export and serving; loading a
checkpoint written by another kind of model fails with one clear message.

On N processes (`--trainer.strategy ddp`) each user is ranked on one process and the top-K lists
are gathered (`recsys.evaluation.across_ranks.evaluate_across_ranks`), so every process logs the metrics a
single process would. Models with TorchRec tables may shard them (`shard_tables`); their
checkpoints still hold plain full tensors under the unsharded names.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from recsys.data.ranks import rank_and_world
from recsys.errors import UserInputError
from recsys.evaluation.across_ranks import evaluate_across_ranks
from recsys.models.sharding import (
    ignore_in_ddp,
    is_sharded,
    load_plain_tables,
    plain_state_dict,
    plain_state_shapes,
    shard_collections,
)

log = logging.getLogger(__name__)

METRIC_KEY = re.compile(r"^[A-Za-z_]+/[A-Za-z_]+(@\d+)?$")


class RecommenderModule(pl.LightningModule):
    """Base class: subclasses set `model_kind` and implement `score_users`."""

    model_kind: str = "recommender"

    def __init__(self, eval_ks: list[int] | tuple[int, ...] = (10, 20), predict_k: int = 20,
                 monitor: str | None = None):
        super().__init__()
        if not eval_ks or min(eval_ks) < 1:
            raise UserInputError(f"model.eval_ks must be a non-empty list of positive integers, got {eval_ks}")
        if predict_k < 1:
            raise UserInputError(f"model.predict_k must be >= 1, got {predict_k}")
        self.eval_ks = tuple(int(k) for k in eval_ks)
        self.predict_k = int(predict_k)
        # The validation metric to select checkpoints by (the CLI's default ModelCheckpoint uses it).
        self.monitor = monitor or f"valid/ndcg@{20 if 20 in self.eval_ks else max(self.eval_ks)}"
        self.prefengine_meta: dict[str, Any] = {}
        self.last_evaluation = None  # EvaluationResult of the latest validate/test pass

    # scoring ---------------------------------------------------------------------------------
    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def scorer(self, users: np.ndarray) -> torch.Tensor:
        """The evaluator's scorer: internal user ids -> (len(users), n_items) scores."""
        return self.score_users(torch.as_tensor(np.asarray(users), dtype=torch.int64))

    # data the model is handed (it never reads files) ---------------------------------------------
    def _datamodule(self):
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None:
            raise RuntimeError(f"{type(self).__name__} needs a trainer with an InteractionDataModule")
        return datamodule

    def setup(self, stage: str) -> None:
        if self._trainer is not None and getattr(self.trainer, "datamodule", None) is not None:
            self.prefengine_meta = self.trainer.datamodule.checkpoint_metadata()

    # evaluation ------------------------------------------------------------------------------
    def evaluate_stage(self, stage: str):
        """Run the full-ranking evaluator for "valid" or "test" and return its EvaluationResult."""
        from recsys.evaluation import evaluate

        truth, exclude = self._datamodule().evaluation_inputs(stage)
        was_training = self.training
        self.eval()
        try:
            with self.scoring_session():
                if rank_and_world()[1] > 1:
                    result = evaluate_across_ranks(self.scorer, truth, exclude, self.eval_ks)
                else:
                    result = evaluate(self.scorer, truth=truth, exclude=exclude, ks=self.eval_ks)
        finally:
            self.train(was_training)
        self.last_evaluation = result
        return result

    @contextlib.contextmanager
    def scoring_session(self) -> Iterator[None]:
        """Held while the evaluator scores batches of users: a model may cache what every batch needs."""
        yield

    def _evaluate_and_log(self, stage: str) -> None:
        result = self.evaluate_stage(stage)
        metrics = {key: float(value) for key, value in result.metrics.items() if np.isfinite(value)}
        # On N processes every rank computed the metrics from the same gathered lists: nothing to reduce.
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=False, sync_dist=False,
                      batch_size=1)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate_and_log("valid")

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluate_and_log("test")

    # sharded tables --------------------------------------------------------------------------
    def shard_tables(self, collections: list[torch.nn.Module], sharding: str,
                     assign: Callable[[list[torch.nn.Module]], None]) -> bool:
        """Wrap `collections` in DistributedModelParallel (`recsys.models.sharding.shard_collections`) and hand
        the wrappers to `assign`, which puts them where the tables were. Nothing happens (False) when
        `sharding` is "none" or the run has a single process. Call from setup(), on every rank."""
        if sharding == "none":
            return False
        if rank_and_world()[1] == 1:
            log.warning("model.sharding %r on a single process: the tables stay whole", sharding)
            return False
        assign(shard_collections(collections, sharding))
        # The shards differ per rank: DDP (set up after setup()) must neither broadcast nor all-reduce them.
        ignore_in_ddp(self)
        return True

    # prediction: top-K unseen items per user --------------------------------------------------------
    @torch.no_grad()
    def predict_step(self, batch: torch.Tensor, batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        users = batch.to(torch.int64)
        scores = self.score_users(users).float()
        seen = self._datamodule().seen_items(users.cpu().numpy())
        rows, cols = seen.nonzero()
        scores[torch.as_tensor(rows), torch.as_tensor(cols)] = -torch.inf
        k = min(self.predict_k, scores.shape[1])
        top = torch.topk(scores, k, dim=1)
        return {"users": users, "items": top.indices, "scores": top.values}

    # checkpoints ------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        metrics = {}
        if self._trainer is not None:
            metrics = {key: float(value) for key, value in self.trainer.callback_metrics.items()
                       if METRIC_KEY.match(key)}
        block = dict(self.prefengine_meta)
        block.update(model_kind=self.model_kind, model_class=f"{type(self).__module__}.{type(self).__qualname__}",
                     metrics={**block.get("metrics", {}), **metrics})
        checkpoint["prefengine"] = block
        if is_sharded(self):
            # Plain full tables under the unsharded names (Lightning calls this hook on every rank,
            # which the gathering needs), so a single process loads, tests and exports the checkpoint.
            checkpoint["state_dict"] = plain_state_dict(self)
            # Each rank's optimizer state covers only its own shards; a sharded fit restarts from the weights.
            checkpoint.pop("optimizer_states", None)
            block["sharded_training"] = True

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        where = ""
        if self._trainer is not None and self.trainer.ckpt_path:
            where = f"{self.trainer.ckpt_path}: "
        block = checkpoint.get("prefengine")
        if not isinstance(block, dict) or "model_kind" not in block:
            raise UserInputError(f"{where}not a prefengine checkpoint (it has no 'prefengine' block)")
        if block["model_kind"] != self.model_kind:
            raise UserInputError(f"{where}the checkpoint holds a '{block['model_kind']}' model but the config "
                                 f"builds '{self.model_kind}'; use the config the checkpoint was trained with")
        current = self.prefengine_meta.get("vocab_digest")
        if current and block.get("vocab_digest") and block["vocab_digest"] != current:
            raise UserInputError(f"{where}the checkpoint was trained on other users/items than the configured "
                                 "data (id-vocabulary digests differ)")
        stored = checkpoint.get("state_dict", {})
        for name, shape in plain_state_shapes(self).items():
            if name not in stored:
                raise UserInputError(f"{where}the checkpoint lacks '{name}' that the configured model has")
            if tuple(stored[name].shape) != shape:
                raise UserInputError(f"{where}'{name}' has shape {tuple(stored[name].shape)} in the checkpoint "
                                     f"but {shape} in the configured model (different data "
                                     "or embedding size?)")
        if is_sharded(self):
            if self._trainer is not None and self.trainer.training and "optimizer_states" not in checkpoint:
                raise UserInputError(f"{where}resuming a fit with sharded tables is not supported (the checkpoint "
                                     "keeps the weights, not each rank's optimizer state); start a new fit, or "
                                     "test/predict/export the checkpoint")
            load_plain_tables(self, stored)
            self.strict_loading = False  # the shards were filled above; every other key was checked
        self.prefengine_meta = block
