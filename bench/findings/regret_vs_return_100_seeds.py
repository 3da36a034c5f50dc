"""Knox et al. (TMLR 2024) as the authors ran it: 100 random MDPs (no delivery board), over seeds 0, 1, 2, so that
the docs quote mean ± sd over seeds and a test paired over them, not one run of 100 MDPs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.findings import regret_vs_return
from bench.findings.core import arguments

NAME = "regret_vs_return_100_seeds"
TITLE = "Reward learning from preferences on 100 random MDPs, over seeds"
COMMAND = ("python -m agents experiment regret-vs-return --mdps 100 --no-delivery --prefs 300,1000,3000,10000 "
           "--seeds 0,1,2 --workers 2 --out artifacts/findings/regret_vs_return_100_seeds")
# One seed of 100 MDPs: 8.7 CPU-minutes, so about 13 min for three seeds on two free cores.
FULL_MINUTES = 15
RULE = ("over seeds 0, 1 and 2 (each 100 random boards of its own), the regret model is near-optimal (scaled return "
        "> 0.9) on a larger mean share of the MDPs than the partial-return model at every number of preferences, "
        "with paired t-test p < 0.05 over the seeds")
QUICK_ARGV = ["--mdps", "2", "--no-delivery", "--prefs", "100,300", "--steps", "300", "--seeds", "0,1",
              "--workers", "1"]
QUICK_CHECK = "schema only: two random boards per seed are too few to compare near-optimal shares"


def run(workdir: Path, quick: bool) -> dict[str, Any]:
    return regret_vs_return.run_over_seeds(QUICK_ARGV if quick else arguments(COMMAND, "regret-vs-return"), workdir)


def quick_direction(payload: dict[str, Any]) -> None:
    return None


def tables(payload: dict[str, Any]) -> dict[str, str]:
    return {"near_optimal": regret_vs_return.tables(payload)["near_optimal"]}
