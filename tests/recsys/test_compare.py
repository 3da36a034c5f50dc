"""`python -m recsys compare`: several models x seeds on one split, paired tests, report and plots."""

import json

import numpy as np
import pytest
import yaml

from recsys.cli import main as recsys_main
from recsys.evaluation import EvaluationResult
from recsys.evaluation.significance import paired_t_test
from recsys.experiments.runs import mean_result


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    config = {
        "seeds": [0, 1], "ks": [5, 10], "metric": "ndcg@10", "monitor": "valid/ndcg@10",
        "data": {"world_preset": "toy", "batch_size": 1024},
        "sweep": {"false_positive_rate": [0.0, 0.2]},
        "trainer": {"max_epochs": 1},
        "models": {
            "nbpo": {"config": "configs/recsys/nbpo.yaml",
                     "init_args": {"engine": "autograd", "embedding_dim": 8, "lr": 0.01, "eval_ks": [5, 10]}},
            "popularity": {"class_path": "recsys.models.popularity.PopularityRecommender",
                           "init_args": {"eval_ks": [5, 10]}},
        },
    }
    path = out / "compare.yaml"
    path.write_text(yaml.safe_dump(config))
    assert recsys_main(["compare", "-c", str(path), "--out", str(out / "result")]) == 0
    return out / "result"


def test_metrics_json_holds_means_seeds_tests_and_flip_auc(comparison):
    payload = json.loads((comparison / "metrics.json").read_text())
    assert payload["sweep"] == {"parameter": "false_positive_rate", "values": [0.0, 0.2]}
    noisy = payload["points"]["false_positive_rate=0.2"]
    for model in ("nbpo", "popularity"):
        seeds = noisy["per_seed"][model]["clean/ndcg@10"]
        assert len(seeds) == 2
        assert noisy[model]["clean/ndcg@10"] == pytest.approx(np.mean(seeds))
    # popularity learns nothing, so its seeds agree exactly
    assert len(set(noisy["per_seed"]["popularity"]["test/recall@5"])) == 1
    tests = noisy["paired_tests"]
    assert tests["reference"] == "nbpo"
    over_seeds = tests["tests"]["popularity"]["test/ndcg@10"]["over_seeds"]
    a, b = noisy["per_seed"]["nbpo"]["test/ndcg@10"], noisy["per_seed"]["popularity"]["test/ndcg@10"]
    assert over_seeds["mean_difference"] == pytest.approx(np.mean(a) - np.mean(b))
    assert over_seeds["p_value"] == pytest.approx(paired_t_test(a, b)[1])
    assert tests["tests"]["popularity"]["clean/ndcg@10"]["over_users"]["n"] > 100
    auc = noisy["diagnostics"]["nbpo"]["flip_auc"]
    assert len(auc) == 2 and all(0.0 <= v <= 1.0 for v in auc)
    assert "flip_auc" not in noisy["diagnostics"]["popularity"]
    # no injected false positives at rate 0: nothing to separate
    assert all(np.isnan(v) for v in payload["points"]["false_positive_rate=0.0"]["diagnostics"]["nbpo"]["flip_auc"])



def test_hidden_likes_view_and_rho_on_hidden_likes_are_compared(comparison):
    """The toy world misses 20% of liked exposed items: the hidden/ view and the paper's rho AUC appear."""
    payload = json.loads((comparison / "metrics.json").read_text())
    point = payload["points"]["false_positive_rate=0.0"]
    assert len(point["per_seed"]["nbpo"]["hidden/ndcg@10"]) == 2
    assert point["paired_tests"]["tests"]["popularity"]["hidden/ndcg@10"]["over_users"]["n"] > 100
    auc = point["diagnostics"]["nbpo"]["hidden_flip_auc"]
    assert len(auc) == 2 and all(0.0 <= v <= 1.0 for v in auc)
    assert "hidden_flip_auc" not in point["diagnostics"]["popularity"]
    assert "| nbpo |" in (comparison / "report.md").read_text().split("hidden likes (liked, exposed")[1]

def test_report_and_plots_are_written(comparison):
    report = (comparison / "report.md").read_text()
    assert "## false_positive_rate=0.2" in report and "Paired tests, nbpo minus each model" in report
    for name in ("metric_vs_k_false_positive_rate=0.2.png", "metric_vs_false_positive_rate_clean.png",
                 "metric_vs_false_positive_rate_test.png"):
        assert (comparison / name).stat().st_size > 1000
    assert list((comparison / "runs" / "false_positive_rate=0.2" / "nbpo" / "seed1" / "checkpoints").glob("*.ckpt"))


def test_mean_result_averages_per_user_values_and_refuses_different_users():
    users = {"test": np.array([0, 2, 5])}
    a = EvaluationResult({"test/ndcg@5": 0.2}, {"test/ndcg@5": np.array([0.0, 0.3, 0.3])}, users, (5,))
    b = EvaluationResult({"test/ndcg@5": 0.4}, {"test/ndcg@5": np.array([0.6, 0.3, 0.3])}, users, (5,))
    mean = mean_result([a, b])
    assert mean.metrics["test/ndcg@5"] == pytest.approx(0.3)
    assert np.allclose(mean.per_user["test/ndcg@5"], [0.3, 0.3, 0.3])
    c = EvaluationResult({"test/ndcg@5": 0.4}, {"test/ndcg@5": np.zeros(3)}, {"test": np.array([0, 2, 6])}, (5,))
    with pytest.raises(ValueError, match="different users"):
        mean_result([a, c])


def test_bad_compare_configs_exit_2(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"models": {"m": {"class_path": "recsys.models.implicit.ImplicitRecommender",
                                                     "init_args": {"objective": "bpr"}, "data": {"seed": 3}}}}))
    assert recsys_main(["compare", "-c", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "may only set batch_size, negatives" in capsys.readouterr().err
    path.write_text(yaml.safe_dump({"models": {"m": {"config": "configs/recsys/missing.yaml"}}}))
    assert recsys_main(["compare", "-c", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "configs/recsys/missing.yaml does not exist" in capsys.readouterr().err
