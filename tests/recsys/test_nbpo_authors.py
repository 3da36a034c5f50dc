"""NBPO with the authors' settings: full-matrix L2 and the config that names their choices."""

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import yaml

from recsys.data.datamodule import InteractionDataModule
from recsys.errors import UserInputError
from recsys.models.implicit import ImplicitRecommender

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _train_one_epoch(datamodule, **init_args) -> ImplicitRecommender:
    datamodule.configure_sampling(sample_seed=5)
    torch.manual_seed(0)
    model = ImplicitRecommender(datamodule.n_users, datamodule.n_items, objective="nbpo", embedding_dim=8,
                                flip_dim=8, engine="compiled", num_threads=1, lr=0.1, eval_ks=[10], **init_args)
    trainer = pl.Trainer(max_epochs=1, limit_val_batches=0, enable_progress_bar=False, enable_model_summary=False,
                         logger=False, enable_checkpointing=False, accelerator="cpu")
    trainer.fit(model, datamodule=datamodule)
    return model


def test_full_matrix_l2_shrinks_every_row_after_unregularized_steps():
    """Fewer positives than full_matrix_batch: one batch, so one shrink after the epoch's steps."""
    datamodule = InteractionDataModule(world_preset="toy", false_positive_rate=0.0)
    free = _train_one_epoch(datamodule, l2=0.0, flip_l2=0.0)
    full = _train_one_epoch(datamodule, l2=2.0, flip_l2=3.0, l2_mode="full_matrix")
    for mine, reference, factor in ((full.preference, free.preference, 1 - 0.1 * 2.0),
                                    (full.flip, free.flip, 1 - 0.1 * 3.0)):
        for name in ("user_weight", "item_weight"):
            np.testing.assert_allclose(getattr(mine, name).detach().numpy(),
                                       factor * getattr(reference, name).detach().numpy(), rtol=1e-6, atol=1e-7)
    # per triple, the same weight touches only some rows: the tables differ from the full-matrix ones
    per_triple = _train_one_epoch(datamodule, l2=2.0, flip_l2=3.0)
    assert not np.allclose(per_triple.preference.user_weight.detach().numpy(),
                           full.preference.user_weight.detach().numpy())


def test_full_matrix_l2_steps_once_per_batch_of_positives(monkeypatch):
    datamodule = InteractionDataModule(world_preset="toy", false_positive_rate=0.0)
    shrinks = []
    original = ImplicitRecommender._shrink_full_matrices
    monkeypatch.setattr(ImplicitRecommender, "_shrink_full_matrices", lambda self: (shrinks.append(1), original(self)))
    model = _train_one_epoch(datamodule, l2=0.5, flip_l2=1.0, l2_mode="full_matrix", full_matrix_batch=1000)
    n_positives = len(datamodule.train_users)
    assert len(model._kernels) == len(shrinks) == -(-n_positives // 1000) > 1
    assert sum(len(k.pairs) for k in model._kernels) == n_positives  # each positive in exactly one batch


def test_full_matrix_l2_refuses_a_step_that_would_flip_the_factors():
    datamodule = InteractionDataModule(world_preset="toy", false_positive_rate=0.0)
    with pytest.raises(UserInputError, match="lr x l2"):
        _train_one_epoch(datamodule, l2=20.0, l2_mode="full_matrix")
    with pytest.raises(UserInputError, match="l2_mode"):
        ImplicitRecommender(10, 10, l2_mode="rows")


def test_the_authors_config_holds_their_settings():
    config = yaml.safe_load(open("configs/recsys/nbpo_authors.yaml"))
    args = config["model"]["init_args"]
    assert config["data"]["negatives"] == 4
    assert args["flip_dim"] == args["embedding_dim"]
    assert args["l2_mode"] == "full_matrix"
    assert (args["lr_scheduler"], args["lr_gamma"]) == ("exponential", 0.99)
    ImplicitRecommender(10, 10, **args)  # every key is an argument the model takes
