"""`python -m recsys evaluate` end to end on small files, and its errors for bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pandas as pd
import pytest

from recsys import cli
from recsys.errors import UserInputError
from recsys.evaluation.cli import main

RECS = "user,item,rank\nu1,a,1\nu1,b,2\nu1,c,3\nu2,c,1\nu2,d,2\nu3,a,1\n"
# u2's d is a negative; u4 has no list; u3 is not in the truth.
TRUTH = "user,item,label\nu1,b,1\nu1,e,1\nu2,a,1\nu2,d,0\nu4,a,1\n"
TRAIN = "user,item\nu1,a\nu2,b\n"


@pytest.fixture
def files(tmp_path):
    for name, text in (("recs.csv", RECS), ("truth.csv", TRUTH), ("train.csv", TRAIN)):
        (tmp_path / name).write_text(text)
    return tmp_path


def test_end_to_end_on_small_files_matches_hand_computation(files, capsys):
    out = files / "out"
    code = main(["--recs", str(files / "recs.csv"), "--truth", str(files / "truth.csv"),
                 "--train", str(files / "train.csv"), "--k", "1,2", "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    # Lists after removing train items: u1 [b, c] (a was a train item), u2 [c, d], u4 [] (no list).
    # Relevant: u1 {b, e}, u2 {a}, u4 {a}. Popularity (train counts): a 1, b 1.
    assert metrics["test/recall@1"] == pytest.approx((1 / 2) / 3)
    assert metrics["test/precision@2"] == pytest.approx((1 / 2) / 3)
    assert metrics["test/ndcg@2"] == pytest.approx((1 / (1 + 1 / math.log2(3))) / 3)
    assert metrics["test/mrr@2"] == pytest.approx(1 / 3)
    assert metrics["test/coverage@2"] == pytest.approx(3 / 5)  # b, c, d of a..e
    assert metrics["test/avg_popularity@1"] == pytest.approx((1 + 0 + 0) / 3)
    details = json.loads((out / "evaluation.json").read_text())
    assert details["counts"]["test"]["users_without_list"] == 1
    assert details["counts"]["test"]["excluded_items_removed"] == 1
    assert (out / "report.md").read_text().startswith("# Evaluation of recs.csv")
    assert (out / "metric_vs_k.png").read_bytes()[:4] == b"\x89PNG"
    assert "| test (3 users) | recall | 0.1667 |" in capsys.readouterr().out


def test_a_split_column_evaluates_each_split_and_parquet_reads_the_same(files):
    truth = pd.read_csv(files / "truth.csv", dtype=str)
    truth = pd.concat([truth.assign(split="test"), truth.assign(split="clean").iloc[:2]])
    truth.to_parquet(files / "truth.parquet")
    pd.read_csv(files / "recs.csv", dtype={"user": str, "item": str}).to_parquet(files / "recs.parquet")
    main(["--recs", str(files / "recs.parquet"), "--truth", str(files / "truth.parquet"),
          "--train", str(files / "train.csv"), "--out", str(files / "out")])
    metrics = json.loads((files / "out" / "metrics.json").read_text())
    assert {key.split("/")[0] for key in metrics} == {"test", "clean"}
    # The clean split holds only u1's two relevant items: u1's list [b, c] finds one of them.
    assert metrics["clean/recall@10"] == pytest.approx(1 / 2)


@pytest.mark.parametrize(("recs", "message"), [
    ("user,item\nu1,a\n", "recs.csv, field 'rank': needs a 'rank' or a 'score' column"),
    ("user,item,rank\nu1,a,1\nu1,b,x\n", "recs.csv, line 3, field 'rank': rank must be a non-negative integer, got 'x'"),
    ("user,item,rank\nu1,a,1\nu1,b,-2\n", "line 3, field 'rank'"),
    ("user,item,rank\nu1,a,1\nu1,b,1\n", "line 3, field 'rank': user 'u1' has rank 1 twice"),
    ("user,item,rank\nu1,a,1\nu1,a,2\n", "line 3, field 'item': user 'u1' lists item 'a' twice"),
    ("user,rank\nu1,1\n", "recs.csv, field 'item': missing column 'item'"),
    ("user,item,score\nu1,a,1.5\n,b,0.3\n", "line 3, field 'user': empty id"),
])
def test_bad_recommendation_files_name_file_line_and_field(files, recs, message):
    (files / "recs.csv").write_text(recs)
    with pytest.raises(UserInputError) as error:
        main(["--recs", str(files / "recs.csv"), "--truth", str(files / "truth.csv"), "--out", str(files / "o")])
    assert message in str(error.value)


def test_bad_truth_and_arguments_are_clear_errors(files, capsys):
    (files / "bad_truth.csv").write_text("user,item,label\nu1,a,1\nu2,b,maybe\n")
    args = ["evaluate", "--recs", str(files / "recs.csv"), "--out", str(files / "o")]
    assert cli.main([*args, "--truth", str(files / "bad_truth.csv")]) == 2
    assert "bad_truth.csv, line 3, field 'label': label must be 0 or 1" in capsys.readouterr().err
    assert cli.main([*args, "--truth", str(files / "missing.csv")]) == 2
    assert "missing.csv: no such file" in capsys.readouterr().err
    assert cli.main([*args, "--truth", str(files / "truth.csv"), "--k", "10,x"]) == 2
    assert "--k must be comma-separated positive integers" in capsys.readouterr().err


def test_help_explains_the_file_formats(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for words in ("--recs", "rank (smaller is better", "label 1", "split column", "--train", "metrics.json"):
        assert words in text


def test_help_starts_without_loading_torch():
    code = "import sys; from recsys.evaluation import cli; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr
