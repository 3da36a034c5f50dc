"""Learn behaviour from preferences in Gymnasium environments (reward learning, PPO, RLHG), and
simulate users with recommenders. May import `recsys` (errors, the preference world, the exporter's
checkpoint reader) and `serving` (reading bundles in `agents.recommenders`); the environments in
`agents.envs` import no `serving` and no exporter."""

import agents.envs  # noqa: F401  (registers the prefengine/* environments)
