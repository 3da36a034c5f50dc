"""What users say: reviews whose sentences judge aspects, and stated preference sentences.

Both follow the hidden truth. A review sentence about an aspect is positive when the user's
taste for that aspect points the same way as the item's pole (and is flipped with a small
probability, `review_noise`); a stated preference names an aspect pole whose items the user
truly rates higher ("looks for lightweight hiking gear") or lower ("avoids strongly scented
candles"), for the aspects that matter most to the user, plus the user's favourite and least
favourite category.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.data.world import lexicon
from recsys.data.world.catalog import Items
from recsys.data.world.config import WorldConfig
from recsys.data.world.feedback import Feedback
from recsys.data.world.utility import UtilityModel

# Chance that a review mentions each of the item's salient aspects (at least one is always mentioned).
MENTION_PROBABILITY = 0.7


def aspect_tastes(config: WorldConfig, tastes: np.ndarray) -> np.ndarray:
    """The (n_users, n_aspects) block of the tastes: positive = leans to the aspect's positive pole."""
    return tastes[:, config.latent_dim:config.latent_dim + config.n_aspects]


def generate_reviews(config: WorldConfig, feedback: Feedback, items: Items,
                     tastes: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(reviews, review_sentences) for a random share `review_rate` of the observed rows."""
    rng = config.rng("reviews")
    rows = np.flatnonzero(rng.random(len(feedback.user)) < config.review_rate)
    user, item = feedback.user[rows], feedback.item[rows]
    rating = feedback.rating[rows]
    salient = items.salient[item]  # (R, k)
    values = np.take_along_axis(items.aspect_values[item], salient, axis=1).astype(np.int64)
    mentioned = rng.random(salient.shape) < MENTION_PROBABILITY
    mentioned[:, 0] |= ~mentioned.any(axis=1)
    agree = np.sign(np.take_along_axis(aspect_tastes(config, tastes)[user], salient, axis=1) * values)
    flip = rng.random(salient.shape) < config.review_noise
    sentiment = np.where(flip, -agree, agree).astype(np.int64)
    picks = rng.integers(0, 1 << 30, size=(len(rows), salient.shape[1] + 1))

    texts = np.empty(len(rows), dtype=object)
    sentence_rows: list[tuple] = []
    for r in range(len(rows)):
        noun = items.noun[item[r]]
        category = items.categories[items.category[item[r]]].name
        sentences = []
        for j in np.flatnonzero(mentioned[r]):
            aspect = items.aspects[salient[r, j]]
            adj = aspect.pole(values[r, j])
            templates = lexicon.REVIEW_POSITIVE if sentiment[r, j] > 0 else lexicon.REVIEW_NEGATIVE
            sentence = templates[picks[r, j] % len(templates)].format(
                adj=adj, Adj=lexicon.capitalize(adj), noun=noun, feature=aspect.feature,
                a_noun=f"{lexicon.article(noun)} {noun}")
            sentences.append(sentence)
            sentence_rows.append((r, len(sentences) - 1, aspect.key, values[r, j], sentiment[r, j], sentence))
        stars = int(rating[r])
        closing = lexicon.REVIEW_OVERALL[stars - 1]
        sentence = closing[picks[r, -1] % len(closing)].format(noun=noun, category=category)
        sentences.append(sentence)
        sentence_rows.append((r, len(sentences) - 1, "overall", 0, int(np.sign(stars - 3)), sentence))
        texts[r] = " ".join(sentences)

    reviews = pd.DataFrame({"review": np.arange(len(rows), dtype=np.int64), "user": user, "item": item,
                            "timestamp": feedback.timestamp[rows], "rating": rating, "text": texts})
    sentences = pd.DataFrame(sentence_rows, columns=["review", "position", "aspect", "value", "sentiment",
                                                     "sentence"])
    sentences = sentences.astype({"review": np.int64, "position": np.int64, "value": np.int64,
                                  "sentiment": np.int64})
    sentences.insert(1, "user", user[sentences["review"].to_numpy()])
    sentences.insert(2, "item", item[sentences["review"].to_numpy()])
    return reviews, sentences


def generate_preferences(config: WorldConfig, feedback: Feedback, items: Items, model: UtilityModel) -> pd.DataFrame:
    """Stated preferences: one row per sentence, with the aspect pole or category it is about.

    Columns: user, timestamp, kind ('aspect' | 'category'), polarity ('like' | 'dislike'), aspect
    (key; missing for categories), value (the item pole the sentence names: +1/-1; 0 for categories),
    category (the category named), sentence.

    A user states the aspects whose poles separate their utilities most, in the direction they
    do, and their best and worst category by mean utility: so what users say is what the truth
    says, measured over the whole catalog (not just the aspect term of the utility, since
    categories lean towards poles and that shifts the contrast).
    """
    rng = config.rng("preferences")
    n = config.n_users
    contrast = _pole_contrast(model, items)  # (n_users, n_aspects): mean utility at pole +1 minus pole -1
    category_mean = _category_means(model, items)  # (n_users, n_categories)
    n_aspect = min(config.stated_aspect_preferences, config.n_aspects)
    chosen = np.argsort(-np.abs(contrast), axis=1, kind="stable")[:, :n_aspect]
    lean = np.where(np.take_along_axis(contrast, chosen, axis=1) >= 0, 1, -1)
    says_like = rng.random(chosen.shape) < 0.5
    value = np.where(says_like, lean, -lean)

    # Name the aspect with the user's favourite category among those it is typical for.
    typical = np.zeros((config.n_aspects, config.n_categories), dtype=bool)
    index = {a.key: k for k, a in enumerate(items.aspects)}
    for j, cat in enumerate(items.categories):
        for key in cat.aspects:
            if key in index:
                typical[index[key], j] = True
    affinity = np.where(typical[chosen], category_mean[:, None, :], -np.inf)
    context = np.where(typical[chosen].any(axis=2), affinity.argmax(axis=2), category_mean.argmax(axis=1)[:, None])
    favourite, least = category_mean.argmax(axis=1), category_mean.argmin(axis=1)

    picks = rng.integers(0, 1 << 30, size=(n, n_aspect + 2))
    times = _stated_times(config, feedback, rng, n_aspect + 2)
    rows: list[tuple] = []
    for u in range(n):
        for j in range(n_aspect):
            aspect = items.aspects[chosen[u, j]]
            templates = lexicon.PREFERENCE_LIKE if says_like[u, j] else lexicon.PREFERENCE_DISLIKE
            category = items.categories[context[u, j]].name
            sentence = templates[picks[u, j] % len(templates)].format(adj=aspect.pole(value[u, j]), category=category)
            rows.append((u, times[u, j], "aspect", "like" if says_like[u, j] else "dislike", aspect.key,
                         int(value[u, j]), category, sentence))
        if config.stated_category_preferences >= 1:
            category = items.categories[favourite[u]].name
            sentence = lexicon.CATEGORY_LIKE[picks[u, -2] % len(lexicon.CATEGORY_LIKE)].format(category=category)
            rows.append((u, times[u, -2], "category", "like", None, 0, category, sentence))
        if config.stated_category_preferences >= 2 and config.n_categories > 1:
            category = items.categories[least[u]].name
            sentence = lexicon.CATEGORY_DISLIKE[picks[u, -1] % len(lexicon.CATEGORY_DISLIKE)].format(category=category)
            rows.append((u, times[u, -1], "category", "dislike", None, 0, category, sentence))
    frame = pd.DataFrame(rows, columns=["user", "timestamp", "kind", "polarity", "aspect", "value", "category",
                                        "sentence"])
    frame = frame.astype({"user": np.int64, "timestamp": np.int64, "value": np.int64})
    return frame.sort_values(["user", "timestamp"], kind="stable").reset_index(drop=True)


def _pole_contrast(model: UtilityModel, items: Items) -> np.ndarray:
    """Per user and aspect: mean utility of items at pole +1 minus items at pole -1 (0 if a pole is empty).

    Utility is linear in the item vector, so a mean over items is one dot product with their mean vector.
    """
    values = items.aspect_values.T.astype(np.float64)  # (n_aspects, n_items)
    positive, negative = (values > 0).astype(np.float64), (values < 0).astype(np.float64)
    both = (positive.sum(axis=1) > 0) & (negative.sum(axis=1) > 0)
    weights = positive / np.maximum(positive.sum(axis=1, keepdims=True), 1) \
        - negative / np.maximum(negative.sum(axis=1, keepdims=True), 1)
    contrast = model.user_vectors @ (weights @ model.item_vectors).T + weights @ model.item_bias
    return np.where(both[None, :], contrast, 0.0)


def _category_means(model: UtilityModel, items: Items) -> np.ndarray:
    n_categories = len(items.categories)
    members = np.zeros((n_categories, len(items)))
    members[items.category, np.arange(len(items))] = 1.0
    members /= np.maximum(members.sum(axis=1, keepdims=True), 1)
    return model.user_vectors @ (members @ model.item_vectors).T + members @ model.item_bias


def _stated_times(config: WorldConfig, feedback: Feedback, rng: np.random.Generator, per_user: int) -> np.ndarray:
    """Each statement is made at the time of one of the user's observed interactions, chosen at random."""
    counts = np.bincount(feedback.user, minlength=config.n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    offsets = np.floor(rng.random((config.n_users, per_user)) * counts[:, None]).astype(np.int64)
    rows = np.minimum(starts[:, None] + offsets, max(len(feedback.user) - 1, 0))
    if len(feedback.user) == 0:
        return np.full((config.n_users, per_user), config.time_start, dtype=np.int64)
    return np.where(counts[:, None] > 0, feedback.timestamp[rows], config.time_start)
