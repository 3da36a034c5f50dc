"""The five axes of preference discerning (Paischer et al., 2024) as sets of generation queries.

A query is (history, preferences, target, items to exclude). On the test targets of a
leave-last-out split, with preferences from an extractor's timeline (step j = after j items):

1. `recommendation`: the user's history and the one preference of step n-1 that matches the
   held-out item best (cosine of sentence embeddings; positive preferences first, inverted
   negatives when there are none) -> the held-out item;
2. `fine_steering`: for each distinct test item s, the test item t most similar to it; a
   preference matched to s (its second-closest positive preference of the whole pool) with the
   history of t's user must retrieve s, and one matched to t (third-closest) with s's user's
   history must retrieve t;
3. `coarse_steering`: the same with the least similar test item;
4. `sentiment` (two sets, `sentiment_positive` / `sentiment_negative`): for users whose test
   item drew a negative review sentence, the negative preference of step n (which has read that
   review) closest to the item, and its positive inversion ("Avoid heavy tents" -> "Find heavy
   tents"), each with the user's history: the positive one should bring the item into the top
   K, the negative one keep it out;
5. `consolidation`: all preferences of step n-1 (up to five, only some relevant) and the history.

Training examples get the matched preference of their step (`training_preferences`), optionally
with the step's other preferences in random order ("mixed"), so the model learns to find the
relevant one among several, and a share of them none ("dropout"), so it keeps learning from the
history alone rather than leaning on a preference that names the answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from recsys.models.generative_data import Examples, histories
from recsys.preferences.extraction import PreferenceTimeline, invert, is_negative

log = logging.getLogger(__name__)

AXES = ("recommendation", "fine_steering", "coarse_steering", "sentiment", "consolidation")


@dataclass
class SentenceTable:
    """Preference sentences (the timeline's, plus the positive inversions of its negatives) and their embeddings."""

    sentences: list[str]
    embeddings: np.ndarray  # (n, dim), unit length
    negative: np.ndarray  # (n,) bool
    inverted: np.ndarray  # (n,) int64: id of the inversion of a negative sentence, -1 otherwise

    @classmethod
    def build(cls, timeline: PreferenceTimeline, encode) -> SentenceTable:
        sentences = list(timeline.sentences)
        index = {s: i for i, s in enumerate(sentences)}
        negative = [is_negative(s) for s in sentences]
        inverted = []
        for sentence, neg in zip(list(sentences), negative):
            twin = invert(sentence) if neg else None
            if twin is None:
                inverted.append(-1)
                continue
            if twin not in index:
                index[twin] = len(sentences)
                sentences.append(twin)
            inverted.append(index[twin])
        inverted += [-1] * (len(sentences) - len(inverted))
        negative = np.array([is_negative(s) for s in sentences], dtype=bool)
        embeddings = np.asarray(encode(sentences), dtype=np.float32)
        return cls(sentences, embeddings, negative, np.asarray(inverted, dtype=np.int64))


@dataclass
class QuerySet:
    """Generation queries of one axis; `preferences` holds sentence ids per query (possibly none)."""

    name: str
    user: np.ndarray
    history: np.ndarray
    preferences: list[np.ndarray]
    target: np.ndarray
    exclude: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.target)

    def head(self, n: int | None) -> QuerySet:
        if n is None or n >= len(self):
            return self
        return QuerySet(self.name, self.user[:n], self.history[:n], self.preferences[:n], self.target[:n],
                        self.exclude[:n])


def matched_preference(candidates: np.ndarray, item: int, table: SentenceTable, item_embeddings: np.ndarray) -> int:
    """The candidate sentence closest to the item: positives first, else inversions of negatives; -1 if none."""
    candidates = np.asarray(candidates, dtype=np.int64)
    pool = candidates[~table.negative[candidates]]
    if not len(pool):
        pool = table.inverted[candidates]
        pool = pool[pool >= 0]
    if not len(pool):
        return -1
    similarity = table.embeddings[pool] @ item_embeddings[item]
    return int(pool[int(np.argmax(similarity))])


