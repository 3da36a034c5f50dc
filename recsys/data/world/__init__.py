"""The preference world: a generated data set that keeps its ground truth beside the observations.

    from recsys.data.world import WorldConfig, generate_world
    world = generate_world(WorldConfig.toy(seed=1))
    world.observed                 # InteractionData: implicit positives, timestamps, ratings, catalog, profiles
    world.is_false_positive        # aligned with world.observed
    world.clean(split.test)        # the rows users truly like
    world.true_utility(users)      # (len(users), n_items)

Modules: config (WorldConfig and presets), lexicon (words and templates), population (traits,
demographics, tastes), catalog (items and their text), utility (true utilities, likes),
feedback (exposure, clicks, observed positives, ratings, time), statements (reviews, stated
preferences), preference_world (the result), generate (the pipeline).
"""

from recsys.data.world.config import WorldConfig
from recsys.data.world.generate import generate_world, world_config_from_native
from recsys.data.world.preference_world import PreferenceWorld

__all__ = ["PreferenceWorld", "WorldConfig", "generate_world", "world_config_from_native"]
