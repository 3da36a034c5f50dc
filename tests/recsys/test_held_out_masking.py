"""Held-out items the user already gave away are never ranked: test-time evaluation masks training
AND validation items, and `predict` leaves both out of its lists. Checked against a brute-force
reference over the checkpoint's full score matrix."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.cli import main as recsys_main
from recsys.data.datamodule import InteractionDataModule
from recsys.models.implicit import ImplicitRecommender

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORLD = ["--data.world_preset", "toy", "--data.false_positive_rate", "0.2", "--trainer.enable_progress_bar", "false"]
FAST = ["--trainer.max_epochs", "2", "--trainer.check_val_every_n_epoch", "1", "--model.init_args.engine",
        "autograd", "--model.init_args.embedding_dim", "8", "--model.init_args.lr", "0.01",
        "--model.init_args.eval_ks", "[10]", "--trainer.callbacks", "[]", "--data.batch_size", "512"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, InteractionDataModule]:
    root = tmp_path_factory.mktemp("bpr")
    common = ["-c", "configs/recsys/bpr.yaml", *WORLD, *FAST]
    assert recsys_main(["fit", *common, "--trainer.default_root_dir", str(root / "fit")]) == 0
    checkpoint = next((root / "fit" / "checkpoints").glob("*.ckpt"))
    assert recsys_main(["test", *common, "--ckpt_path", str(checkpoint), "--trainer.default_root_dir",
                        str(root / "test")]) == 0
    assert recsys_main(["predict", *common, "--ckpt_path", str(checkpoint), "--model.init_args.predict_k", "40",
                        "--trainer.default_root_dir", str(root / "predict")]) == 0
    return root, checkpoint, InteractionDataModule(world_preset="toy", false_positive_rate=0.2)


def _pairs(matrix: sp.spmatrix) -> set[tuple[int, int]]:
    rows, cols = sp.csr_matrix(matrix).nonzero()
    return set(zip(rows.tolist(), cols.tolist()))


def test_test_evaluation_excludes_training_and_validation_pairs(run):
    _, _, data = run
    truth, exclude = data.evaluation_inputs("test")
    # one list for every view, or (with hidden-likes or withheld views on the world) one list per view
    per_view = exclude if isinstance(exclude, dict) else {name: exclude for name in truth}
    assert "test" in per_view
    for view in ("test", "clean"):
        excluded = set().union(*(_pairs(part.matrix()) for part in per_view[view]))
        assert _pairs(data.split.valid.matrix()) <= excluded and _pairs(data.split.train.matrix()) <= excluded, view


def test_test_recall_equals_brute_force_with_train_and_valid_masked(run):
    root, checkpoint, data = run
    metrics = json.loads((root / "test" / "metrics.json").read_text())
    model = ImplicitRecommender.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=False)
    scores = model.scorer(np.arange(data.n_users)).numpy().astype(np.float64)
    seen = (data.split.train.matrix() + data.split.valid.matrix()).tocsr()
    rows, cols = seen.nonzero()
    scores[rows, cols] = -np.inf
    test = data.split.test.positives().matrix().tocsr()
    recalls = []
    for user in range(data.n_users):
        relevant = set(test[user].indices) - set(seen[user].indices)
        if relevant:
            top = np.argsort(-scores[user], kind="stable")[:10]
            recalls.append(len(relevant & set(top[np.isfinite(scores[user, top])].tolist())) / len(relevant))
    assert len(recalls) > 100
    assert metrics["test/recall@10"] == pytest.approx(np.mean(recalls), abs=1e-6)


def test_predictions_leave_out_training_and_validation_items(run):
    root, _, data = run
    predictions = pd.read_csv(root / "predict" / "predictions.csv", dtype={"user": str, "item": str})
    vocab = data.split.train.vocab
    listed = set(zip(predictions["user"], predictions["item"]))
    for part in (data.split.train, data.split.valid):
        given = set(zip(vocab.users[part.user], vocab.items[part.item]))
        assert not listed & given
    assert predictions.groupby("user").size().eq(40).all()
