"""`recsys fit --seeds`: one run per seed under <root>/seed<k>, mean ± sd and per-seed values at the root."""

import json

import numpy as np
import pytest

from recsys.cli import main as recsys_main
from recsys.training.seeds import parse_seeds, pop_seeds

FAST = ["-c", "configs/recsys/bpr.yaml", "--data.world_preset", "toy", "--trainer.max_epochs", "2",
        "--trainer.check_val_every_n_epoch", "1", "--trainer.enable_progress_bar", "false",
        "--model.init_args.embedding_dim", "8"]


def test_fit_over_seeds_writes_each_run_and_their_mean_and_sd(tmp_path, capsys):
    assert recsys_main(["fit", *FAST, "--trainer.default_root_dir", str(tmp_path), "--seeds", "0,3"]) == 0
    summary = json.loads((tmp_path / "metrics.json").read_text())
    runs = [json.loads((tmp_path / f"seed{s}" / "metrics.json").read_text()) for s in (0, 3)]
    assert summary["seeds"] == [0, 3]
    assert runs[0]["test/ndcg@10"] != runs[1]["test/ndcg@10"]  # the seed changed the run
    for key in ("test/ndcg@10", "valid/recall@20", "clean/ndcg@10"):
        values = [r[key] for r in runs]
        assert summary["per_seed"][key] == values
        assert summary[key] == pytest.approx(np.mean(values))
        assert summary["sd"][key] == pytest.approx(np.std(values, ddof=1))
    assert summary["selection"]["best_epoch"] == [r["selection"]["best_epoch"] for r in runs]
    assert summary["selection"]["stopped"] == ["max_epochs", "max_epochs"]
    assert len(list((tmp_path / "seed3" / "checkpoints").glob("*.ckpt"))) == 1
    out = capsys.readouterr().out
    assert "| test/ndcg@10 |" in out and "±" in out


def test_seed_lists_parse_and_bad_ones_get_one_line(capsys):
    assert pop_seeds(["fit", "--seeds", "0,1,2", "-c", "x"]) == (["fit", "-c", "x"], [0, 1, 2])
    assert pop_seeds(["fit", "--seeds=[4, 5]"]) == (["fit"], [4, 5])
    assert pop_seeds(["fit", "-c", "x"]) == (["fit", "-c", "x"], None)
    assert parse_seeds("7") == [7]
    assert recsys_main(["fit", *FAST, "--seeds", "0,x"]) == 2
    assert recsys_main(["fit", *FAST, "--seeds", "1,1"]) == 2
    assert recsys_main(["test", *FAST, "--seeds", "1"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 3 and "--seeds" in errors[0] and "each seed once" in errors[1] and "fit" in errors[2]
