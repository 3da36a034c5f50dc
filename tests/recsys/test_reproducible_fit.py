"""The default fit reproduces bit for bit: same command twice, and any thread count of the compiled engine.

Runs the BPR recipes as shipped (compiled engine, its default threads), shortened to a few epochs,
on the toy preference world and on 150 users of the shared MovieLens-100k file (RecBole's format).
"""

import json
from pathlib import Path

import pytest

from recsys.cli import main as recsys_main

ML100K = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ml-100k" / "ml-100k.inter"
SHORT = ["--trainer.max_epochs", "3", "--trainer.check_val_every_n_epoch", "1", "--trainer.enable_progress_bar", "false"]


def _fit(root: Path, *args: str) -> dict:
    assert recsys_main(["fit", *args, "--trainer.default_root_dir", str(root), *SHORT]) == 0
    metrics = json.loads((root / "metrics.json").read_text())
    selection = metrics.pop("selection")
    assert len(selection["curve"]) == 3
    return metrics


def _assert_identical_runs(tmp_path: Path, threads: int, *args: str) -> None:
    first = _fit(tmp_path / "a", *args)
    assert first["test/ndcg@10"] > 0.0
    assert _fit(tmp_path / "b", *args) == first  # the default command, twice
    # the threads never share a row, so their number cannot change a number
    assert _fit(tmp_path / "threads", *args, "--model.init_args.num_threads", str(threads)) == first


def test_the_default_fit_on_the_world_reproduces_bit_for_bit(tmp_path):
    _assert_identical_runs(tmp_path, 1, "-c", "configs/recsys/bpr.yaml", "--data.world_preset", "toy")


@pytest.mark.skipif(not ML100K.is_file(), reason=f"the shared MovieLens-100k file is not at {ML100K}")
def test_the_movielens_recipe_on_real_data_reproduces_bit_for_bit(tmp_path):
    lines = ML100K.read_text().splitlines()
    users = list(dict.fromkeys(line.split("\t")[0] for line in lines[1:]))[:150]
    keep = set(users)
    sliced = tmp_path / "ml-100k-150.inter"
    sliced.write_text("\n".join([lines[0], *(line for line in lines[1:] if line.split("\t")[0] in keep)]) + "\n")
    _assert_identical_runs(tmp_path, 3, "-c", "configs/recsys/bpr_movielens.yaml", "--data.path", str(sliced),
                           "--data.format", "recbole")
