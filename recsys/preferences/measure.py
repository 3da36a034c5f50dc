"""How good are extracted preferences? Judged against the preference world's truth.

A preference sentence is read back into (aspect, pole, polarity) with the world's vocabulary
(`parse_preference`): "Avoid heavy hiking gear" is a dislike of the pole "heavy" of the aspect
"weight", so it says the user prefers the opposite pole. Two numbers per extractor:

- `direction_precision`: of the parsed aspect preferences, the share whose preferred pole is the
  pole the user truly rates higher, measured over the whole catalog with the true utilities
  (mean utility of the items at pole +1 minus at pole -1, as the world's own statements use);
- `stated_recall`: of the preferences the user stated up to the context's time (the world's
  `preferences` table), the share the extractor also produced (same aspect, same direction).

The world's stated preferences themselves reach a direction precision of 1 by construction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from recsys.preferences.extraction import PreferenceTimeline, is_negative


@dataclass(frozen=True)
class ParsedPreference:
    aspect: int  # index into the world's aspect list
    value: int  # the pole the sentence names (+1/-1)
    negative: bool  # a dislike of that pole

    @property
    def direction(self) -> int:
        """The pole the user prefers according to the sentence."""
        return -self.value if self.negative else self.value


@lru_cache(maxsize=4)
def _pole_pattern(n_aspects: int) -> tuple[re.Pattern, dict[str, tuple[int, int]]]:
    from recsys.data.world.lexicon import ASPECTS

    poles = {}
    for index, aspect in enumerate(ASPECTS[:n_aspects]):
        poles[aspect.positive.lower()] = (index, 1)
        poles[aspect.negative.lower()] = (index, -1)
    # Longest first, so "strongly scented" wins over a shorter pole inside it.
    alternatives = "|".join(re.escape(p) for p in sorted(poles, key=len, reverse=True))
    return re.compile(rf"(?<![\w-])({alternatives})(?![\w-])", re.IGNORECASE), poles


def parse_preference(sentence: str, n_aspects: int = 24) -> ParsedPreference | None:
    """The aspect pole a sentence is about and whether it is a dislike; None when it names no pole."""
    pattern, poles = _pole_pattern(n_aspects)
    match = pattern.search(sentence)
    if match is None:
        return None
    aspect, value = poles[match.group(1).lower()]
    return ParsedPreference(aspect=aspect, value=value, negative=is_negative(sentence))


def aspect_contrast(world, users: np.ndarray | None = None) -> np.ndarray:
    """(len(users), n_aspects): mean true utility of items at pole +1 minus at pole -1 (0 if a pole is empty)."""
    users = np.arange(world.n_users) if users is None else np.asarray(users, dtype=np.int64)
    values = world.items.aspect_values.T.astype(np.float64)  # (n_aspects, n_items)
    positive, negative = (values > 0).astype(np.float64), (values < 0).astype(np.float64)
    both = (positive.sum(axis=1) > 0) & (negative.sum(axis=1) > 0)
    weights = positive / np.maximum(positive.sum(axis=1, keepdims=True), 1) \
        - negative / np.maximum(negative.sum(axis=1, keepdims=True), 1)
    # batches() walks `users` in order, so the blocks stack back into place.
    out = np.vstack([utility @ weights.T for _, utility in world.utility.batches(users)]) if len(users) else \
        np.zeros((0, values.shape[0]))
    return np.where(both[None, :], out, 0.0)


def measure_extractor(world, timeline: PreferenceTimeline) -> dict[str, float]:
    """Direction precision against true utilities and recall of stated preferences (see the module doc)."""
    n_aspects = world.config.n_aspects
    parsed = [parse_preference(s, n_aspects) for s in timeline.sentences]
    contrast = aspect_contrast(world)
    stated = world.preferences[world.preferences["kind"] == "aspect"]
    stated_by_user: dict[int, list[tuple[int, int, int]]] = {}
    aspect_index = {a.key: k for k, a in enumerate(world.items.aspects)}
    for user, time, aspect, value, polarity in zip(stated["user"].tolist(), stated["timestamp"].tolist(),
                                                   stated["aspect"].tolist(), stated["value"].tolist(),
                                                   stated["polarity"].tolist()):
        direction = int(value) if polarity == "like" else -int(value)
        stated_by_user.setdefault(int(user), []).append((int(time), aspect_index[aspect], direction))
    times = _step_times(world)

    agree = judged = covered = stated_total = n_parsed = n_total = 0
    for (user, step), ids in timeline.ids.items():
        said = {(p.aspect, p.direction) for i in ids.tolist() if (p := parsed[i]) is not None}
        n_total += len(ids)
        n_parsed += sum(parsed[i] is not None for i in ids.tolist())
        for aspect, direction in said:
            truth = np.sign(contrast[user, aspect])
            if truth != 0:
                judged += 1
                agree += int(truth == direction)
        if step == 0:
            continue
        now = times[user][step - 1]
        for time, aspect, direction in stated_by_user.get(user, ()):
            if time <= now:
                stated_total += 1
                covered += int((aspect, direction) in said)
    counts = timeline.counts()
    return {"contexts": float(len(timeline.ids)), "distinct_sentences": float(len(timeline.sentences)),
            "mean_preferences": float(counts.mean()) if len(counts) else 0.0,
            "parsed_share": n_parsed / max(1, n_total),
            "direction_precision": agree / judged if judged else float("nan"),
            "stated_recall": covered / stated_total if stated_total else float("nan")}


def _step_times(world) -> list[np.ndarray]:
    """Per user, the timestamps of the observed sequence in time order (step j ends at times[j - 1])."""
    data = world.observed
    order = np.lexsort((data.timestamp, data.user))
    counts = np.bincount(data.user, minlength=world.n_users)
    return np.split(data.timestamp[order], np.cumsum(counts)[:-1])
