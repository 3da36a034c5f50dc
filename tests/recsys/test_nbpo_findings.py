"""docs/results/nbpo_*.json from a compare metrics.json, and the docs tables rendered from it."""

import json

import pytest

from recsys.experiments import nbpo_findings


def _test(difference: float, p: float) -> dict:
    return {"over_users": {"n": 100, "mean_a": 0.2, "mean_b": 0.2 - difference, "mean_difference": difference,
                           "t_statistic": 1.0, "p_value": p, "ci_low": difference - 0.01, "ci_high": difference + 0.01,
                           "confidence": 0.95},
            "over_seeds": {"p_value": 0.3, "mean_difference": difference}}


def _point(nbpo: list[float], bpr_test: dict, bpo_test: dict, auc: list[float]) -> dict:
    keys = ("hidden/ndcg@20", "test/ndcg@20", "hidden/recall@20")
    return {
        "per_seed": {"nbpo": {k: nbpo for k in keys}, "bpr": {k: [0.1, 0.1] for k in keys},
                     "bpo": {k: [0.1, 0.1] for k in keys}},
        "paired_tests": {"reference": "nbpo", "tests": {"bpr": {k: bpr_test for k in keys},
                                                        "bpo": {k: bpo_test for k in keys}}},
        "diagnostics": {"nbpo": {"hidden_flip_auc": auc, "rho_hidden": [0.3, 0.3], "rho_hidden_contrast": [0.1, 0.1]},
                        "bpr": {"best_epoch": [3.0, 4.0]}, "bpo": {}},
    }


@pytest.fixture
def metrics(tmp_path):
    payload = {
        "sweep": {"parameter": "missing_positive_rate", "values": [0.0, 0.2]},
        "points": {"missing_positive_rate=0.0": _point([0.2, 0.22], _test(0.01, 0.2), _test(0.02, 0.01), []),
                   "missing_positive_rate=0.2": _point([0.2, 0.22], _test(0.02, 0.001), _test(-0.01, 0.02),
                                                       [0.7, 0.8])},
        "config": {"models": {"nbpo": {}, "bpr": {}, "bpo": {}}, "seeds": [0, 1],
                   "data": {"world_preset": "toy", "false_positive_rate": 0.0}, "trainer": {}, "monitor": "valid/ndcg@20",
                   "ks": [20]},
    }
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(payload))
    return path


def test_distill_records_per_seed_values_verdicts_and_whether_each_claim_holds(metrics):
    finding = nbpo_findings.distill("hidden_likes", metrics)
    point = finding["points"]["missing_positive_rate=0.2"]
    assert point["metrics"]["nbpo"]["hidden/ndcg@20"] == {"mean": pytest.approx(0.21), "sd": pytest.approx(0.0141421356),
                                                         "per_seed": [0.2, 0.22]}
    assert point["paired_tests"]["bpr"]["hidden/ndcg@20"]["verdict"] == "ahead"
    assert point["paired_tests"]["bpo"]["hidden/ndcg@20"]["verdict"] == "behind"
    assert finding["points"]["missing_positive_rate=0.0"]["paired_tests"]["bpr"]["test/ndcg@20"]["verdict"] == "tied"
    assert point["data"]["users"] == 200 and "hidden" in point["data"]["test_views_rows"]  # the toy world, rebuilt
    ndcg, _, rho, authors = finding["claims"]
    assert authors["detail"]["missing_positive_rate=0.2"] == {"nbpo_authors": None} and not authors["holds"]
    assert ndcg["covered_points"] == ["missing_positive_rate=0.2"]  # rate 0 has no hidden likes to find
    assert ndcg["detail"]["missing_positive_rate=0.2"] == {"bpr": "ahead", "bpo": "behind"}
    assert not ndcg["holds"] and rho["holds"] and not finding["holds"]
    assert "python -m recsys compare -c configs/recsys/compare_hidden.yaml" in finding["command"]


def test_render_rewrites_only_the_marked_block(metrics, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "nbpo_hidden_likes.json").write_text(json.dumps(nbpo_findings.distill("hidden_likes", metrics)))
    docs = tmp_path / "results.md"
    docs.write_text("intro\n<!-- nbpo:hidden_likes -->\nold table\n<!-- /nbpo:hidden_likes -->\nafter\n")
    assert nbpo_findings.render(docs, results) == ["hidden_likes"]
    text = docs.read_text()
    assert text.startswith("intro\n<!-- nbpo:hidden_likes -->\n**hidden/ndcg@20**") and text.endswith("after\n")
    assert "old table" not in text
    assert "| 0.2 | 0.2100 ± 0.0141 | 0.1000 ± 0.0000 | 0.1000 ± 0.0000 |" in text
    assert "| 0.2 | bpo | hidden/ndcg@20 | -0.0100 [-0.0200, +0.0000] | 0.02 | 0.3 | behind |" in text
    assert "| 0.2 | nbpo | hidden | 0.700, 0.800 | 0.3000 | 0.1000 |" in text
    assert "missing_positive_rate=0.2: nbpo vs bpr: ahead, nbpo vs bpo: behind" in text
    first = text
    nbpo_findings.render(docs, results)
    assert docs.read_text() == first  # rendering again changes nothing
