"""Items: categories, salient aspects, hidden latent factors, quality, popularity, and their text."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.data.interactions import Catalog
from recsys.data.world import lexicon
from recsys.data.world.config import WorldConfig

# How much likelier a category's typical aspects are to be salient than any other aspect: rare
# enough that "a breathable card game" stays an oddity, common enough that aspects cross categories.
TYPICAL_ASPECT_ODDS = 25.0
# Correlation of (log) popularity with quality: good items get around, but not only good items.
POPULARITY_QUALITY_CORRELATION = 0.5


@dataclass(frozen=True)
class Items:
    """Per-item arrays; row i is item i."""

    category: np.ndarray  # (n_items,) int64 index into `categories`
    salient: np.ndarray  # (n_items, aspects_per_item) int64 aspect indices, most prominent first
    aspect_values: np.ndarray  # (n_items, n_aspects) int8 in {-1, 0, +1}; 0 = not salient
    latent: np.ndarray  # (n_items, latent_dim) float64, hidden
    quality: np.ndarray  # (n_items,) float64, hidden
    log_popularity: np.ndarray  # (n_items,) float64; exposure ~ exp(popularity_bias * this)
    lure: np.ndarray  # (n_items,) float64; how strongly the item draws clicks from people who will not like it
    noun: np.ndarray  # (n_items,) object: the singular noun ("tent")
    title: np.ndarray  # (n_items,) object
    text: np.ndarray  # (n_items,) object
    categories: tuple[lexicon.Category, ...]
    aspects: tuple[lexicon.Aspect, ...]

    def __len__(self) -> int:
        return len(self.category)

    def catalog(self) -> Catalog:
        """The observable side: title, text, category, and one column per aspect (-1, 0 or +1)."""
        columns = {"title": self.title, "text": self.text,
                   "category": np.asarray([c.name for c in self.categories], dtype=object)[self.category]}
        for k, aspect in enumerate(self.aspects):
            columns[aspect_column(aspect.key)] = self.aspect_values[:, k].astype(np.int64)
        return Catalog(pd.DataFrame(columns))


def aspect_column(key: str) -> str:
    """The catalog column holding an aspect's pole per item."""
    return f"aspect_{key}"


def generate_items(config: WorldConfig) -> Items:
    rng = config.rng("items")
    n, n_cat, n_asp, k = config.n_items, config.n_categories, config.n_aspects, config.aspects_per_item
    categories = lexicon.CATEGORIES[:n_cat]
    aspects = lexicon.ASPECTS[:n_asp]

    # Category sizes vary (Dirichlet shares) but every category holds at least one item.
    shares = rng.dirichlet(np.full(n_cat, 3.0))
    category = rng.permutation(np.concatenate([np.arange(n_cat), rng.choice(n_cat, size=n - n_cat, p=shares)]))

    # Salient aspects: Gumbel top-k with the category's typical aspects favoured.
    aspect_index = {a.key: j for j, a in enumerate(aspects)}
    typical = np.zeros((n_cat, n_asp))
    for c, cat in enumerate(categories):
        for key in cat.aspects:
            if key in aspect_index:
                typical[c, aspect_index[key]] = np.log(TYPICAL_ASPECT_ODDS)
    keys = typical[category] + rng.gumbel(size=(n, n_asp))
    salient = np.argsort(-keys, axis=1)[:, :k]

    # Each category leans towards one pole of each aspect (most hiking gear is lightweight).
    lean = rng.beta(2.0, 2.0, size=(n_cat, n_asp))
    poles = np.where(rng.random((n, k)) < lean[category[:, None], salient], 1, -1).astype(np.int8)
    aspect_values = np.zeros((n, n_asp), dtype=np.int8)
    np.put_along_axis(aspect_values, salient, poles, axis=1)

    cohesion = config.category_cohesion
    centers = rng.standard_normal((n_cat, config.latent_dim))
    latent = np.sqrt(cohesion) * centers[category] + np.sqrt(1 - cohesion) * rng.standard_normal((n, config.latent_dim))
    quality = rng.standard_normal(n)
    r = POPULARITY_QUALITY_CORRELATION
    log_popularity = config.popularity_spread * (r * quality + np.sqrt(1 - r * r) * rng.standard_normal(n))
    lure = rng.standard_normal(n)

    noun, title, text = _item_text(rng, categories, aspects, category, salient, poles)
    return Items(category=category.astype(np.int64), salient=salient.astype(np.int64), aspect_values=aspect_values,
                 latent=latent, quality=quality, log_popularity=log_popularity, lure=lure,
                 noun=noun, title=title, text=text, categories=categories, aspects=aspects)


def _item_text(rng: np.random.Generator, categories, aspects, category: np.ndarray, salient: np.ndarray,
               poles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Titles and descriptions that name every salient aspect's pole, in varied templates.

    All random choices are drawn as arrays first; the loop only formats strings (items are few).
    """
    n = len(category)
    picks = rng.integers(0, 1 << 30, size=(n, 9))
    noun, title, text = (np.empty(n, dtype=object) for _ in range(3))
    for i in range(n):
        cat = categories[category[i]]
        p = picks[i]
        item_noun = cat.nouns[p[0] % len(cat.nouns)]
        adjectives = [aspects[a].pole(v) for a, v in zip(salient[i], poles[i])]
        name = (lexicon.NAME_STARTS[p[1] % len(lexicon.NAME_STARTS)]
                + lexicon.NAME_MIDDLES[p[2] % len(lexicon.NAME_MIDDLES)]
                + lexicon.NAME_ENDS[p[3] % len(lexicon.NAME_ENDS)])
        item_title = lexicon.TITLE_TEMPLATES[p[4] % len(lexicon.TITLE_TEMPLATES)].format(
            Name=name, Adj=lexicon.title_case(adjectives[0]), Noun=lexicon.title_case(item_noun))
        adj1 = adjectives[0]
        opening = lexicon.OPENING_TEMPLATES[p[5] % len(lexicon.OPENING_TEMPLATES)].format(
            a_adj1=f"{lexicon.article(adj1)} {adj1}", A_adj1=lexicon.capitalize(f"{lexicon.article(adj1)} {adj1}"),
            noun=item_noun, context=cat.contexts[p[6] % len(cat.contexts)], title=item_title)
        sentences = [lexicon.capitalize(opening)]
        rest = adjectives[1:]
        if len(rest) == 1:
            template = lexicon.ONE_ASPECT_TEMPLATES[p[7] % len(lexicon.ONE_ASPECT_TEMPLATES)]
            sentences.append(lexicon.capitalize(template.format(adj2=rest[0], Adj2=lexicon.capitalize(rest[0]))))
        else:
            # Named in pairs, so the text mentions every salient pole however many there are.
            for start in range(0, len(rest), 2):
                pair = rest[start:start + 2]
                if len(pair) == 1:
                    sentences.append(f"It is also {pair[0]}.")
                    continue
                template = lexicon.TWO_ASPECT_TEMPLATES[(p[7] + start) % len(lexicon.TWO_ASPECT_TEMPLATES)]
                sentences.append(template.format(adj2=pair[0], adj3=pair[1], Adj2=lexicon.capitalize(pair[0])))
        sentences.append(cat.blurbs[p[8] % len(cat.blurbs)])
        noun[i], title[i], text[i] = item_noun, item_title, " ".join(sentences)
    return noun, title, text
