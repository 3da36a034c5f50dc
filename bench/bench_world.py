"""World generation: throughput and peak memory for the MovieLens-1M-shaped world (about 1M interactions).

Targets: 1,000,000 observed interactions in under 60 s on 2 cores, peak memory under 2 GB.

References measured in the same run:
- `naive_choice`: what the core sampling costs when written the obvious way, one
  `Generator.choice(n_items, k, replace=False, p=popularity)` call per user for the same number
  of exposures each user gets. The world does more (utilities, likes, noise, time, text) and is
  reported as a ratio to it.
- `pandas_parquet`: writing the same tables (interactions, items, users and the six truth and
  text tables, ids as strings) with plain `DataFrame.to_parquet`, against which the world's
  `to_native` write (through `recsys.data.native.write_native`) is reported.

Generation runs in a fresh child process so its peak RSS is the world's own, not this process's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench.common import peak_rss_mb, timer, write_result

CHILD = r"""
import json, resource, sys, tempfile, time
from recsys.data.world import WorldConfig, generate_world
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start, cpu = time.perf_counter(), time.process_time()
world = generate_world(WorldConfig.movielens_1m_shape())
seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
with tempfile.TemporaryDirectory() as out:
    start = time.perf_counter()
    world.to_native(out, file_format="parquet")
    write_seconds = time.perf_counter() - start
with tempfile.TemporaryDirectory() as out:
    start = time.perf_counter()
    import pandas as pd
    o = world.observed
    items = pd.concat([pd.DataFrame({"item": o.vocab.items}), o.catalog.frame], axis=1)
    users = pd.concat([pd.DataFrame({"user": o.vocab.users}),
                       pd.DataFrame(o.profiles.traits, columns=["openness", "conscientiousness", "extraversion",
                                                                "agreeableness", "neuroticism"]),
                       o.profiles.demographics], axis=1)
    frames = {"interactions": o.to_frame(), "items": items, "users": users, **world.native_tables()}
    for name, frame in frames.items():
        frame.to_parquet(f"{out}/{name}.parquet", index=False)
    pandas_seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss_mb": peak, "rss_after_imports_mb": before,
                  "write_seconds": write_seconds, "pandas_write_seconds": pandas_seconds,
                  "interactions": len(world.observed),
                  "impressions": len(world.clicks), "reviews": len(world.reviews),
                  "false_positive_share": float(world.is_false_positive.mean())}))
"""


def generate_in_child() -> dict:
    result = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[1], timeout=600)
    return json.loads(result.stdout.strip().splitlines()[-1])


def naive_choice_seconds(seed: int = 0) -> float:
    """Per-user weighted sampling without replacement, the same exposure counts as the world draws."""
    from recsys.data.world import WorldConfig
    from recsys.data.world.catalog import generate_items
    from recsys.data.world.feedback import plan_activity

    config = WorldConfig.movielens_1m_shape()
    plan = plan_activity(config)
    exposures = plan.true_positives + plan.false_positives + plan.missed + plan.unclicked
    weights = np.exp(config.popularity_bias * generate_items(config).log_popularity)
    weights /= weights.sum()
    rng = np.random.default_rng(seed)
    with timer() as elapsed:
        for count in exposures:
            rng.choice(config.n_items, size=int(count), replace=False, p=weights)
        seconds = elapsed()
    return seconds


def main() -> None:
    world = generate_in_child()
    naive = naive_choice_seconds()
    result = {
        "world": "WorldConfig.movielens_1m_shape() (6,040 users x 3,706 items)",
        "interactions": world["interactions"],
        "impressions": world["impressions"],
        "reviews": world["reviews"],
        "false_positive_share": round(world["false_positive_share"], 4),
        "generate_seconds": round(world["seconds"], 2),
        "generate_cpu_seconds": round(world["cpu_seconds"], 2),
        "interactions_per_second": round(world["interactions"] / world["seconds"]),
        "peak_rss_mb": round(world["peak_rss_mb"], 1),
        "rss_after_imports_mb": round(world["rss_after_imports_mb"], 1),
        "targets": {"generate_seconds": 60, "peak_rss_mb": 2048},
        "reference_naive_choice_seconds": round(naive, 2),
        "ratio_generate_to_naive_choice": round(world["seconds"] / naive, 3),
        "to_native_parquet_seconds": round(world["write_seconds"], 2),
        "reference_pandas_parquet_seconds": round(world["pandas_write_seconds"], 2),
        "ratio_to_native_to_pandas_parquet": round(world["write_seconds"] / world["pandas_write_seconds"], 2),
        "bench_process_peak_rss_mb": round(peak_rss_mb(), 1),
    }
    for key, value in result.items():
        print(f"{key}: {value}")
    write_result("world", result)


if __name__ == "__main__":
    main()
