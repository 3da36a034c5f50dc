"""The Lightning strategy for multi-process training of models with TorchRec-sharded tables.

DDP must leave the shards alone (`recsys.models.sharding.ignore_in_ddp`); a model whose every
parameter is sharded has nothing for DDP to do, which plain DDP refuses, hence `TorchRecDDPStrategy`
(registered as `--trainer.strategy ddp_torchrec` on import).
"""

from __future__ import annotations

from pytorch_lightning.strategies import DDPStrategy, StrategyRegistry
from torch import nn


class TorchRecDDPStrategy(DDPStrategy):
    """DDP that leaves TorchRec shards to TorchRec, and skips the DDP wrapper when nothing is left to sync.

    Plain DDP raises for a module without a parameter to all-reduce, which is the case of a
    matrix factorization whose every table is sharded.
    """

    strategy_name = "ddp_torchrec"

    def _setup_model(self, model: nn.Module) -> nn.Module:
        ignored = set(getattr(model, "_ddp_params_and_buffers_to_ignore", ()))
        if not any(p.requires_grad and n not in ignored for n, p in model.named_parameters()):
            return model
        return super()._setup_model(model)

    @classmethod
    def register_strategies(cls, strategy_registry) -> None:
        strategy_registry.register(cls.strategy_name, cls, description="DDP that leaves TorchRec shards alone")


if TorchRecDDPStrategy.strategy_name not in StrategyRegistry:
    TorchRecDDPStrategy.register_strategies(StrategyRegistry)
