"""`generate_world(config)`: users, items, utilities, feedback and statements, in that order."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from recsys.data.interactions import IdVocab, InteractionData
from recsys.data.world.catalog import generate_items
from recsys.data.world.config import WorldConfig
from recsys.data.world.feedback import simulate_feedback
from recsys.data.world.population import generate_population
from recsys.data.world.preference_world import GENERATOR, PreferenceWorld
from recsys.data.world.statements import generate_preferences, generate_reviews
from recsys.data.world.utility import UtilityModel
from recsys.errors import UserInputError

log = logging.getLogger(__name__)


def generate_world(config: WorldConfig | None = None, progress: bool = False) -> PreferenceWorld:
    """Generate the world `config` describes (default `WorldConfig()`); the same config, the same world."""
    config = config or WorldConfig()
    started = time.perf_counter()
    population = generate_population(config, UtilityModel.taste_dim(config))
    items = generate_items(config)
    model = UtilityModel.build(config, population.tastes, items)
    feedback = simulate_feedback(config, model, items, progress=progress)

    vocab = IdVocab.range(config.n_users, config.n_items)
    observed = InteractionData(user=feedback.user, item=feedback.item, timestamp=feedback.timestamp, vocab=vocab,
                               rating=feedback.rating, catalog=items.catalog(), profiles=population.profiles())
    missed = InteractionData(user=feedback.missed_user, item=feedback.missed_item,
                             timestamp=feedback.missed_timestamp, vocab=vocab)
    reviews, review_sentences = generate_reviews(config, feedback, items, population.tastes)
    preferences = generate_preferences(config, feedback, items, model)
    world = PreferenceWorld(config=config, observed=observed, is_false_positive=feedback.is_false_positive,
                            observed_utility=feedback.utility, missed=missed, clicks=feedback.clicks,
                            reviews=reviews, review_sentences=review_sentences, preferences=preferences,
                            population=population, items=items, utility=model)
    log.info("generated world in %.1f s: %s", time.perf_counter() - started, world.describe())
    return world


def world_config_from_native(directory) -> WorldConfig:
    """The config recorded in a world's `dataset.json`, so `generate_world` can rebuild its truth."""
    from recsys.data.native import read_native_metadata

    manifest = read_native_metadata(directory)
    if manifest.get("generator") != GENERATOR or not isinstance(manifest.get("world_config"), dict):
        raise UserInputError(f"{Path(directory) / 'dataset.json'}: not written by the preference world "
                             "(no 'world_config')")
    return WorldConfig.from_dict(manifest["world_config"])



