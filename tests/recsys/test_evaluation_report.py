"""Reports: metrics.json keeps the flat keys, the table shows every split and K, plots are PNGs."""

from __future__ import annotations

import json

import numpy as np

from recsys.evaluation import EvaluationResult
from recsys.evaluation.report import markdown_table, plot_metric_vs_param, write_report


def _result(scale: float, ranking: str = "full") -> EvaluationResult:
    metrics = {f"{split}/{m}@{k}": scale * k / 100 for split in ("test", "clean")
               for m in ("recall", "ndcg") for k in (10, 20)}
    return EvaluationResult(metrics=metrics, per_user={}, users={"test": np.arange(3), "clean": np.arange(2)},
                            ks=(10, 20), counts={"test": {"users": 3}, "clean": {"users": 2}},
                            protocol={"ranking": ranking, "negatives": 99, "seed": 0})


def test_write_report_writes_flat_metrics_table_and_plot(tmp_path):
    result = _result(1.0)
    paths = write_report(result, tmp_path / "out", title="BPR")
    assert json.loads(paths["metrics"].read_text()) == result.metrics
    assert json.loads(paths["evaluation"].read_text())["counts"] == {"test": {"users": 3}, "clean": {"users": 2}}
    table = paths["table"].read_text()
    assert table.startswith("# BPR\n\nProtocol: full ranking over all items")
    assert "| test (3 users) | recall | 0.1000 | 0.2000 |" in table
    assert "| clean (2 users) | ndcg | 0.1000 | 0.2000 |" in table
    assert paths["plot"].read_bytes()[:4] == b"\x89PNG"


def test_several_models_share_one_table_and_sampled_runs_are_flagged():
    table = markdown_table({"bpr": _result(1.0), "nbpo": _result(2.0, ranking="sampled")}, metrics=("recall",))
    assert table.startswith("**Sampled ranking** (nbpo: 99 negatives, seed 0)")
    assert "| bpr | test (3 users) | recall | 0.1000 | 0.2000 |" in table
    assert "| nbpo | test (3 users) | recall | 0.2000 | 0.4000 |" in table


def test_metric_vs_parameter_plot_accepts_single_values_and_seeds(tmp_path):
    series = {"BPR": {0.0: [0.30, 0.31], 0.2: [0.25, 0.26], 0.4: [0.18, 0.2]},
              "NBPO": {0.0: 0.31, 0.2: 0.29, 0.4: 0.27}}
    path = plot_metric_vs_param(series, tmp_path / "ndcg_vs_noise.png", param="noise rate", metric="ndcg@20")
    assert path.read_bytes()[:4] == b"\x89PNG" and path.stat().st_size > 5000
