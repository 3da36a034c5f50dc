"""Learn behaviour from preferences in Gymnasium environments (reward learning, PPO, RLHG)."""

import agents.envs  # noqa: F401  (registers the prefengine/* environments)
