"""The run-to-run tables of docs/benchmarks.md are what their committed JSON says, and the JSON says the
default command reproduced (the fits themselves are tests/recsys/test_reproducible_fit.py)."""

import json
from pathlib import Path

from bench.run_to_run_world import table

REPO = Path(__file__).resolve().parents[2]


def test_the_world_table_is_rendered_from_its_json_and_every_run_is_identical():
    result = json.loads((REPO / "bench" / "results" / "run_to_run_world.json").read_text())
    assert result["identical"] and result["over_seeds"]["seed0_is_the_default_run"]
    assert len({(r["best_epoch"], r["test/ndcg@10"], r["hidden/ndcg@10"]) for r in result["runs"]}) == 1
    assert table(result) in (REPO / "docs" / "benchmarks.md").read_text()
