"""Preference extraction: up to five preference sentences per (user, time step) from recent items and reviews.

One interface, `PreferenceExtractor.extract(contexts) -> list[list[str]]`, three implementations:

- `RuleBasedExtractor` (the offline default): aspect and sentiment from annotated review
  sentences, weighted by recency, phrased as search-style likes ("Look for lightweight hiking
  gear") and dislikes ("Avoid heavy hiking gear");
- `recsys.preferences.llm.LLMExtractor`: any OpenAI-compatible chat endpoint, with the
  instruction of Paischer et al. (2024);
- `StatedPreferences`: the preference world's ground truth (what users said), to measure the
  other two against (`recsys.preferences.measure`) and to run the benchmark on the truth.

A `PreferenceContext` describes a user after `step` items: the most recent `window` of those
items with their text and review. Step j's preferences condition the prediction of item j, so
they never see item j or its review (Paischer et al. generate preferences at each time step from
the reviews up to the previous item).
"""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from recsys.errors import UserInputError

log = logging.getLogger(__name__)

MAX_PREFERENCES = 5

# Search-style phrasing, as the paper's LLM writes them; dislikes start with the words its
# sentiment split detects (Avoid / No / Exclude).
LIKE_TEMPLATES = ("Look for {adj} {category}", "Find {adj} {category}", "Search for {adj} {category}")
DISLIKE_TEMPLATES = ("Avoid {adj} {category}", "No {adj} {category}", "Exclude {adj} {category}")

_NEGATIVE = re.compile(
    r"^\s*(avoid|no\b|exclude|not\b|never|don'?t|do not|dislike|stays? away|steer clear|skip|"
    r"has no patience|is put off|has little interest|rarely enjoys|usually skips|without\b)", re.IGNORECASE)
NEGATIVE_PATTERN = _NEGATIVE  # what a polarity-aware model's bundle records, so a server flags dislikes the same way
_INVERSIONS = ((re.compile(r"^\s*avoids?\s+", re.I), "Find "), (re.compile(r"^\s*exclude\s+", re.I), "Search for "),
               (re.compile(r"^\s*no\s+", re.I), "Search for "), (re.compile(r"^\s*stays? away from\s+", re.I), "Find "),
               (re.compile(r"^\s*dislikes?\s+", re.I), "Find "), (re.compile(r"^\s*skip\s+", re.I), "Find "))


def is_negative(sentence: str) -> bool:
    """Whether a preference states a dislike (it opens with avoid / no / exclude / dislikes / ...)."""
    return bool(_NEGATIVE.match(sentence))


def invert(sentence: str) -> str | None:
    """The positive twin of a negative preference ("Avoid heavy tents" -> "Find heavy tents"); None if unknown."""
    for pattern, replacement in _INVERSIONS:
        if pattern.match(sentence):
            return pattern.sub(replacement, sentence, count=1)
    return None


@dataclass(frozen=True)
class ReviewedItem:
    """One interaction as an extractor sees it: the item's text and the user's review of it (if any)."""

    item: int
    title: str
    text: str
    category: str
    timestamp: int
    review: str | None = None
    rating: float | None = None
    # (aspect key, pole value of the item, sentiment -1/+1) per annotated review sentence
    aspects: tuple[tuple[str, int, int], ...] = ()


@dataclass(frozen=True)
class PreferenceContext:
    """The user after `step` items: `items` are the most recent of them, oldest first."""

    user: int
    step: int
    timestamp: int
    items: tuple[ReviewedItem, ...]


class PreferenceExtractor(Protocol):
    """Up to five preference sentences for each context."""

    name: str

    def extract(self, contexts: Sequence[PreferenceContext]) -> list[list[str]]: ...


# ---------------------------------------------------------------------------------------------
# contexts
# ---------------------------------------------------------------------------------------------
def _reviewed_items(items: np.ndarray, timestamps: np.ndarray, catalog: pd.DataFrame, user: int,
                    review_index: Mapping) -> list[ReviewedItem]:
    """The `ReviewedItem`s of one user's sequence (internal ids), joined with their reviews."""
    titles, texts, categories = catalog["title"].to_numpy(), catalog["text"].to_numpy(), catalog["category"].to_numpy()
    out = []
    for item, timestamp in zip(items.tolist(), timestamps.tolist()):
        review = review_index.get((user, item))
        text, rating, aspects = None, None, ()
        if review is not None:
            text, rating, aspects = review
        out.append(ReviewedItem(item=item, title=str(titles[item]), text=str(texts[item]),
                                category=str(categories[item]), timestamp=int(timestamp), review=text,
                                rating=rating, aspects=aspects))
    return out


