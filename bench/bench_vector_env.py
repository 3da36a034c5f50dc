"""Agents' rollout envs: gymnasium SyncVectorEnv (one process) vs AsyncVectorEnv (a worker process per env).

    python -m bench vector_env

For Collab-v0 and RecSim-v0 at 8 envs: environment steps per second over a fixed number of vector
steps with seeded random actions (the policy is left out: it costs the same in both), the start-up
time, and the async / sync ratio, for async workers started with "spawn" (the default) and "fork".
The modes alternate, best of `REPEATS`, because the machine is shared.
"""

from __future__ import annotations

import numpy as np

from bench.common import timer, write_result

ENVS = {"prefengine/Collab-v0": {}, "prefengine/RecSim-v0": {}}
NUM_ENVS, VECTOR_STEPS, REPEATS = 8, 300, 3


MODES = {"sync": ("sync", "spawn"), "async": ("async", "spawn"), "async_fork": ("async", "fork")}


def steps_per_second(env_id: str, env_kwargs: dict, vector_env: str, start_method: str) -> tuple[float, float]:
    """(env steps per second, seconds to build and reset the vector env)."""
    from agents.ppo import make_vector_env

    with timer() as start:
        envs = make_vector_env(env_id, env_kwargs, NUM_ENVS, vector_env, start_method)
        envs.reset(seed=0)
    try:
        envs.action_space.seed(0)
        actions = [envs.action_space.sample() for _ in range(VECTOR_STEPS)]
        with timer() as run:
            for action in actions:
                envs.step(action)
    finally:
        envs.close()
    return NUM_ENVS * VECTOR_STEPS / run(), start()


def main() -> None:
    result: dict = {"num_envs": NUM_ENVS, "vector_steps": VECTOR_STEPS, "repeats": REPEATS, "envs": {}}
    for env_id, kwargs in ENVS.items():
        runs: dict[str, list[tuple[float, float]]] = {mode: [] for mode in MODES}
        for _ in range(REPEATS):
            for mode, (vector_env, start_method) in MODES.items():
                runs[mode].append(steps_per_second(env_id, kwargs, vector_env, start_method))
        numbers: dict[str, float] = {}
        for mode, values in runs.items():
            numbers[f"{mode}_steps_per_s"] = max(r[0] for r in values)
            numbers[f"{mode}_start_s"] = float(np.median([r[1] for r in values]))
        for mode in ("async", "async_fork"):
            numbers[f"{mode}_over_sync"] = numbers[f"{mode}_steps_per_s"] / numbers["sync_steps_per_s"]
        result["envs"][env_id] = numbers
        print(env_id, {k: round(v, 3) for k, v in result["envs"][env_id].items()})
    write_result("vector_env", result)


if __name__ == "__main__":
    main()
