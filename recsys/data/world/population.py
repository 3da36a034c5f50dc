"""Users: demographics, Big-Five traits, and the tastes that traits and demographics shape."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.data.interactions import BIG_FIVE, UserProfiles
from recsys.data.world.config import WorldConfig

AGE_GROUPS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
AGE_SHARES = (0.16, 0.24, 0.2, 0.17, 0.13, 0.1)
GENDERS = ("female", "male", "non-binary")
GENDER_SHARES = (0.49, 0.49, 0.02)
COUNTRIES = ("United States", "India", "Germany", "Brazil", "Japan", "United Kingdom", "France",
             "Nigeria", "Mexico", "Canada", "Spain", "Indonesia")

# Traits are reported on the TIPI scale: the mean of two 1..7 answers, so multiples of 0.5.
TRAIT_CENTER, TRAIT_SCALE = 4.0, 1.1

# Small, documented population effects (older people score a little higher on conscientiousness
# and agreeableness and lower on neuroticism; women score a little higher on agreeableness and
# neuroticism), so demographics and traits are not independent, as in survey data.
_AGE_EFFECT = np.array([0.0, 0.15, 0.0, 0.1, -0.1])  # per standardized age group, in BIG_FIVE order
_FEMALE_EFFECT = np.array([0.0, 0.05, 0.0, 0.25, 0.3])


@dataclass(frozen=True)
class Population:
    """Per-user arrays: observed traits and demographics, hidden tastes."""

    traits: np.ndarray  # (n_users, 5) float32 in [1, 7], BIG_FIVE order
    demographics: pd.DataFrame  # age_group, gender, country
    tastes: np.ndarray  # (n_users, taste_dim) float64, about unit variance per dimension
    # With `taste_types` K > 0: each user's true mixture over the K types (rows sum to 1), else None.
    type_mixture: np.ndarray | None = None
    # With `taste_types` K > 0: the taste of a user wholly of each type, without individual taste (K, taste_dim).
    type_tastes: np.ndarray | None = None

    @property
    def dominant_type(self) -> np.ndarray | None:
        """Per user, the type with the largest share of their mixture (None without taste types)."""
        return None if self.type_mixture is None else self.type_mixture.argmax(axis=1)

    def profiles(self) -> UserProfiles:
        return UserProfiles(self.traits, self.demographics)


def standardized_traits(traits: np.ndarray) -> np.ndarray:
    """Traits on the TIPI scale back to about zero mean and unit variance (the scale tastes use)."""
    return (np.asarray(traits, dtype=np.float64) - TRAIT_CENTER) / TRAIT_SCALE


def generate_population(config: WorldConfig, taste_dim: int) -> Population:
    rng = config.rng("population")
    n = config.n_users
    age = rng.choice(len(AGE_GROUPS), size=n, p=AGE_SHARES)
    gender = rng.choice(len(GENDERS), size=n, p=GENDER_SHARES)
    country = rng.integers(len(COUNTRIES), size=n)

    age_z = (age - age.mean()) / max(age.std(), 1e-9)
    z = rng.standard_normal((n, len(BIG_FIVE))) + age_z[:, None] * _AGE_EFFECT + (gender == 0)[:, None] * _FEMALE_EFFECT
    traits = np.clip(np.round((TRAIT_CENTER + TRAIT_SCALE * z) * 2) / 2, 1.0, 7.0).astype(np.float32)

    demographics = pd.DataFrame({
        "age_group": np.asarray(AGE_GROUPS, dtype=object)[age],
        "gender": np.asarray(GENDERS, dtype=object)[gender],
        "country": np.asarray(COUNTRIES, dtype=object)[country],
    })
    tastes = _tastes(config, rng, taste_dim, standardized_traits(traits), (age, gender, country))
    mixture = type_tastes = None
    if config.taste_types > 0:
        tastes, mixture, type_tastes = _mix_taste_types(config, tastes)
    return Population(traits=traits, demographics=demographics, tastes=tastes, type_mixture=mixture,
                      type_tastes=type_tastes)


def _mix_taste_types(config: WorldConfig, tastes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """taste = sqrt(1 - s) * taste + sqrt(s) * (mixture of K type centres), s = `type_influence`.

    The centres and mixtures come from their own random streams and ignore traits and demographics,
    so a world without types draws exactly the numbers it drew before. The mixed centre is divided
    by the norm of the mixture so it keeps unit variance per dimension whatever the mixture.
    """
    k, (n, dim) = config.taste_types, tastes.shape
    centres = config.rng("taste_types").standard_normal((k, dim))
    mixture = config.rng("taste_mixture").dirichlet(np.full(k, config.type_concentration), size=n)
    mixed = (mixture @ centres) / np.linalg.norm(mixture, axis=1, keepdims=True)
    s = config.type_influence
    return np.sqrt(1 - s) * tastes + np.sqrt(s) * mixed, mixture, np.sqrt(s) * centres


def _tastes(config: WorldConfig, rng: np.random.Generator, dim: int, traits_std: np.ndarray,
            demographic_codes: tuple[np.ndarray, ...]) -> np.ndarray:
    """taste = sqrt(t) * W traits + sqrt(d) * demographic effects + sqrt(1 - t - d) * individual noise.

    Each part has about unit variance per dimension, so `trait_influence` is the share of taste
    variance a linear model of the traits can explain (its population R^2).
    """
    n = len(traits_std)
    trait_map = rng.standard_normal((dim, traits_std.shape[1]))
    trait_map /= np.linalg.norm(trait_map, axis=1, keepdims=True)
    from_traits = traits_std @ trait_map.T

    from_demographics = np.zeros((n, dim))
    sizes = (len(AGE_GROUPS), len(GENDERS), len(COUNTRIES))
    for codes, size in zip(demographic_codes, sizes):
        table = rng.standard_normal((size, dim)) / np.sqrt(len(sizes))
        from_demographics += table[codes]

    noise = rng.standard_normal((n, dim))
    t, d = config.trait_influence, config.demographic_influence
    return np.sqrt(t) * from_traits + np.sqrt(d) * from_demographics + np.sqrt(max(0.0, 1 - t - d)) * noise
