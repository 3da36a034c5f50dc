"""Pluralistic preferences learned from implicit feedback: the comparison of `pluralistic_recsys` with the
seen users' interaction log in place of their answers (unseen users are still placed from answers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.findings import pluralistic_recsys
from bench.findings.pluralistic_recsys import RULE, quick_direction, tables  # noqa: F401 (the finding's API)

NAME = "pluralistic_recsys_implicit"
TITLE = "Pluralistic preferences from implicit feedback: prototypes learned from an interaction log"
COMMAND = ("python -m recsys compare -c configs/recsys/compare_pluralistic_implicit.yaml "
           "--out artifacts/findings/pluralistic_recsys_implicit")
FULL_MINUTES = 1
QUICK_CHECK = ("direction: the mixture's unseen-user pair accuracy at M = 10 is above the shared model's by at least "
               "a point (400-user world, one seed, 25 epochs; measured +2.4 points); the targets need the full size")
QUICK = pluralistic_recsys.QUICK


def run(workdir: Path, quick: bool) -> dict[str, Any]:
    return pluralistic_recsys.run_compare(COMMAND, QUICK, workdir, quick)
