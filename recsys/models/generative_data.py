"""Next-item examples from sequences, split leave-one-out, for the generative retriever.

Per user sequence (time order): the last item is the test target, the second-to-last the
validation target, and every earlier position j >= 1 a training target with the items before it
as history (the `max_history` most recent). A sequence of two gives a test target only; of one,
nothing. On data without repeated items this is `recsys.data.splits.leave_one_out` read as
positions (the tests check it); on sequences with repeats it is the paper's protocol (last
position), which the pair-based split deliberately is not.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Examples:
    """Queries (user, step, history) with their target item; `step` = position of the target."""

    user: np.ndarray  # (N,) int64
    step: np.ndarray  # (N,) int64
    history: np.ndarray  # (N, H) int64, -1 padded on the left
    target: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.target)

    def subset(self, rows) -> Examples:
        return Examples(self.user[rows], self.step[rows], self.history[rows], self.target[rows])


def histories(sequences: Sequence[np.ndarray], users: np.ndarray, steps: np.ndarray, max_history: int) -> np.ndarray:
    """(N, max_history) items before position steps[n] of users[n]'s sequence, -1 padded on the left."""
    out = np.full((len(users), max_history), -1, dtype=np.int64)
    for row, (user, step) in enumerate(zip(users.tolist(), steps.tolist())):
        seen = np.asarray(sequences[user][max(0, step - max_history):step], dtype=np.int64)
        if len(seen):
            out[row, max_history - len(seen):] = seen
    return out


def examples_at(sequences: Sequence[np.ndarray], users, steps, max_history: int) -> Examples:
    users, steps = np.asarray(users, dtype=np.int64), np.asarray(steps, dtype=np.int64)
    targets = np.array([sequences[u][s] for u, s in zip(users.tolist(), steps.tolist())], dtype=np.int64)
    return Examples(users, steps, histories(sequences, users, steps, max_history), targets)


@dataclass(frozen=True)
class SequenceSplit:
    train: Examples
    valid: Examples
    test: Examples

    def describe(self) -> str:
        return f"train {len(self.train):,} / valid {len(self.valid):,} / test {len(self.test):,} next-item examples"


def leave_last_out(sequences: Sequence[np.ndarray], max_history: int = 20) -> SequenceSplit:
    """Training, validation and test examples of every user (see the module doc)."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    users = np.arange(len(sequences), dtype=np.int64)
    test_users = users[lengths >= 2]
    valid_users = users[lengths >= 3]
    train_counts = np.maximum(lengths - 3, 0)  # positions 1 .. n-3
    train_users = np.repeat(users, train_counts)
    train_steps = np.concatenate([np.arange(1, n - 2) for n in lengths.tolist() if n > 3] or [np.zeros(0, np.int64)])
    short = int((lengths < 2).sum())
    if short:
        log.info("leave-last-out: %d users with fewer than 2 items give no example", short)
    split = SequenceSplit(train=examples_at(sequences, train_users, train_steps, max_history),
                          valid=examples_at(sequences, valid_users, lengths[valid_users] - 2, max_history),
                          test=examples_at(sequences, test_users, lengths[test_users] - 1, max_history))
    log.info("leave-last-out: %s", split.describe())
    return split


class GenerativeDataset(Dataset):
    """Examples plus, optionally, preference sentence ids per example (gathered from an embedding table and,
    for a polarity-aware model, a per-sentence dislike flag)."""

    def __init__(self, examples: Examples, preference_ids: np.ndarray | None = None,
                 preference_table: np.ndarray | None = None, negative: np.ndarray | None = None):
        self.examples = examples
        if preference_ids is not None and len(preference_ids) != len(examples):
            raise ValueError(f"{len(preference_ids)} preference rows for {len(examples)} examples")
        self.preference_ids = preference_ids
        self.table = None if preference_table is None else torch.as_tensor(np.asarray(preference_table, np.float32))
        self.negative = None if negative is None else torch.as_tensor(np.asarray(negative, dtype=bool))

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = {"history": torch.as_tensor(self.examples.history[index]),
                "target": torch.as_tensor(self.examples.target[index])}
        if self.preference_ids is not None:
            ids = torch.as_tensor(self.preference_ids[index])
            mask = ids >= 0
            item["prefs"] = self.table[ids.clamp_min(0)] * mask[:, None]
            item["pref_mask"] = mask
            if self.negative is not None:
                item["pref_negative"] = self.negative[ids.clamp_min(0)] & mask
        return item


def preference_arrays(ids: Sequence[np.ndarray], table: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, width, dim) embeddings and (N, width) mask of ragged sentence-id lists (extra ids are dropped)."""
    dim = table.shape[1]
    prefs = np.zeros((len(ids), width, dim), dtype=np.float32)
    mask = np.zeros((len(ids), width), dtype=bool)
    for row, sentence_ids in enumerate(ids):
        chosen = np.asarray(sentence_ids, dtype=np.int64)[:width]
        prefs[row, :len(chosen)] = table[chosen]
        mask[row, :len(chosen)] = True
    return prefs, mask


def preference_negative(ids: Sequence[np.ndarray], negative: np.ndarray, width: int) -> np.ndarray:
    """(N, width) dislike flags of ragged sentence-id lists, aligned with `preference_arrays` (False = padding)."""
    out = np.zeros((len(ids), width), dtype=bool)
    for row, sentence_ids in enumerate(ids):
        chosen = np.asarray(sentence_ids, dtype=np.int64)[:width]
        out[row, :len(chosen)] = negative[chosen]
    return out


def pad_ids(ids: Sequence[np.ndarray], width: int) -> np.ndarray:
    """Ragged sentence-id lists as an (N, width) matrix padded with -1."""
    out = np.full((len(ids), width), -1, dtype=np.int64)
    for row, sentence_ids in enumerate(ids):
        chosen = np.asarray(sentence_ids, dtype=np.int64)[:width]
        out[row, :len(chosen)] = chosen
    return out
