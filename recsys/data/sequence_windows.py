"""Interactions as time-ordered item sequences, and the fixed-length windows sequential models read.

A user's sequence is their items sorted by timestamp (file order breaks ties, so the S3-Rec files,
whose timestamps are positions, keep their order). Item ids are shifted by one in windows: 0 is
padding, item i is token i + 1, and windows are padded on the left (the most recent item last),
as in SASRec (Kang & McAuley, 2018).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from recsys.data.interactions import InteractionData

PAD = 0


def user_sequences(parts: Sequence[InteractionData], n_users: int) -> list[np.ndarray]:
    """Each user's items over `parts` (e.g. train, then valid), sorted by timestamp; parts in the given order
    break ties, then rows within a part."""
    users = np.concatenate([p.user for p in parts]) if parts else np.zeros(0, np.int64)
    items = np.concatenate([p.item for p in parts]) if parts else np.zeros(0, np.int64)
    times = np.concatenate([p.timestamp for p in parts]) if parts else np.zeros(0, np.int64)
    order = np.lexsort((np.arange(len(users)), times, users))
    bounds = np.searchsorted(users[order], np.arange(n_users + 1))
    sorted_items = items[order]
    return [sorted_items[bounds[u]:bounds[u + 1]] for u in range(n_users)]


def last_windows(sequences: Sequence[np.ndarray], length: int) -> np.ndarray:
    """(n_users, length) int64 tokens of each sequence's last `length` items, left-padded with 0."""
    out = np.zeros((len(sequences), length), dtype=np.int64)
    for row, items in enumerate(sequences):
        tail = items[-length:]
        if len(tail):
            out[row, length - len(tail):] = tail + 1
    return out


class NextItemWindows(Dataset):
    """One training row per user with at least two items: input tokens and the next-item targets at every position.

    Input = the sequence without its last item, target = the sequence without its first (both the last
    `length` positions, left-padded; target 0 = no loss there).
    """

    def __init__(self, sequences: Sequence[np.ndarray], length: int):
        kept = [s for s in sequences if len(s) >= 2]
        self.inputs = last_windows([s[:-1] for s in kept], length)
        self.targets = last_windows([s[1:] for s in kept], length)

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input": torch.from_numpy(self.inputs[index]), "target": torch.from_numpy(self.targets[index])}


def trim_padding(batch: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Collate windows, dropping the leading columns that are padding in every row (most sequences are short)."""
    inputs = torch.stack([row["input"] for row in batch])
    targets = torch.stack([row["target"] for row in batch])
    used = (targets > 0).any(dim=0)
    first = int(used.to(torch.int8).argmax()) if bool(used.any()) else inputs.shape[1] - 1
    return {"input": inputs[:, first:], "target": targets[:, first:]}
