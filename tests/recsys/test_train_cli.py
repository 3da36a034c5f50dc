"""`python -m recsys fit|validate|test|predict`: run layout, metrics.json, the checkpoint block, bad input."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from recsys.cli import main as recsys_main
from recsys.data.datamodule import InteractionDataModule

WORLD = ["--data.world_preset", "toy", "--data.false_positive_rate", "0.2", "--trainer.enable_progress_bar", "false"]
FAST = ["--trainer.max_epochs", "2", "--trainer.check_val_every_n_epoch", "1",
        "--model.init_args.engine", "autograd", "--model.init_args.embedding_dim", "8",
        "--model.init_args.lr", "0.01", "--model.init_args.eval_ks", "[5, 10]",
        "--trainer.callbacks", "[]", "--data.batch_size", "512"]


def _fit(root: Path, config: str, *extra: str) -> int:
    return recsys_main(["fit", "-c", config, "--trainer.default_root_dir", str(root), *WORLD, *extra])


@pytest.fixture(scope="module")
def nbpo_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nbpo")
    assert _fit(root, "configs/recsys/nbpo.yaml", *FAST) == 0
    return root


def test_fit_writes_metrics_checkpoint_and_logs_under_the_root(nbpo_run):
    metrics = json.loads((nbpo_run / "metrics.json").read_text())
    for key in ("valid/ndcg@10", "test/ndcg@10", "test/recall@5", "clean/ndcg@10", "valid_clean/recall@10"):
        assert key in metrics and 0.0 <= metrics[key] <= 1.0
    selection = metrics.pop("selection")
    assert all("/" in key and "@" in key for key in metrics)
    assert selection["monitor"] == "valid/ndcg@10" and selection["stopped"] == "max_epochs"  # @max(eval_ks)
    assert list(selection["curve"]) == ["0", "1"] and selection["best_epoch"] in (0, 1)
    checkpoints = list((nbpo_run / "checkpoints").glob("*.ckpt"))
    assert len(checkpoints) == 1
    assert list((nbpo_run / "logs").rglob("metrics.csv")) and list((nbpo_run / "logs").rglob("config.yaml"))

    checkpoint = torch.load(checkpoints[0], map_location="cpu", weights_only=False)
    block = checkpoint["prefengine"]
    data = InteractionDataModule(world_preset="toy", false_positive_rate=0.2)
    vocab = data.split.train.vocab
    assert block["model_kind"] == "implicit-nbpo"
    assert block["model_class"] == "recsys.models.implicit.ImplicitRecommender"
    assert block["vocab_users"] == list(vocab.users) and block["vocab_items"] == list(vocab.items)
    assert block["vocab_digest"] == vocab.digest()
    assert block["item_popularity"] == data.split.train.item_counts().tolist()
    assert len(block["catalog"]["title"]) == len(block["catalog"]["category"]) == vocab.n_items
    csr = data.split.train.matrix()
    assert block["train_items_by_user"]["indptr"].tolist() == csr.indptr.tolist()
    assert block["train_items_by_user"]["indices"].tolist() == csr.indices.tolist()
    # the best checkpoint carries its own validation and test metrics for export
    assert block["metrics"]["test/ndcg@10"] == pytest.approx(metrics["test/ndcg@10"])


def test_test_and_predict_from_the_checkpoint(nbpo_run, tmp_path):
    checkpoint = next((nbpo_run / "checkpoints").glob("*.ckpt"))
    fitted = json.loads((nbpo_run / "metrics.json").read_text())
    common = ["-c", "configs/recsys/nbpo.yaml", "--ckpt_path", str(checkpoint), *WORLD, *FAST]
    assert recsys_main(["test", *common, "--trainer.default_root_dir", str(tmp_path / "t")]) == 0
    tested = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert tested["test/ndcg@10"] == pytest.approx(fitted["test/ndcg@10"], abs=1e-6)

    assert recsys_main(["predict", *common, "--model.init_args.predict_k", "7",
                        "--trainer.default_root_dir", str(tmp_path / "p")]) == 0
    predictions = pd.read_csv(tmp_path / "p" / "predictions.csv", dtype={"user": str, "item": str})
    assert list(predictions.columns) == ["user", "rank", "item", "score"]
    assert predictions.groupby("user").size().eq(7).all() and predictions["user"].nunique() == 200
    data = InteractionDataModule(world_preset="toy", false_positive_rate=0.2)
    seen = set(zip(data.split.train.vocab.users[data.split.train.user], data.split.train.vocab.items[data.split.train.item]))
    assert not any((u, i) in seen for u, i in zip(predictions["user"], predictions["item"]))
    ranks_in_order = predictions.groupby("user")["score"].apply(lambda s: bool(np.all(np.diff(s.to_numpy()) <= 0)))
    assert ranks_in_order.all()


def _one_error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("flags, expected", [
    (["--model.init_args.objective", "warp"], "objective"),
    (["--data.negatives", "0"], "negatives"),
    (["--data.path", "/no/such/ratings.dat"], "/no/such/ratings.dat does not exist"),
])
def test_bad_configs_exit_2_with_one_clear_line(flags, expected, capsys, tmp_path):
    assert _fit(tmp_path, "configs/recsys/bpr.yaml", *flags) == 2
    assert expected in _one_error_line(capsys)


def test_a_checkpoint_of_another_model_is_refused(nbpo_run, capsys, tmp_path):
    checkpoint = next((nbpo_run / "checkpoints").glob("*.ckpt"))
    code = recsys_main(["test", "-c", "configs/recsys/popularity.yaml", "--ckpt_path", str(checkpoint),
                        "--trainer.default_root_dir", str(tmp_path), *WORLD])
    assert code == 2
    line = _one_error_line(capsys)
    assert "'implicit-nbpo'" in line and "'popularity'" in line
    assert recsys_main(["test", "-c", "configs/recsys/bpr.yaml", "--ckpt_path", str(tmp_path / "nope.ckpt"),
                        *WORLD]) == 2
    assert "is not a file" in _one_error_line(capsys)
