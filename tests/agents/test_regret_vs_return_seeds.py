"""`regret-vs-return --seeds`: one run per seed, each the same as a `--seed` run, and mean ± sd and paired
t-tests over seeds computed from those runs."""

import json

import numpy as np
import pytest

from agents.experiments.regret_vs_return import main
from recsys.evaluation.significance import paired_t_test

TINY = ["--mdps", "1", "--prefs", "30,100", "--steps", "50", "--workers", "1"]


@pytest.fixture(scope="module")
def over_seeds(tmp_path_factory):
    out = tmp_path_factory.mktemp("seeds")
    assert main([*TINY, "--seeds", "0,1,2", "--out", str(out)]) == 0
    return out


def test_each_seed_folder_is_the_single_seed_run(over_seeds, tmp_path):
    assert main([*TINY, "--seed", "1", "--out", str(tmp_path)]) == 0
    single = json.loads((tmp_path / "per_mdp.json").read_text())["mdps"]
    assert json.loads((over_seeds / "seed1" / "per_mdp.json").read_text())["mdps"] == single
    seeds = [json.loads((over_seeds / f"seed{s}" / "per_mdp.json").read_text())["mdps"] for s in (0, 1, 2)]
    # the seeds draw different data: the random board and the learned weights differ
    assert seeds[0][1]["true_weights"] != seeds[1][1]["true_weights"]


def test_mean_sd_per_seed_and_paired_tests_come_from_the_seed_runs(over_seeds):
    summary = json.loads((over_seeds / "over_seeds.json").read_text())
    assert summary["seeds"] == [0, 1, 2]
    for n in ("30", "100"):
        per_seed = {}
        for model in ("regret", "partial_return"):
            shares = [json.loads((over_seeds / f"seed{s}" / "results.json").read_text())[model][n]["near_optimal"]
                      for s in (0, 1, 2)]
            cell = summary["by_prefs"][n][model]["near_optimal"]
            assert cell["per_seed"] == shares
            assert cell["mean"] == pytest.approx(np.mean(shares))
            assert cell["sd"] == pytest.approx(np.std(shares, ddof=1))
            per_seed[model] = shares
        paired = summary["paired"][n]["near_optimal"]
        if np.ptp(np.subtract(per_seed["regret"], per_seed["partial_return"])) > 0:
            assert paired["p_value"] == pytest.approx(paired_t_test(per_seed["regret"], per_seed["partial_return"])[1])
        assert paired["per_seed_difference"] == pytest.approx(
            np.subtract(per_seed["regret"], per_seed["partial_return"]).tolist())
    assert "± " in (over_seeds / "report.md").read_text()


def test_seed_and_seeds_together_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*TINY, "--seed", "0", "--seeds", "0,1", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*TINY, "--seeds", "0,0", "--out", str(tmp_path)])
