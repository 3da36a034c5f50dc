"""Registered Gymnasium environments: `import agents` makes `gymnasium.make("prefengine/...")` work.

The environments may import `agents.planning` and `recsys` data (the preference world), never
`serving` or `recsys.export`: a recommender reaches RecSim through its `Recommender` protocol."""

import gymnasium

# One line per environment.
gymnasium.register(
    "prefengine/Delivery-v0", entry_point="agents.envs.gridworld:GridWorldEnv", kwargs={"board": "delivery"}
)
gymnasium.register(
    "prefengine/RandomGrid-v0", entry_point="agents.envs.gridworld:GridWorldEnv", kwargs={"board": "random"}
)
gymnasium.register("prefengine/Collab-v0", entry_point="agents.envs.collab:CollabEnv")
gymnasium.register("prefengine/RecSim-v0", entry_point="agents.envs.recsim:RecSimEnv")


def make_env(env_id: str, env_kwargs: dict) -> gymnasium.Env:
    """One env, for vector-env factories (`functools.partial(make_env, ...)`).

    It lives here so that an `AsyncVectorEnv` worker that unpickles the factory imports this module,
    and with it the registrations above, even in a fresh (spawned) interpreter; importing it pulls in
    no torch.
    """
    return gymnasium.make(env_id, disable_env_checker=True, **env_kwargs)
