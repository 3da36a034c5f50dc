"""Traits as a tested hypothesis: the personality comparison swept over the world's `trait_influence`.

The end-to-end test is the negative control: on a world whose tastes owe nothing to the traits,
the ranker with traits must not beat the same ranker without them for cold-start users.
"""

import json

import numpy as np
import pytest

from recsys.cli import main as recsys_main
from recsys.data.world import WorldConfig, generate_world
from recsys.errors import UserInputError
from recsys.experiments.compare_personality_sweep import control_verdict, trend, with_value

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TWO_EPOCHS = ("{traits: {config: configs/recsys/personality.yaml, max_epochs: 2}, "
              "no_traits: {config: configs/recsys/personality.yaml, init_args: {use_traits: false}, max_epochs: 2}}")


def test_a_world_field_goes_to_world_options_and_a_data_option_stays_one():
    data = {"world_preset": "toy", "world_options": {"rating_noise": 0.3}}
    assert with_value(data, "trait_influence", 0.8)["world_options"] == {"rating_noise": 0.3, "trait_influence": 0.8}
    assert with_value(data, "cold_user_share", 0.3)["cold_user_share"] == 0.3
    assert data == {"world_preset": "toy", "world_options": {"rating_noise": 0.3}}  # not changed in place
    with pytest.raises(UserInputError, match="trait_influenze"):
        with_value(data, "trait_influenze", 0.8)


@pytest.mark.parametrize("sweep, message", [
    ("{trait_influenze: [0]}", "sweep option 'trait_influenze' is neither"),
    ("{trait_influence: [0, 1.5]}", "trait_influence must be <= 1.0, got 1.5"),
    ("{trait_influence: [0], cold_user_share: [0.1]}", "sweep one data option at a time"),
])
def test_a_bad_sweep_is_one_line_before_any_training(tmp_path, capsys, sweep, message):
    assert recsys_main(["compare", "-c", "configs/recsys/compare_traits_sweep.yaml", "--out", str(tmp_path / "out"),
                        "--sweep", sweep]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out" / "trait_influence=0").exists()


def test_only_the_tastes_change_with_trait_influence():
    """The sweep's points differ in how traits shape taste, not in who the users are or what they see."""
    none, strong = (generate_world(WorldConfig.toy(trait_influence=t)).population for t in (0.0, 0.8))
    np.testing.assert_array_equal(none.traits, strong.traits)
    assert none.demographics.equals(strong.demographics)
    # At 0 no taste dimension is predictable from the traits beyond what demographics explain.
    def explained(tastes):
        design = np.column_stack([np.ones(len(none.traits)), none.traits])
        residual = tastes - design @ np.linalg.lstsq(design, tastes, rcond=None)[0]
        return 1 - residual.var(0).mean() / tastes.var(0).mean()
    assert explained(none.tastes) < 0.05 < 0.5 < explained(strong.tastes)


def test_the_control_is_a_significantly_positive_gain_and_nothing_else():
    point = {"finding": {"cold_user_auc_gain": 0.03, "cold_user_auc_gain_p_users": 0.01, "cold_click_auc_gain": 0.02},
             "cold_user_auc_gain_ci_users": [0.01, 0.05]}
    assert control_verdict(point)["holds"] is False
    for gain, p in ((0.03, 0.2), (-0.03, 0.01), (0.0, 1.0)):
        point["finding"].update(cold_user_auc_gain=gain, cold_user_auc_gain_p_users=p)
        assert control_verdict(point)["holds"] is True, (gain, p)


def test_trend_slope_matches_a_hand_fit():
    result = trend([0.0, 0.5, 1.0], [[0.0, 0.02], [0.05, 0.07], [0.1, 0.12]])
    assert result["slope"] == pytest.approx(0.1) and result["mean_gain"] == pytest.approx([0.01, 0.06, 0.11])
    assert result["non_decreasing"] and result["grows"]
    assert not trend([0.0, 1.0], [[0.05, 0.06], [0.0, 0.01]])["non_decreasing"]


def test_traits_help_cold_users_only_where_they_shape_taste(tmp_path):
    """Toy world with 400 users (80 cold), 2 seeds, 2 epochs, trait_influence 0 and 0.8.

    The negative control, at 0: the cold-user gain of traits is not significantly positive (p < 0.05
    over cold users) and stays inside +-0.05, about three times the half-width of the 95% CI over the
    80 cold users at this size (0.015 measured; the gain measured -0.0095). A leak of taste into the
    traits fails it: a world that lets traits shape taste at 0 as much as at 0.4 gives +0.036, p 0.005.
    At 0.8 the gain is positive and significant over users (measured +0.075, p 2e-5), so the same run
    has the power to see a real effect. (One seed cannot see that leak: +-0.026.)"""
    out = tmp_path / "sweep"
    assert recsys_main(["compare", "-c", "configs/recsys/compare_traits_sweep.yaml", "--out", str(out),
                        "--sweep", "{trait_influence: [0, 0.8]}", "--seeds", "[0, 1]", "--data.world_preset", "toy",
                        "--data.world_users", "400", "--models", TWO_EPOCHS]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    control = metrics["control"]
    assert control["holds"], control
    assert abs(control["cold_user_auc_gain"]) <= 0.05 and abs(control["cold_click_auc_gain"]) <= 0.05, control
    assert metrics["points"]["trait_influence=0"]["finding"]["holds"] is False  # the claim fails where it must
    strong = metrics["points"]["trait_influence=0.8"]["finding"]
    assert strong["cold_user_auc_gain"] > 0.02 and strong["cold_user_auc_gain_p_users"] < 0.01, strong
    assert metrics["trend"]["non_decreasing"]
    assert (out / "trait_influence=0" / "metrics.json").is_file()
    assert (out / "cold_gain_vs_trait_influence.png").read_bytes()[:4] == b"\x89PNG"
