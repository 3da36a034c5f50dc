"""`python -m bench reproduce`: the quick path end to end on slices of the shared files, and the docs' table
generated from the committed JSON."""

from __future__ import annotations

import json

import pytest

from bench import bench_reproduce

SHARED = bench_reproduce.DEFAULT_DATA


def test_the_docs_table_is_the_committed_results_rendered():
    rows = json.loads(bench_reproduce.RESULTS.read_text())["rows"]
    docs = bench_reproduce.DOCS.read_text()
    shown = docs.split(bench_reproduce.START, 1)[1].split(bench_reproduce.END, 1)[0]
    assert shown.strip() == bench_reproduce.table(rows).strip(), \
        "docs/benchmarks.md's table drifted from bench/results/reproduce.json: run python -m bench reproduce --table-only"
    for published in ("0.2466", "0.0712", "0.0522", "0.0400", "0.0368"):
        assert f"| {published} |" in shown


@pytest.mark.skipif(not (SHARED / "amazon-toys" / "sequences.txt").is_file(), reason="needs ../shared/data")
def test_quick_rows_run_the_real_commands_and_write_only_under_artifacts(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench_reproduce, "ROOT", tmp_path)
    docs_before = bench_reproduce.DOCS.read_text()
    results_before = bench_reproduce.RESULTS.read_text()
    bench_reproduce.main(["--quick", "--only", "bpr-ml100k,tiger-cpu-toys-svd", "--threads", "1"])
    rows = json.loads((tmp_path / "artifacts" / "reproduce-quick" / "reproduce.json").read_text())["rows"]
    assert set(rows) == {"bpr-ml100k", "tiger-cpu-toys-svd"}
    for row in rows.values():
        assert row["exit"] == 0 and row["quick"] is True
        assert set(row["metrics"]) >= {"recall@10", "ndcg@10"}
        assert all(0.0 <= value <= 1.0 for value in row["metrics"].values())
        assert str(tmp_path) not in row["command"]  # recorded as typed at the repository root
    assert "SVD" in rows["tiger-cpu-toys-svd"]["semantic_ids"]["source"]
    assert "--model.encoder_layers 2" in rows["tiger-cpu-toys-svd"]["command"]  # the CPU size, then shrunk
    assert "| amazon-toys | ours: tiger-cpu-toys-svd |" in capsys.readouterr().out
    # a quick run never touches what the docs quote
    assert bench_reproduce.DOCS.read_text() == docs_before and bench_reproduce.RESULTS.read_text() == results_before


def test_unknown_rows_are_refused_by_name():
    with pytest.raises(SystemExit, match="tiger-nowhere"):
        bench_reproduce.main(["--only", "tiger-nowhere"])
