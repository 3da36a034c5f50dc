"""Who trains on which rows when one run spans several processes, and numpy collectives.

Data parallel (`--trainer.strategy ddp --trainer.devices N`): every rank builds the same data and
the same model; the DataModule hands rank r its own share of each epoch (`RankShare`) and DDP
averages the gradients. In a single process every helper here is the identity.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from recsys.errors import UserInputError


# --- who am I -----------------------------------------------------------------------------------
def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class RankShare:
    """Which part of an epoch's rows rank `rank` of `world` trains on.

    Global batch b of an epoch is rows order[b*W*B:(b+1)*W*B] of the epoch's permutation, the
    batch a single process would take with batch size W*B; rank r takes its r-th slice of B
    rows. The last global batch is split evenly (its n mod W leftover rows, or all of it when it
    holds fewer than W rows, wait for another epoch's permutation), so every rank takes the same
    number of steps with equally many rows, and DDP's gradient average is the gradient of the
    mean over the global batch (for a loss that is a mean over rows).
    """

    def __init__(self, n_rows: int, batch_size: int, rank: int = 0, world: int = 1):
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside a world of {world}")
        if n_rows < world:
            raise UserInputError(f"{n_rows} training rows cannot be shared among {world} processes")
        self.n_rows, self.batch_size, self.rank, self.world = n_rows, batch_size, rank, world
        width = batch_size * world
        tail = n_rows % width
        self.n_batches = n_rows // width + (tail >= world)
        self.dropped_per_epoch = tail % world if tail >= world else tail

    def __len__(self) -> int:
        return self.n_batches

    def rows(self, order: np.ndarray, batch: int) -> np.ndarray:
        """Rank's rows of global batch `batch`, as positions into the permutation `order`."""
        width = self.batch_size * self.world
        start = batch * width
        size = min(width, self.n_rows - start) // self.world if batch == self.n_batches - 1 else self.batch_size
        first = start + self.rank * size
        return order[first:first + size]

    def seed_index(self, batch: int) -> int:
        """A per-(rank, batch) stream index; equal to `batch` in a single process."""
        return batch * self.world + self.rank


def trainer_rank_and_world(trainer) -> tuple[int, int]:
    """(global rank, world size) a Lightning trainer runs with; (0, 1) without a trainer."""
    if trainer is None:
        return 0, 1
    return int(trainer.global_rank), int(trainer.world_size)


# --- collectives on numpy arrays ------------------------------------------------------------------
def all_gather_rows(array: np.ndarray) -> list[np.ndarray]:
    """Every rank's `array` (same trailing shape and dtype, any number of rows), in rank order."""
    _, world = rank_and_world()
    if world == 1:
        return [array]
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    counts = [torch.zeros(1, dtype=torch.int64) for _ in range(world)]
    dist.all_gather(counts, torch.tensor([len(array)], dtype=torch.int64))
    longest = int(max(c.item() for c in counts))
    padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype)
    padded[:len(tensor)] = tensor
    gathered = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    return [g[:int(c.item())].numpy() for g, c in zip(gathered, counts)]
