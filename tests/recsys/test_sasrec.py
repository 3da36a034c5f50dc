"""SASRec learns a planted sequential pattern that popularity cannot see, under the full-ranking evaluator."""

import json

import numpy as np
import pytest
import torch

from recsys import cli
from recsys.data.datamodule import InteractionDataModule
from recsys.data.sequence_windows import NextItemWindows, last_windows, user_sequences
from recsys.evaluation import evaluate

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _planted(directory, n_users=300, n_items=60, seed=0):
    """Every user walks a fixed cycle of the items from a random start: the next item follows from the last one,
    and every item is about equally popular."""
    rng = np.random.default_rng(seed)
    cycle = rng.permutation(n_items) + 1
    directory.mkdir()
    lines = []
    for user in range(1, n_users + 1):
        start, length = rng.integers(n_items), rng.integers(5, 12)
        lines.append(" ".join(map(str, [user, *(cycle[(start + j) % n_items] for j in range(length))])))
    (directory / "sequences.txt").write_text("\n".join(lines) + "\n")
    return directory


def test_windows_follow_time_order_and_stage():
    from recsys.data.interactions import IdVocab, InteractionData

    vocab = IdVocab.range(2, 5)
    train = InteractionData(user=[0, 0, 0, 1], item=[3, 1, 2, 4], timestamp=[5, 1, 3, 0], vocab=vocab)
    valid = InteractionData(user=[0], item=[0], timestamp=[9], vocab=vocab)
    sequences = user_sequences([train, valid], 2)
    assert [s.tolist() for s in sequences] == [[1, 2, 3, 0], [4]]
    np.testing.assert_array_equal(last_windows(sequences, 3), [[3, 4, 1], [0, 0, 5]])
    windows = NextItemWindows(sequences, 4)
    assert len(windows) == 1  # user 1 has a single item: nothing to predict
    np.testing.assert_array_equal(windows[0]["input"], [0, 2, 3, 4])
    np.testing.assert_array_equal(windows[0]["target"], [0, 3, 4, 1])


def test_sasrec_learns_a_planted_sequence_far_above_popularity(tmp_path):
    data = _planted(tmp_path / "cycle")
    root = tmp_path / "run"
    code = cli.main(["fit", "-c", "configs/recsys/sasrec.yaml", "--data.path", str(data),
                     "--trainer.max_epochs", "15", "--trainer.default_root_dir", str(root),
                     "--trainer.enable_progress_bar", "false", "--model.init_args.dropout", "0.1"])
    assert code == 0
    metrics = json.loads((root / "metrics.json").read_text())

    module = InteractionDataModule(path=str(data), split="loo")
    # Validation reads only training items; test also reads the validation item (last in its window).
    valid = module.split.valid
    before_valid, before_test = module.history_windows("valid", 50), module.history_windows("test", 50)
    assert not (before_valid[valid.user] == (valid.item + 1)[:, None]).any()
    np.testing.assert_array_equal(before_test[valid.user, -1], valid.item + 1)
    from recsys.models.sasrec import SASRec

    model = SASRec(n_users=module.n_users, n_items=module.n_items)
    model._datamodule = lambda: module  # the model reads its histories through its trainer's DataModule
    users = torch.as_tensor(valid.user)
    for stage, expected in (("valid", before_valid), ("test", before_test), ("valid", before_valid)):
        model._stage = stage
        read = model.history(users).numpy()
        np.testing.assert_array_equal(read, expected[valid.user][:, -read.shape[1]:])
    counts = module.split.train.item_counts().astype(np.float32)
    truth, exclude = module.evaluation_inputs("test")
    popularity = evaluate(lambda users: np.tile(counts, (len(users), 1)), truth, exclude, ks=(10,))
    # 60 items, 10 recommended: popularity finds the next item about 1 time in 6.
    assert popularity.metrics["test/recall@10"] < 0.3
    assert metrics["test/recall@10"] > 0.9 and metrics["valid/recall@10"] > 0.9
