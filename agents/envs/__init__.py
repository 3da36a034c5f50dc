"""Registered Gymnasium environments: `import agents` makes `gymnasium.make("prefengine/...")` work."""

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
