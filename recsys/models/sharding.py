"""Model parallel: TorchRec embedding tables sharded across the processes of a run.

With `model.sharding: table_wise | column_wise` the TorchRec `EmbeddingBagCollection`s
of a model are wrapped in `DistributedModelParallel` (`shard_collections`). TorchRec's planner
offers only the *fused* kernel for sharded tables on CPU, which binds an optimizer into the
backward pass; we write the plan by hand with the *dense* kernel instead, so the shards stay
ordinary parameters that the LightningModule's own optimizer steps, exactly as without sharding.
TorchRec already divides the shards' gradients by the world size, matching DDP's averaging of the
dense parameters. DDP must leave the shards alone (`ignore_in_ddp`; a model whose every parameter
is sharded needs `recsys.training.distributed.TorchRecDDPStrategy`).
Row-wise sharding needs reduce-scatter, which gloo (the CPU backend) lacks; it runs on nccl.

Checkpoints of a sharded model hold plain full tensors under the unsharded names
(`plain_state_dict`), so they load, test and export in a single process; `load_plain_tables`
puts such tensors back into the shards. Who trains on which rows is `recsys.data.ranks`;
evaluation across processes is `recsys.evaluation.across_ranks`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from recsys.data.ranks import rank_and_world
from recsys.errors import UserInputError

log = logging.getLogger(__name__)

Sharding = Literal["none", "table_wise", "column_wise", "row_wise"]
SHARDINGS = ("none", "table_wise", "column_wise", "row_wise")


# --- table updates of the compiled engine --------------------------------------------------------
def merge_row_updates(weight: torch.Tensor, start: torch.Tensor) -> None:
    """Merge each rank's in-place updates of a table since `start` into one table, on every rank.

    A row changed on one rank takes that rank's change; a row changed on several ranks takes the
    mean of their changes (model averaging). Used by the compiled engine, whose per-sample SGD
    runs outside autograd: with users partitioned by rank, user rows are exact and shared item
    rows are averaged, which stays stable where summing would overshoot rows that converge
    within an epoch on every rank.
    """
    delta = weight.detach() - start
    touched = (delta != 0).any(dim=1).to(delta.dtype)
    dist.all_reduce(delta)
    dist.all_reduce(touched)
    weight.detach().copy_(start + delta / touched.clamp_min(1.0).unsqueeze(1))


# --- sharding ----------------------------------------------------------------------------------------
def check_sharding(sharding: str) -> str:
    if sharding not in SHARDINGS:
        raise UserInputError(f"model.sharding must be one of {', '.join(SHARDINGS)}, got {sharding!r}")
    return sharding


@contextlib.contextmanager
def _root_logging_kept() -> Iterator[None]:
    """fbgemm_gpu calls logging.basicConfig when TorchRec's distributed modules first load; undo it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
        root.setLevel(level)


def _dense_sharder():
    from torchrec.distributed.embedding_types import EmbeddingComputeKernel
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder

    class DenseKernelSharder(EmbeddingBagCollectionSharder):
        """Offers the dense kernel for sharded tables (TorchRec offers only the fused one)."""

        def compute_kernels(self, sharding_type: str, compute_device_type: str) -> list[str]:
            return [EmbeddingComputeKernel.DENSE.value]

    return DenseKernelSharder()


def shard_collections(collections: list[nn.Module], sharding: str) -> list[nn.Module]:
    """Each `EmbeddingBagCollection` wrapped in `DistributedModelParallel` with a hand-written plan.

    table_wise: every table whole on one rank, tables placed largest first on the least loaded
    rank (over all the given collections); column_wise: every table's columns split over the
    ranks as evenly as its width allows. The current weights are copied into the shards
    (TorchRec re-initializes them). Must run on every rank, in the same order.
    """
    with _root_logging_kept():
        wrapped = _shard_collections(collections, sharding)
    rank, world = rank_and_world()
    if rank == 0:
        log.info("sharded %d embedding tables %s over %d processes", sum(len(c.embedding_bag_configs()) for c in collections),
                 sharding, world)
    return wrapped