def negative_about(timeline: PreferenceTimeline, table: SentenceTable, item_embeddings: np.ndarray, user: int,
                   step: int, item: int) -> int:
    """The negative preference of (user, step) closest to the item among those with a positive twin; -1 if none."""
    candidates = timeline.at(user, step)
    candidates = candidates[table.negative[candidates] & (table.inverted[candidates] >= 0)]
    if not len(candidates):
        return -1
    return int(candidates[np.argmax(table.embeddings[candidates] @ item_embeddings[item])])


def training_preferences(examples: Examples, timeline: PreferenceTimeline, table: SentenceTable,
                         item_embeddings: np.ndarray, context: str = "mixed", dropout: float = 0.0,
                         seed: int = 0) -> list[np.ndarray]:
    """Per example, the matched preference and, with context "mixed", a random subset of the rest (in random
    order); with probability `dropout` none at all, so the model also learns to predict from history alone."""
    if context not in ("matched", "mixed"):
        raise ValueError(f"preference context must be 'matched' or 'mixed', got {context!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"preference dropout must be in [0, 1), got {dropout}")
    rng = np.random.default_rng([seed, 17])
    dropped = rng.random(len(examples)) < dropout
    out = []
    for row, (user, step, target) in enumerate(zip(examples.user.tolist(), examples.step.tolist(),
                                                   examples.target.tolist())):
        candidates = timeline.at(user, step)
        match = matched_preference(candidates, target, table, item_embeddings)
        if match < 0 or dropped[row]:
            out.append(np.zeros(0, dtype=np.int64))
            continue
        chosen = [match]
        if context == "mixed":
            others = candidates[candidates != match]
            if len(others):
                chosen += rng.permutation(others)[:rng.integers(0, len(others) + 1)].tolist()
            chosen = rng.permutation(chosen).tolist()
        out.append(np.asarray(chosen, dtype=np.int64))
    return out


def _seen_before(sequences, users: np.ndarray, steps: np.ndarray) -> list[np.ndarray]:
    return [np.asarray(sequences[u][:s], dtype=np.int64) for u, s in zip(users.tolist(), steps.tolist())]


def build_axes(sequences, test: Examples, timeline: PreferenceTimeline, table: SentenceTable,
               item_embeddings: np.ndarray, review_negative: set[tuple[int, int]], max_history: int,
               exclude_seen: bool = True, seed: int = 0) -> dict[str, QuerySet]:
    """Query sets of the five axes (sentiment as `sentiment_positive` and `sentiment_negative`).

    review_negative: (user, item) pairs whose review has a negative aspect sentence.
    """
    rng = np.random.default_rng([seed, 29])
    seen = _seen_before(sequences, test.user, test.step)
    empty = [np.zeros(0, dtype=np.int64)] * len(test)
    exclude = seen if exclude_seen else empty
    axes: dict[str, QuerySet] = {}

    before = [timeline.at(u, s) for u, s in zip(test.user.tolist(), test.step.tolist())]
    matched = [matched_preference(c, t, table, item_embeddings) for c, t in zip(before, test.target.tolist())]
    axes["recommendation"] = QuerySet("recommendation", test.user, test.history,
                                      [np.array([m]) if m >= 0 else np.zeros(0, np.int64) for m in matched],
                                      test.target, exclude)
    axes["consolidation"] = QuerySet("consolidation", test.user, test.history, before, test.target, exclude)

    fine, coarse = _steering(sequences, test, table, item_embeddings, max_history, exclude_seen, rng)
    axes["fine_steering"], axes["coarse_steering"] = fine, coarse

    positive, negative = _sentiment(sequences, test, timeline, table, item_embeddings, review_negative, exclude)
    axes["sentiment_positive"], axes["sentiment_negative"] = positive, negative
    for name, queries in axes.items():
        with_prefs = sum(len(p) > 0 for p in queries.preferences)
        log.info("axis %s: %d queries (%d with preferences)", name, len(queries), with_prefs)
    return axes


def _pool_ranks(table: SentenceTable, item_embeddings: np.ndarray, items: np.ndarray, rank: int) -> np.ndarray:
    """For each item, the positive pool sentence at position `rank` (0 = closest) by cosine similarity."""
    pool = np.flatnonzero(~table.negative)
    similarity = item_embeddings[items] @ table.embeddings[pool].T
    order = np.argsort(-similarity, axis=1, kind="stable")
    return pool[order[:, min(rank, len(pool) - 1)]]


def _steering(sequences, test: Examples, table: SentenceTable, item_embeddings: np.ndarray, max_history: int,
              exclude_seen: bool, rng: np.random.Generator) -> tuple[QuerySet, QuerySet]:
    items, first = np.unique(test.target, return_index=True)
    users_of = {}
    for user, item in zip(test.user.tolist(), test.target.tolist()):
        users_of.setdefault(item, []).append(user)
    step_of = dict(zip(test.user.tolist(), test.step.tolist()))
    similarity = item_embeddings[items] @ item_embeddings[items].T
    np.fill_diagonal(similarity, np.nan)
    source_pref = _pool_ranks(table, item_embeddings, items, 1)
    target_pref = _pool_ranks(table, item_embeddings, items, 2)
    out = []
    for name, pick in (("fine_steering", np.nanargmax), ("coarse_steering", np.nanargmin)):
        rows: list[tuple[int, int, int]] = []  # (preference, user whose history, target item)
        skipped = 0
        if len(items) >= 2:
            partner = pick(similarity, axis=1)
            for s, (item, other) in enumerate(zip(items.tolist(), items[partner].tolist())):
                source_user = test.user[first[s]]
                other_user = int(rng.choice(users_of[other]))
                t = int(np.searchsorted(items, other))
                for pref, user, target in ((source_pref[s], other_user, item), (target_pref[t], int(source_user), other)):
                    if target in set(sequences[user][:step_of[user]]):
                        skipped += 1  # the swapped history already holds the target: it cannot be asked for
                        continue
                    rows.append((int(pref), user, target))
        if skipped:
            log.info("%s: %d pairs skipped because the other user's history holds the target", name, skipped)
        users = np.array([r[1] for r in rows], dtype=np.int64)
        steps = np.array([step_of[u] for u in users.tolist()], dtype=np.int64)
        exclude = _seen_before(sequences, users, steps) if exclude_seen else [np.zeros(0, np.int64)] * len(rows)
        out.append(QuerySet(name, users, histories(sequences, users, steps, max_history),
                            [np.array([r[0]]) for r in rows], np.array([r[2] for r in rows], dtype=np.int64), exclude))
    return out[0], out[1]


def _sentiment(sequences, test: Examples, timeline: PreferenceTimeline, table: SentenceTable,
               item_embeddings: np.ndarray, review_negative: set[tuple[int, int]],
               exclude: list[np.ndarray]) -> tuple[QuerySet, QuerySet]:
    rows, positive, negative = [], [], []
    for row, (user, step, item) in enumerate(zip(test.user.tolist(), test.step.tolist(), test.target.tolist())):
        if (user, item) not in review_negative:
            continue
        chosen = negative_about(timeline, table, item_embeddings, user, step + 1, item)  # has read its review
        if chosen < 0:
            continue
        rows.append(row)
        negative.append(np.array([chosen]))
        positive.append(np.array([table.inverted[chosen]]))
    rows_a = np.asarray(rows, dtype=np.int64)
    sets = []
    for name, prefs in (("sentiment_positive", positive), ("sentiment_negative", negative)):
        sets.append(QuerySet(name, test.user[rows_a], test.history[rows_a], prefs, test.target[rows_a],
                             [exclude[r] for r in rows]))
    return sets[0], sets[1]
