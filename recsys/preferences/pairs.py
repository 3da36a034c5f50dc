"""Chosen / rejected items for preference optimization, and training queries that pair dislikes with items.

Everything comes from the data itself, on training examples only (a leave-last-out split's training
positions; a pair never uses a validation or test item). Per example (user, step j, target t):

- `positive`: the matched preference of step j (`recsys.preferences.axes.matched_preference`);
  chosen t, rejected `n_negatives` random items the user has not seen before step j (for sequences
  without preferences, such as the Amazon files, the same pair with no preference: TIGER's S-DPO);
- `positive_twin` / `negative_twin`: when the user's review of t has a negative aspect sentence,
  the extractor's negative preference of step j + 1 closest to t ("Avoid heavy tents", it has read
  that review) and its positive twin ("Find heavy tents"). Under the positive twin: chosen t,
  rejected random items. Under the negative twin: rejected t and the items the dislike describes
  best (closest to its sentence), chosen the user's next item j + 1 (a training position, else
  no pair) - what the user went on to take;
- `low_rated`: the user's low-rated reviewed items (rating <= 2, on training positions) rejected
  against a well-rated target (rating >= 4) under the matched preference.

`negative_training_queries` gives supervised training the same twins as extra examples: (history j,
"Find X") -> t and (history j, "Avoid X") -> item j + 1, so supervised training also sees a dislike
paired with its item.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from recsys.models.generative_data import Examples
from recsys.preferences.axes import SentenceTable, matched_preference, negative_about
from recsys.preferences.extraction import PreferenceTimeline

log = logging.getLogger(__name__)

KINDS = ("positive", "positive_twin", "negative_twin", "low_rated")


@dataclass
class PreferencePairs:
    """One row per query: its history and preference sentence ids, a chosen item and rejected items."""

    kind: np.ndarray  # (N,) index into KINDS
    user: np.ndarray
    step: np.ndarray
    history: np.ndarray  # (N, H), -1 padded on the left
    preferences: list[np.ndarray]
    chosen: np.ndarray  # (N,)
    rejected: np.ndarray  # (N, R), -1 padded

    def __len__(self) -> int:
        return len(self.chosen)

    def subset(self, rows) -> PreferencePairs:
        rows = np.asarray(rows, dtype=np.int64)
        return PreferencePairs(self.kind[rows], self.user[rows], self.step[rows], self.history[rows],
                               [self.preferences[r] for r in rows.tolist()], self.chosen[rows], self.rejected[rows])

    def counts(self) -> dict[str, int]:
        return {name: int((self.kind == k).sum()) for k, name in enumerate(KINDS)}


def _twin_rows(sequences: Sequence[np.ndarray], examples: Examples, timeline: PreferenceTimeline,
               table: SentenceTable, item_embeddings: np.ndarray, review_negative: set[tuple[int, int]]):
    """(row, negative sentence, next training item or -1) for examples whose target drew a negative review."""
    for row, (user, step, target) in enumerate(zip(examples.user.tolist(), examples.step.tolist(),
                                                   examples.target.tolist())):
        if (user, target) not in review_negative:
            continue
        negative = negative_about(timeline, table, item_embeddings, user, step + 1, target)
        if negative < 0:
            continue
        sequence = sequences[user]
        # Training positions end at len - 3 (the last two are the validation and test targets).
        following = int(sequence[step + 1]) if step + 1 <= len(sequence) - 3 else -1
        if following == target:
            following = -1
        yield row, negative, following


def negative_training_queries(sequences: Sequence[np.ndarray], examples: Examples, timeline: PreferenceTimeline,
                              table: SentenceTable, item_embeddings: np.ndarray,
                              review_negative: set[tuple[int, int]]) -> tuple[Examples, list[np.ndarray]]:
    """Extra supervised examples (see the module doc) and their preference ids."""
    rows, targets, preferences = [], [], []
    for row, negative, following in _twin_rows(sequences, examples, timeline, table, item_embeddings,
                                               review_negative):
        rows.append(row)
        targets.append(int(examples.target[row]))
        preferences.append(np.array([table.inverted[negative]], dtype=np.int64))
        if following >= 0:
            rows.append(row)
            targets.append(following)
            preferences.append(np.array([negative], dtype=np.int64))
    rows_a = np.asarray(rows, dtype=np.int64)
    extra = Examples(examples.user[rows_a], examples.step[rows_a], examples.history[rows_a],
                     np.asarray(targets, dtype=np.int64))
    log.info("negative training queries: %d extra examples (%d with a dislike)", len(extra),
             sum(bool(table.negative[p[0]]) for p in preferences))
    return extra, preferences


def build_pairs(sequences: Sequence[np.ndarray], examples: Examples, timeline: PreferenceTimeline | None,
                table: SentenceTable | None, item_embeddings: np.ndarray | None, review_negative: set[tuple[int, int]],
                ratings: dict[tuple[int, int], float] | None = None, n_negatives: int = 4, seed: int = 0,
                kinds: Sequence[str] = KINDS, n_items: int | None = None) -> PreferencePairs:
    """Pairs of every kind in `kinds` from training examples (see the module doc).

    Sequences without preferences (timeline None, e.g. the Amazon files) give only `positive` pairs, with no
    preference: the next item chosen over random items the user has not seen, as S-DPO samples them;
    `n_items` is then the catalog size (otherwise it is the number of item embeddings)."""
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or n_negatives < 1:
        raise ValueError(f"pair kinds must be among {KINDS} and n_negatives >= 1, got {list(kinds)}, {n_negatives}")
    if timeline is None and set(kinds) != {"positive"}:
        raise ValueError(f"without preferences only 'positive' pairs can be built, got {list(kinds)}")
    rng = np.random.default_rng([seed, 43])
    n_items = len(item_embeddings) if n_items is None else n_items
    ratings = ratings or {}
    out: dict[str, list] = {key: [] for key in ("kind", "row", "prefs", "chosen", "rejected")}

    def add(kind: str, row: int, prefs: list[int], chosen: int, rejected: list[int]) -> None:
        out["kind"].append(KINDS.index(kind))
        out["row"].append(row)
        out["prefs"].append(np.asarray(prefs, dtype=np.int64))
        out["chosen"].append(chosen)
        out["rejected"].append(rejected[:n_negatives] + [-1] * (n_negatives - len(rejected[:n_negatives])))

    def random_items(user: int, step: int, avoid: set[int]) -> list[int]:
        seen = set(sequences[user][:step].tolist()) | avoid
        picks = [int(i) for i in rng.permutation(n_items)[:n_negatives + len(seen)] if int(i) not in seen]
        return picks[:n_negatives]

    for row, (user, step, target) in enumerate(zip(examples.user.tolist(), examples.step.tolist(),
                                                   examples.target.tolist())):
        matched = -1 if timeline is None else matched_preference(timeline.at(user, step), target, table,
                                                                 item_embeddings)
        prefs = [matched] if matched >= 0 else []
        if "positive" in kinds:
            add("positive", row, prefs, target, random_items(user, step, {target}))
        if "low_rated" in kinds and ratings.get((user, target), 0.0) >= 4:
            train_part = sequences[user][:max(len(sequences[user]) - 2, 0)]
            low = [int(i) for i in dict.fromkeys(train_part.tolist()) if ratings.get((user, int(i)), 5.0) <= 2]
            if low:
                add("low_rated", row, prefs, target, low)
    if {"positive_twin", "negative_twin"} & set(kinds):
        for row, negative, following in _twin_rows(sequences, examples, timeline, table, item_embeddings,
                                                   review_negative):
            user, step, target = int(examples.user[row]), int(examples.step[row]), int(examples.target[row])
            if "positive_twin" in kinds:
                add("positive_twin", row, [int(table.inverted[negative])], target, random_items(user, step, {target}))
            if "negative_twin" in kinds and following >= 0:
                seen = set(sequences[user][:step].tolist()) | {following, target}
                described = np.argsort(-(item_embeddings @ table.embeddings[negative]), kind="stable")
                alike = [int(i) for i in described[:n_negatives + len(seen)] if int(i) not in seen]
                add("negative_twin", row, [negative], following, [target, *alike])
    rows = np.asarray(out["row"], dtype=np.int64)
    pairs = PreferencePairs(np.asarray(out["kind"], dtype=np.int64), examples.user[rows], examples.step[rows],
                            examples.history[rows], out["prefs"], np.asarray(out["chosen"], dtype=np.int64),
                            np.asarray(out["rejected"], dtype=np.int64).reshape(len(rows), n_negatives))
    log.info("preference pairs: %s", pairs.counts())
    return pairs


class PairDataset(Dataset):
    """`PreferencePairs` as the batches `PreferenceOptimization` reads (preferences gathered from the table)."""

    def __init__(self, pairs: PreferencePairs, table: SentenceTable | None, width: int, polarity: bool = False):
        from recsys.models.generative_data import pad_ids

        self.pairs = pairs
        self.ids = torch.as_tensor(pad_ids(pairs.preferences, width)) if table is not None else None
        self.embeddings = torch.as_tensor(table.embeddings) if table is not None else None
        self.negative = torch.as_tensor(table.negative) if table is not None and polarity else None

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rejected = torch.as_tensor(self.pairs.rejected[index])
        item = {"history": torch.as_tensor(self.pairs.history[index]),
                "chosen": torch.as_tensor(self.pairs.chosen[index]), "rejected": rejected,
                "rejected_mask": rejected >= 0}
        if self.ids is not None:
            ids = self.ids[index]
            mask = ids >= 0
            item["prefs"] = self.embeddings[ids.clamp_min(0)] * mask[:, None]
            item["pref_mask"] = mask
            if self.negative is not None:
                item["pref_negative"] = self.negative[ids.clamp_min(0)] & mask
        return item