def _shard_collections(collections: list[nn.Module], sharding: str) -> list[nn.Module]:
    from torchrec.distributed.embedding_types import EmbeddingComputeKernel
    from torchrec.distributed.model_parallel import DistributedModelParallel
    from torchrec.distributed.sharding_plan import column_wise, construct_module_sharding_plan, table_wise
    from torchrec.distributed.types import ShardingEnv, ShardingPlan

    check_sharding(sharding)
    _, world = rank_and_world()
    if world < 2:
        raise UserInputError(f"model.sharding {sharding!r} splits tables across processes: run with "
                             "--trainer.strategy ddp --trainer.devices N (N >= 2) or --trainer.num_nodes")
    backend = dist.get_backend()
    if sharding == "row_wise" and backend == "gloo":
        raise UserInputError("model.sharding 'row_wise' needs the reduce-scatter collective, which the gloo backend "
                             "(CPU) lacks; use table_wise or column_wise on CPU, or row_wise on GPUs (nccl)")
    device = torch.device("cpu") if backend == "gloo" else torch.device("cuda", torch.cuda.current_device())
    kernel = EmbeddingComputeKernel.DENSE.value
    configs = [[(c.name, c.num_embeddings * c.embedding_dim) for c in ebc.embedding_bag_configs()]
               for ebc in collections]
    placement: dict[str, int] = {}
    load = [0] * world
    for name, size in sorted((entry for group in configs for entry in group), key=lambda e: (-e[1], e[0])):
        placement[name] = int(np.argmin(load))
        load[placement[name]] += size
    def dims(ebc: nn.Module) -> list[tuple[str, int]]:
        return [(c.name, c.embedding_dim) for c in ebc.embedding_bag_configs()]

    sharder = _dense_sharder()
    env = ShardingEnv.from_process_group(dist.group.WORLD)
    wrapped = []
    for ebc, group in zip(collections, configs):
        plain = {key: value.detach().clone() for key, value in ebc.state_dict().items()}
        if sharding == "table_wise":
            per_table = {name: table_wise(rank=placement[name], compute_kernel=kernel) for name, _ in group}
        elif sharding == "column_wise":
            per_table = {name: column_wise(size_per_rank=_column_split(dim, world), compute_kernel=kernel)
                         for name, dim in dims(ebc)}
        else:
            from torchrec.distributed.sharding_plan import row_wise

            per_table = {name: row_wise(compute_kernel=kernel) for name, _ in group}
        plan = construct_module_sharding_plan(ebc, per_table, sharder=sharder, local_size=world, world_size=world,
                                              device_type=device.type)
        module = DistributedModelParallel(ebc, env=env, device=device, plan=ShardingPlan({"": plan}),
                                          sharders=[sharder], init_data_parallel=False)
        module.load_state_dict(plain)
        wrapped.append(module)
    return wrapped


def _column_split(dim: int, world: int) -> list[int]:
    """Columns per rank, as even as the width allows (a table narrower than the world uses fewer ranks)."""
    return [len(part) for part in np.array_split(np.arange(dim), min(dim, world))]


def _sharded_children(module: nn.Module) -> dict[str, nn.Module]:
    loaded = sys.modules.get("torchrec.distributed.model_parallel")
    if loaded is None:  # nothing was ever sharded in this process (and importing it is slow)
        return {}
    DistributedModelParallel = loaded.DistributedModelParallel
    found = {}
    for name, child in module.named_modules():
        if isinstance(child, DistributedModelParallel) and not any(name.startswith(p + ".") for p in found):
            found[name] = child
    return found


def is_sharded(module: nn.Module) -> bool:
    return bool(_sharded_children(module))


def ignore_in_ddp(module: nn.Module) -> None:
    """Tell DDP not to all-reduce or broadcast the shards (each rank holds different ones)."""
    from torch.nn.parallel import DistributedDataParallel

    prefixes = tuple(name + "." for name in _sharded_children(module))
    names = [n for n, _ in module.named_parameters() if n.startswith(prefixes)]
    names += [n for n, _ in module.named_buffers() if n.startswith(prefixes)]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, names)


def _gather_full(value) -> torch.Tensor:
    """A ShardedTensor's full value, on every rank (collective)."""
    full = torch.zeros(tuple(value.size()), dtype=value.dtype) if dist.get_rank() == 0 else None
    value.gather(dst=0, out=full)
    if full is None:
        full = torch.empty(tuple(value.size()), dtype=value.dtype)
    dist.broadcast(full, src=0)
    return full


def _walk_state(module: nn.Module, sharded: dict[str, nn.Module], table: Callable[[Any], Any]) -> dict[str, Any]:
    """The entries of `module.state_dict()`, with `table(value)` for each entry of a sharded wrapper.

    Walks the modules itself: `DistributedModelParallel.state_dict` drops the entries that a
    parent's `state_dict()` collected before reaching it.
    """
    state: dict[str, Any] = {}

    def visit(current: nn.Module, path: str) -> None:
        prefix = path + "." if path else ""
        if path in sharded:
            for key, value in sorted(sharded[path].state_dict().items()):
                state[prefix + key] = table(value)
            return
        current._save_to_state_dict(state, prefix, keep_vars=False)  # own parameters and persistent buffers
        for name, child in current._modules.items():
            if child is not None:
                visit(child, prefix + name)

    with warnings.catch_warnings():  # TorchRec's state dicts still hold ShardedTensors: nothing to act on
        warnings.filterwarnings("ignore", message=".*deprecating ShardedTensor.*")
        visit(module, "")
    return state


def plain_state_dict(module: nn.Module) -> dict[str, Any]:
    """`module.state_dict()` with every sharded table as one plain tensor under its unsharded name.

    Collective when the module is sharded (every rank must call it, in the same order).
    """
    def gather(value):
        return _gather_full(value) if hasattr(value, "local_shards") else value

    return _walk_state(module, _sharded_children(module), gather)


def plain_state_shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    """Names and full shapes of `plain_state_dict(module)`, without any collective."""
    state = _walk_state(module, _sharded_children(module), lambda value: tuple(value.size()))
    return {key: value if isinstance(value, tuple) else tuple(value.shape) for key, value in state.items()}


def load_plain_tables(module: nn.Module, state: dict[str, Any]) -> None:
    """Copy plain full tensors of `state` into the shards of `module`; removes those keys from `state`."""
    for path, wrapper in _sharded_children(module).items():
        prefix = path + "."
        tables = {key[len(prefix):]: state.pop(key) for key in list(state) if key.startswith(prefix)}
        wrapper.load_state_dict(tables)
