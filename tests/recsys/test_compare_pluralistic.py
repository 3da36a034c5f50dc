"""`python -m recsys compare -c configs/recsys/compare_pluralistic.yaml` at a tiny size, and its config checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recsys.errors import UserInputError
from recsys.experiments.compare import main

CONFIG = Path(__file__).resolve().parents[2] / "configs/recsys/compare_pluralistic.yaml"
TINY = ("{seeds: [0, 1], world: {preset: toy, n_users: 160, n_items: 150, taste_types: 3}, "
        "users: {seen: 80, validation: 40, test: 40}, pairs: {train_per_user: 20, eval_per_user: 40}, "
        "comparisons: [1, 10], model: {epochs: 3}, placement_priors: [1.0, 10.0], "
        "finding: {at_comparisons: 10}}")


def test_tiny_comparison_writes_every_number_the_finding_reads(tmp_path, capsys):
    import torch

    torch.set_num_threads(1)
    assert main(["-c", str(CONFIG), "--out", str(tmp_path), "--override", TINY]) == 0
    result = json.loads((tmp_path / "metrics.json").read_text())
    for world in ("typed", "control"):
        models = result[world]["models"]
        assert set(models) == {"mixture", "shared", "per_user"}
        for row in models.values():
            assert 0 <= row["seen_accuracy"]["mean"] <= 1 and len(row["seen_accuracy"]["per_seed"]) == 2
            assert set(row["unseen_accuracy"]) == {"1", "10"}
            assert all(p in (1.0, 10.0) for p in row["placement_prior"]["10"])  # chosen on validation users
        # The shared model has nobody to place: its unseen accuracy does not depend on M.
        shared = models["shared"]["unseen_accuracy"]
        assert shared["1"]["mean"] == shared["10"]["mean"]
    assert {"seen_ari", "seen_oracle_ari", "unseen_oracle_ari_at_max"} <= set(result["typed"]["models"]["mixture"])
    assert "seen_ari" not in result["control"]["models"]["mixture"]  # one type: nothing to recover
    tests = result["typed"]["tests"]["mixture_vs_shared"]["unseen@10"]
    assert tests["over_test_users"]["n"] == 80 and tests["over_seeds"]["n"] == 2
    assert set(result["finding"]) >= {"unseen_gain", "seen_ari", "control_difference", "holds"}
    assert "| typed | mixture |" in capsys.readouterr().out


@pytest.mark.parametrize("override, named", [("{users: {seen: 900, validation: 200, test: 200}}", "n_users"),
                                             ("{model: {depth: 3}}", "depth"),
                                             ("{comparisons: [1, 2], finding: {at_comparisons: 10}}", "at_comparisons"),
                                             ("{models: {per_user: {width: 2}}}", "width")])
def test_bad_configs_are_refused_by_name(tmp_path, override, named):
    with pytest.raises(UserInputError, match=named):
        main(["-c", str(CONFIG), "--out", str(tmp_path), "--override", override])
