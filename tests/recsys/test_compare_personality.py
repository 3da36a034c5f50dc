"""The personality comparison: its verdict (`finding.holds`) and the command end to end."""

import json

import pytest

from recsys.cli import main as recsys_main
from recsys.errors import UserInputError
from recsys.experiments.compare_personality import finding

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _block(cold_gain=0.08, cold_user=(0.09, 1e-10), warm=(0.01, 0.3), warm_user=(0.02, 0.2), seeds=True):
    tests = {"test_cold/user_auc": {"over_users": {"mean_difference": cold_user[0], "p_value": cold_user[1]}},
             "test_warm/user_auc": {"over_users": {"mean_difference": warm_user[0], "p_value": warm_user[1]}}}
    if seeds:
        tests["test_cold/auc"] = {"over_seeds": {"mean_difference": cold_gain, "p_value": 0.001}}
        tests["test_warm/auc"] = {"over_seeds": {"mean_difference": warm[0], "p_value": warm[1]}}
    return {"traits": {"test_cold/auc": 0.60 + cold_gain, "test_warm/auc": 0.70 + warm[0]},
            "no_traits": {"test_cold/auc": 0.60, "test_warm/auc": 0.70},
            "paired_tests": {"reference": "traits", "tests": {"no_traits": tests}}}


def _holds(block, min_gain=0.02) -> bool:
    return finding(block, "traits", "no_traits", min_gain)["holds"]


def test_the_claim_holds_for_a_large_significant_cold_gain_that_spares_warm_users():
    verdict = finding(_block(), "traits", "no_traits", 0.02)
    assert verdict["holds"] is True
    assert verdict["cold_click_auc_gain"] == 0.08 and verdict["cold_user_auc_gain_p_users"] == 1e-10


@pytest.mark.parametrize("block, why", [
    (_block(cold_gain=0.015), "gain below min_cold_gain"),
    (_block(cold_user=(0.09, 0.2)), "gain not significant over users"),
    (_block(warm=(-0.03, 0.01)), "warm users significantly worse over seeds"),
    (_block(warm_user=(-0.01, 0.001)), "warm users significantly worse over users"),
])
def test_the_claim_does_not_hold(block, why):
    assert not _holds(block), why


def test_a_warm_loss_that_is_not_significant_does_not_break_the_claim():
    assert _holds(_block(warm=(-0.01, 0.4), warm_user=(-0.01, 0.3)))


def test_one_seed_takes_the_gain_as_the_difference_of_the_two_runs():
    verdict = finding(_block(cold_gain=0.05, seeds=False), "traits", "no_traits", 0.02)
    assert verdict["cold_click_auc_gain"] == pytest.approx(0.05)
    assert verdict["warm_click_auc_change"] == pytest.approx(0.01) and verdict["holds"] is True
    assert not _holds(_block(cold_gain=0.05, seeds=False), min_gain=0.06)


def test_an_unknown_baseline_is_a_user_error():
    with pytest.raises(UserInputError, match="finding.baseline"):
        finding(_block(), "traits", "bpr", 0.02)


def test_the_documented_command_at_toy_scale(tmp_path):
    out = tmp_path / "personality"
    models = ("{traits: {config: configs/recsys/personality.yaml, max_epochs: 2}, "
              "no_traits: {config: configs/recsys/personality.yaml, init_args: {use_traits: false}, max_epochs: 2}}")
    assert recsys_main(["compare", "-c", "configs/recsys/compare_personality.yaml", "--out", str(out),
                        "--seeds", "[0]", "--data.world_preset", "toy", "--models", models]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    block = metrics["pointwise"]
    recomputed = finding(block, "traits", "no_traits", 0.02)  # (NaN p-values with one seed: compare as JSON)
    assert json.dumps(metrics["finding"], sort_keys=True) == json.dumps(recomputed, sort_keys=True)
    assert metrics["finding"]["cold_click_auc_gain"] == pytest.approx(
        block["traits"]["test_cold/auc"] - block["no_traits"]["test_cold/auc"])
    for name in ("traits", "no_traits"):
        assert 0.0 < block[name]["test_cold/auc"] < 1.0 and 0.0 < block[name]["test_warm/auc"] < 1.0
    assert metrics["users"]["cold"] > 0 and metrics["users"]["warm"] > 0
    report = (out / "report.md").read_text()
    assert ("does NOT hold" in report) != metrics["finding"]["holds"]
    assert (out / "click_auc.png").read_bytes()[:4] == b"\x89PNG"
