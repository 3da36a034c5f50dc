"""The knobs of the preference world, with presets from a toy (tests) to MovieLens-1M size (benchmarks)."""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass, field, fields

import numpy as np

from recsys.data.world.lexicon import ASPECTS, CATEGORIES
from recsys.errors import UserInputError


def _knob(default, help: str, **limits):
    """A config field whose help text and bounds live beside it (the CLI and the checks read both)."""
    return field(default=default, metadata={"help": help, **limits})


@dataclass(frozen=True)
class WorldConfig:
    """Everything that shapes a generated world. The same config gives the same world, bit for bit."""

    seed: int = _knob(0, "random seed; the same seed gives the same world")
    n_users: int = _knob(1000, "number of users", low=1)
    n_items: int = _knob(500, "number of items", low=2)
    n_categories: int = _knob(8, f"item categories (at most {len(CATEGORIES)})", low=1, high=len(CATEGORIES))
    n_aspects: int = _knob(12, f"item aspects such as weight or scent (at most {len(ASPECTS)})",
                           low=1, high=len(ASPECTS))
    aspects_per_item: int = _knob(3, "salient aspects per item (named in its text, drive utility)", low=1)
    latent_dim: int = _knob(16, "dimension of the collaborative latent tastes (not visible in text)", low=1)

    # Tastes: taste = sqrt(t) * f(traits) + sqrt(d) * g(demographics) + sqrt(1 - t - d) * noise.
    trait_influence: float = _knob(0.4, "share of taste variance explained by the Big-Five traits",
                                   low=0.0, high=1.0)
    demographic_influence: float = _knob(0.1, "share of taste variance explained by demographics",
                                         low=0.0, high=1.0)

    # Taste types (pluralistic populations): off at 0, so the default world is unchanged.
    taste_types: int = _knob(0, "K latent taste types, independent of traits, mixed per user (0 = none)", low=0)
    type_influence: float = _knob(0.8, "share of taste variance set by the user's mixture of taste types",
                                  low=0.0, high=1.0)
    type_concentration: float = _knob(0.2, "Dirichlet concentration of each user's type mixture (small = "
                                      "one dominant type)", low=0.0, open_low=True)

    # Utility = latent + aspects + category affinity + item quality, each term of unit variance times its weight.
    latent_weight: float = _knob(1.0, "weight of the latent taste term in the utility", low=0.0)
    aspect_weight: float = _knob(0.9, "weight of the aspect term (what stated preferences talk about)", low=0.0)
    category_weight: float = _knob(0.8, "weight of the category affinity term", low=0.0)
    quality_weight: float = _knob(0.5, "weight of the item quality term (shared by all users)", low=0.0)
    category_cohesion: float = _knob(0.3, "share of an item's latent vector shared with its category",
                                     low=0.0, high=1.0)
    like_share: float = _knob(0.25, "share of the catalog each user truly likes (per-user utility quantile)",
                              low=0.0, high=1.0, open_low=True, open_high=True)

    # Activity and exposure.
    interactions_per_user: float = _knob(20.0, "mean observed interactions per user (heavy-tailed)", low=1.0)
    min_interactions: int = _knob(5, "fewest observed interactions of any user", low=1)
    activity_sigma: float = _knob(1.0, "log-normal sigma of user activity (larger = heavier tail)", low=0.0)
    popularity_spread: float = _knob(1.2, "log-normal sigma of item popularity", low=0.0)
    popularity_bias: float = _knob(1.0, "exposure ~ popularity ** this (0 = uniform exposure)", low=0.0)
    impressions_per_interaction: float = _knob(
        1.0, "exposed-but-not-clicked disliked items per observed interaction (the clicks table)", low=0.0)

    # Noise with known truth.
    false_positive_rate: float = _knob(0.1, "share of observed positives that are clicks on disliked items",
                                       low=0.0, high=1.0, open_high=True)
    false_positive_user_cv: float = _knob(0.5, "spread of the false-positive rate across users (coef. of variation)",
                                          low=0.0)
    false_positive_lure: float = _knob(1.0, "how much some items attract false clicks more than others", low=0.0)
    missing_positive_rate: float = _knob(0.2, "share of liked, exposed items that are never observed",
                                         low=0.0, high=1.0, open_high=True)

    # Ratings, text, time.
    rating_scale: float = _knob(1.5, "rating points per standard deviation of utility", low=0.0)
    rating_noise: float = _knob(0.5, "standard deviation of the noise added to ratings", low=0.0)
    review_rate: float = _knob(0.1, "share of observed interactions that come with a review", low=0.0, high=1.0)
    review_noise: float = _knob(0.05, "chance that a review sentence states the opposite sentiment",
                                low=0.0, high=0.5)
    stated_aspect_preferences: int = _knob(3, "aspect preference sentences per user", low=0)
    stated_category_preferences: int = _knob(2, "category preference sentences per user (one like, one dislike)",
                                             low=0, high=2)
    session_coherence: float = _knob(0.7, "how strongly a user's items cluster by category in time",
                                     low=0.0, high=1.0)
    time_start: int = _knob(1_577_836_800, "first timestamp (Unix seconds; default 2020-01-01)", low=0)
    time_span_days: float = _knob(730.0, "length of the observed period in days", low=1.0)

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.type == "int" and (isinstance(value, bool) or not isinstance(value, int | np.integer)):
                raise UserInputError(f"world config: {spec.name} must be an integer, got {value!r}")
            if spec.type == "float" and (isinstance(value, bool) or not isinstance(value, int | float | np.number)):
                raise UserInputError(f"world config: {spec.name} must be a number, got {value!r}")
            if spec.type == "float" and not np.isfinite(value):
                raise UserInputError(f"world config: {spec.name} must be finite, got {value!r}")
            _check_bounds(spec, value)
        if self.trait_influence + self.demographic_influence > 1:
            raise UserInputError("world config: trait_influence + demographic_influence must be at most 1, got "
                                 f"{self.trait_influence} + {self.demographic_influence}")
        if self.aspects_per_item > self.n_aspects:
            raise UserInputError(f"world config: aspects_per_item ({self.aspects_per_item}) exceeds "
                                 f"n_aspects ({self.n_aspects})")
        if self.n_categories > self.n_items:
            raise UserInputError(f"world config: n_categories ({self.n_categories}) exceeds n_items ({self.n_items})")
        liked = self.liked_per_user
        if not 1 <= liked < self.n_items:
            raise UserInputError(f"world config: like_share {self.like_share} x n_items {self.n_items} gives "
                                 f"{liked} liked items per user; it must be between 1 and n_items - 1")
        if self.max_interactions < self.min_interactions:
            raise UserInputError(
                f"world config: a user can observe at most {self.max_interactions} interactions "
                f"(like_share x n_items = {liked} liked items, of which a share missing_positive_rate is "
                f"missed), fewer than min_interactions = {self.min_interactions}; raise like_share or n_items")
        if self.interactions_per_user > 0.9 * self.max_interactions:
            raise UserInputError(
                f"world config: interactions_per_user = {self.interactions_per_user} is too close to the "
                f"{self.max_interactions} a user can observe at most (like_share x n_items = {liked} liked "
                "items); raise like_share or n_items, or lower interactions_per_user")

    # derived sizes ---------------------------------------------------------------------------
    @property
    def liked_per_user(self) -> int:
        """Exactly this many items are truly liked by every user (the top `like_share` of the catalog)."""
        return int(round(self.like_share * self.n_items))

    @property
    def max_true_positives(self) -> int:
        """At most this many liked items can be observed for one user (the rest are missed)."""
        return int(np.floor(self.liked_per_user * (1 - self.missing_positive_rate)))

    @property
    def max_interactions(self) -> int:
        return int(np.floor(self.max_true_positives / (1 - self.false_positive_rate)))

    # presets -------------------------------------------------------------------------------
    @classmethod
    def toy(cls, **overrides) -> WorldConfig:
        """About 200 users x 150 items, 4,000 interactions: for tests (generates in well under a second)."""
        base = dict(n_users=200, n_items=150, n_categories=6, n_aspects=8, latent_dim=8,
                    interactions_per_user=20.0, like_share=0.2, review_rate=0.2)
        return cls(**{**base, **overrides})

    @classmethod
    def small(cls, **overrides) -> WorldConfig:
        """2,000 users x 1,000 items, about 80,000 interactions: for quick experiments."""
        base = dict(n_users=2000, n_items=1000, n_categories=12, n_aspects=16, latent_dim=16,
                    interactions_per_user=40.0)
        return cls(**{**base, **overrides})

    @classmethod
    def movielens_1m_shape(cls, **overrides) -> WorldConfig:
        """6,040 users x 3,706 items with about 1,000,209 observed interactions, like MovieLens-1M."""
        base = dict(n_users=6040, n_items=3706, n_categories=18, n_aspects=24, latent_dim=32,
                    interactions_per_user=1_000_209 / 6040, min_interactions=20, review_rate=0.05)
        return cls(**{**base, **overrides})

    PRESETS = ("toy", "small", "movielens-1m")

    @classmethod
    def preset(cls, name: str, **overrides) -> WorldConfig:
        makers = {"toy": cls.toy, "small": cls.small, "movielens-1m": cls.movielens_1m_shape}
        if name not in makers:
            raise UserInputError(f"unknown world preset {name!r}; choose one of {', '.join(makers)}")
        return makers[name](**overrides)

    # (de)serialization ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> WorldConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserInputError(f"world config: unknown field(s) {', '.join(unknown)}")
        return cls(**values)

    def rng(self, stage: str, *parts: int) -> np.random.Generator:
        """An independent random stream for one stage (and batch) of generation.

        Streams are keyed by name, not drawn in sequence, so adding a stage or changing a batch
        size elsewhere does not change the numbers any other stage draws.
        """
        return np.random.default_rng([self.seed, zlib.crc32(stage.encode()), *parts])


def _check_bounds(spec: dataclasses.Field, value) -> None:
    meta = spec.metadata
    low, high = meta.get("low"), meta.get("high")
    if low is not None and (value < low or (meta.get("open_low") and value == low)):
        relation = ">" if meta.get("open_low") else ">="
        raise UserInputError(f"world config: {spec.name} must be {relation} {low}, got {value!r}")
    if high is not None and (value > high or (meta.get("open_high") and value == high)):
        relation = "<" if meta.get("open_high") else "<="
        raise UserInputError(f"world config: {spec.name} must be {relation} {high}, got {value!r}")
