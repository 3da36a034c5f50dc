"""`python -m recsys compare -c configs/recsys/compare_pluralistic.yaml` at a tiny size, and its config checks;
the implicit-feedback variant (`compare_pluralistic_implicit.yaml`) and the pairs it trains on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recsys.errors import UserInputError
from recsys.experiments.compare import main

CONFIG = Path(__file__).resolve().parents[2] / "configs/recsys/compare_pluralistic.yaml"
IMPLICIT = CONFIG.with_name("compare_pluralistic_implicit.yaml")
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
                                             ("{models: {per_user: {width: 2}}}", "width"),
                                             ("{pairs: {feedback: clicks}}", "pairs.feedback"),
                                             ("{pairs: {negatives: 0}}", "pairs.negatives")])
def test_bad_configs_are_refused_by_name(tmp_path, override, named):
    with pytest.raises(UserInputError, match=named):
        main(["-c", str(CONFIG), "--out", str(tmp_path), "--override", override])


def test_implicit_pairs_are_each_logged_item_over_items_the_user_never_touched():
    import numpy as np

    from recsys.data.world import generate_world
    from recsys.experiments.compare_pluralistic import implicit_pairs, world_config

    world = generate_world(world_config({"preset": "toy", "n_users": 120, "n_items": 150, "taste_types": 2}, 0))
    users = np.arange(0, 120, 2)
    user, observed, sampled = implicit_pairs(world, users, 5, np.random.default_rng(0))
    logged = {(int(u), int(i)) for u, i in zip(world.observed.user, world.observed.item)}
    wanted = sorted({(u, i) for u, i in logged if u in set(users.tolist())})
    assert sorted(zip(user.tolist(), observed.tolist())) == wanted  # every distinct logged item, once
    assert sampled.shape == (len(user), 5)
    assert not any((int(u), int(i)) in logged for u, row in zip(user, sampled) for i in row)
    assert len(np.unique(sampled)) > 100  # drawn from the whole catalog, not a few items


def test_implicit_variant_trains_on_the_log_and_keeps_the_same_unseen_users(tmp_path):
    import torch

    torch.set_num_threads(1)
    outs = {}
    for name, config in (("answers", CONFIG), ("implicit", IMPLICIT)):
        tiny = TINY.replace("seeds: [0, 1]", "seeds: [0]").replace("train_per_user: 20, ", "")
        assert main(["-c", str(config), "--out", str(tmp_path / name), "--override", tiny]) == 0
        outs[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    assert outs["implicit"]["config"]["pairs"]["feedback"] == "implicit"
    answers, implicit = (outs[k]["typed"]["models"] for k in ("answers", "implicit"))
    assert "seen_oracle_ari" in answers["mixture"] and "seen_oracle_ari" not in implicit["mixture"]
    # the models differ (other training data), the unseen users' answers and evaluation pairs do not: the shared
    # model places nobody, so its unseen accuracy moves only with the model
    assert answers["mixture"]["seen_accuracy"]["mean"] != implicit["mixture"]["seen_accuracy"]["mean"]
    assert "unseen_oracle_ari_at_max" in implicit["mixture"]
    assert (answers["mixture"]["unseen_oracle_ari_at_max"]["mean"]
            == implicit["mixture"]["unseen_oracle_ari_at_max"]["mean"])  # same answers -> same oracle