def _review_index(reviews: pd.DataFrame | None, review_sentences: pd.DataFrame | None) -> dict:
    """(user, item) -> (review text, rating, aspect annotations); the latest review wins."""
    if reviews is None or not len(reviews):
        return {}
    aspects: dict[int, list[tuple[str, int, int]]] = {}
    if review_sentences is not None and len(review_sentences):
        annotated = review_sentences[review_sentences["aspect"] != "overall"]
        for review, aspect, value, sentiment in zip(annotated["review"].tolist(), annotated["aspect"].tolist(),
                                                    annotated["value"].tolist(), annotated["sentiment"].tolist()):
            aspects.setdefault(review, []).append((str(aspect), int(value), int(sentiment)))
    ordered = reviews.sort_values("timestamp", kind="stable")
    return {(u, i): (str(t), float(r), tuple(aspects.get(rv, ())))
            for rv, u, i, t, r in zip(ordered["review"].tolist(), ordered["user"].tolist(), ordered["item"].tolist(),
                                      ordered["text"].tolist(), ordered["rating"].tolist())}


def build_contexts(sequences: Sequence[np.ndarray], timestamps: Sequence[np.ndarray], catalog: pd.DataFrame,
                   reviews: pd.DataFrame | None = None, review_sentences: pd.DataFrame | None = None,
                   window: int = 20, users: Sequence[int] | None = None) -> list[PreferenceContext]:
    """A context for every (user, step), step = 0 .. len(sequence), over the last `window` items."""
    if window < 1:
        raise UserInputError(f"preference window must be >= 1 item, got {window}")
    index = _review_index(reviews, review_sentences)
    contexts = []
    for user in (range(len(sequences)) if users is None else users):
        seen = _reviewed_items(np.asarray(sequences[user]), np.asarray(timestamps[user]), catalog, int(user), index)
        for step in range(len(seen) + 1):
            recent = tuple(seen[max(0, step - window):step])
            contexts.append(PreferenceContext(user=int(user), step=step,
                                              timestamp=recent[-1].timestamp if recent else 0, items=recent))
    return contexts


def world_contexts(world, window: int = 20, users: Sequence[int] | None = None) -> list[PreferenceContext]:
    """Contexts of the preference world's observed sequences, with its reviews."""
    data = world.observed
    order = np.lexsort((data.timestamp, data.user))
    counts = np.bincount(data.user, minlength=world.n_users)
    cuts = np.cumsum(counts)[:-1]
    sequences = np.split(data.item[order], cuts)
    times = np.split(data.timestamp[order], cuts)
    return build_contexts(sequences, times, data.catalog.frame, world.reviews, world.review_sentences, window, users)


# ---------------------------------------------------------------------------------------------
# extractors
# ---------------------------------------------------------------------------------------------
def _aspect_words() -> dict[tuple[str, int], str]:
    from recsys.data.world.lexicon import ASPECTS

    return {(a.key, value): a.pole(value) for a in ASPECTS for value in (-1, 1)}


@dataclass
class RuleBasedExtractor:
    """Likes and dislikes from annotated review sentences, strongest and most recent first.

    Each annotated sentence says the user liked (+1) or disliked (-1) the pole `value` of an aspect
    in an item of some category. Sentences are summed per (aspect, pole, category) with weight
    0.5 ** (age / half_life), age counted in items from the newest; the `max_preferences` keys of
    largest |sum| become sentences: "Look for <pole> <category>" when positive, "Avoid <pole>
    <category>" when negative (phrasing picked by a hash of the key, so it is deterministic).
    """

    max_preferences: int = MAX_PREFERENCES
    half_life: float = 5.0
    aspect_words: Mapping[tuple[str, int], str] | None = None
    name: str = "rules"

    def __post_init__(self) -> None:
        if not 1 <= self.max_preferences <= MAX_PREFERENCES:
            raise UserInputError(f"max_preferences must be 1..{MAX_PREFERENCES}, got {self.max_preferences}")
        if self.half_life <= 0:
            raise UserInputError(f"half_life must be > 0 items, got {self.half_life}")
        self._words = dict(self.aspect_words or _aspect_words())

    def _sentence(self, aspect: str, value: int, category: str, positive: bool) -> str:
        adjective = self._words.get((aspect, value))
        if adjective is None:
            raise UserInputError(f"rule-based extractor: no words for aspect '{aspect}' pole {value}")
        templates = LIKE_TEMPLATES if positive else DISLIKE_TEMPLATES
        pick = zlib.crc32(f"{aspect}|{value}|{category}".encode()) % len(templates)
        return templates[pick].format(adj=adjective, category=category)

    def extract_one(self, context: PreferenceContext) -> list[str]:
        scores: dict[tuple[str, int, str], float] = {}
        newest: dict[tuple[str, int, str], int] = {}
        n = len(context.items)
        for position, item in enumerate(context.items):
            weight = 0.5 ** ((n - 1 - position) / self.half_life)
            for aspect, value, sentiment in item.aspects:
                key = (aspect, int(value), item.category)
                scores[key] = scores.get(key, 0.0) + weight * sentiment
                newest[key] = position
        ranked = sorted((k for k, s in scores.items() if abs(s) > 1e-12),
                        key=lambda k: (-abs(scores[k]), -newest[k], k))
        return [self._sentence(a, v, c, scores[(a, v, c)] > 0) for a, v, c in ranked[:self.max_preferences]]

    def extract(self, contexts: Sequence[PreferenceContext]) -> list[list[str]]:
        return [self.extract_one(c) for c in contexts]


@dataclass
class StatedPreferences:
    """The ground truth: the sentences a user of the preference world stated up to the context's time.

    `preferences` is the world's table (user, timestamp, sentence, ...); the most recent
    `max_preferences` statements made no later than the context's latest item are returned.
    """

    preferences: pd.DataFrame
    max_preferences: int = MAX_PREFERENCES
    name: str = "truth"
    _by_user: dict[int, tuple[np.ndarray, list[str]]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        missing = {"user", "timestamp", "sentence"} - set(self.preferences.columns)
        if missing:
            raise UserInputError(f"stated preferences need columns user, timestamp, sentence; missing {sorted(missing)}")
        ordered = self.preferences.sort_values(["user", "timestamp"], kind="stable")
        self._by_user = {int(u): (g["timestamp"].to_numpy(np.int64), g["sentence"].astype(str).tolist())
                         for u, g in ordered.groupby("user", sort=False)}

    def extract(self, contexts: Sequence[PreferenceContext]) -> list[list[str]]:
        out = []
        for context in contexts:
            times, sentences = self._by_user.get(context.user, (np.zeros(0, np.int64), []))
            said = int(np.searchsorted(times, context.timestamp, side="right")) if context.items else 0
            out.append(list(reversed(sentences[max(0, said - self.max_preferences):said])))
        return out


# ---------------------------------------------------------------------------------------------
# the result of running an extractor
# ---------------------------------------------------------------------------------------------
@dataclass
class PreferenceTimeline:
    """Preferences of every (user, step): sentence ids into `sentences`, in the extractor's order."""

    sentences: list[str]
    ids: dict[tuple[int, int], np.ndarray]
    extractor: str = ""

    @property
    def negative(self) -> np.ndarray:
        return np.array([is_negative(s) for s in self.sentences], dtype=bool)

    def at(self, user: int, step: int) -> np.ndarray:
        return self.ids.get((int(user), int(step)), np.zeros(0, dtype=np.int64))

    def to_frame(self) -> pd.DataFrame:
        rows = [(u, s, r, self.sentences[i]) for (u, s), ids in sorted(self.ids.items()) for r, i in enumerate(ids)]
        return pd.DataFrame(rows, columns=["user", "step", "rank", "sentence"])

    def counts(self) -> np.ndarray:
        return np.array([len(v) for v in self.ids.values()], dtype=np.int64)


def extract_timeline(extractor: PreferenceExtractor, contexts: Sequence[PreferenceContext],
                     batch_size: int = 512, progress: bool = True) -> PreferenceTimeline:
    """Run `extractor` over every context (in batches, with a progress bar)."""
    sentence_ids: dict[str, int] = {}
    ids: dict[tuple[int, int], np.ndarray] = {}
    truncated = 0
    batches = range(0, len(contexts), batch_size)
    for start in tqdm(batches, desc=f"preferences ({extractor.name})", unit="batch", disable=not progress):
        chunk = contexts[start:start + batch_size]
        answers = extractor.extract(chunk)
        if len(answers) != len(chunk):
            raise UserInputError(f"extractor {extractor.name} returned {len(answers)} answers for {len(chunk)} contexts")
        for context, sentences in zip(chunk, answers):
            if len(sentences) > MAX_PREFERENCES:
                truncated += 1
                sentences = sentences[:MAX_PREFERENCES]
            row = [sentence_ids.setdefault(s, len(sentence_ids)) for s in sentences]
            ids[(context.user, context.step)] = np.asarray(row, dtype=np.int64)
    if truncated:
        log.warning("extractor %s returned more than %d preferences for %d contexts; kept the first %d",
                    extractor.name, MAX_PREFERENCES, truncated, MAX_PREFERENCES)
    timeline = PreferenceTimeline(sentences=list(sentence_ids), ids=ids, extractor=extractor.name)
    counts = timeline.counts()
    log.info("%s: %d distinct preference sentences over %d (user, step) contexts; %.2f per context, %d empty",
             extractor.name, len(timeline.sentences), len(ids), counts.mean() if len(counts) else 0.0,
             int((counts == 0).sum()))
    return timeline
