"""Two processes (gloo, CPU): data-parallel training, evaluation across ranks, sharded TorchRec tables.

One `torch.multiprocessing.spawn` of two workers runs everything (starting processes dominates
the cost); each worker writes what it saw and the parent compares it with a single process:

- data parallel: each rank's batches are its own slice of the single-process batch of twice the
  size, the DDP-trained weights equal a single process stepping on the union batches, and the
  metrics gathered across ranks equal a single-process evaluation of the same weights;
- sharded (table-wise, column-wise): losses and embeddings equal the unsharded two-process run,
  and the checkpoint holds plain tensors that load in a single process;
- row-wise sharding on gloo is refused with a message that says why.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.multiprocessing as mp

from recsys.data.datamodule import InteractionDataModule, TripleBatches
from recsys.data.ranks import RankShare
from recsys.evaluation import evaluate
from recsys.models.implicit import ImplicitRecommender

WORLD = 2
BATCH = 256  # per process
STEPS = 3
DATA = dict(world_preset="toy", false_positive_rate=0.2, batch_size=BATCH)
MODEL = dict(objective="nbpo", embedding_dim=8, flip_dim=4, engine="autograd", optimizer="adam", lr=0.01,
             l2=0.01, flip_l2=0.001, eval_ks=[5, 10])


PEOPLE = dict(world_preset="toy", batch_size=BATCH)


def _ranker(datamodule, **extra):
    """A personality ranker without dropout, so every process draws the same (no) randomness."""
    from recsys.models.personality import PersonalityRecommender

    pl.seed_everything(0, verbose=False)
    return PersonalityRecommender(datamodule.n_users, datamodule.n_items, embedding_dim=4, hidden=[8], dropout=0.0,
                                  user_dropout=0.0, eval_ks=[5], **extra)


def _model(datamodule: InteractionDataModule, **extra) -> ImplicitRecommender:
    pl.seed_everything(0, verbose=False)
    return ImplicitRecommender(datamodule.n_users, datamodule.n_items, **{**MODEL, **extra})


class _Steps(pl.Callback):
    """Each training step's batch and loss, on this rank."""

    def __init__(self):
        self.losses: list[float] = []
        self.batches: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))
        self.batches.append({k: v.clone() for k, v in batch.items()})


def _trainer(callbacks=()) -> pl.Trainer:
    from recsys.training.distributed import TorchRecDDPStrategy

    return pl.Trainer(accelerator="cpu", devices=WORLD, strategy=TorchRecDDPStrategy(), max_steps=STEPS,
                      limit_val_batches=0, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks))


def _worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    # Lightning joins processes started outside it when LOCAL_RANK and the rendezvous are set.
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOCAL_RANK=str(rank), NODE_RANK="0",
                      WORLD_SIZE=str(WORLD))
    import warnings

    warnings.filterwarnings("ignore")
    from recsys.errors import UserInputError
    from recsys.models.sharding import merge_row_updates, shard_collections

    datamodule = InteractionDataModule(**DATA)
    result: dict = {}
    steps = _Steps()
    model = _model(datamodule)
    trainer = _trainer([steps])
    trainer.fit(model, datamodule=datamodule)
    result["batches"] = steps.batches
    result["dp"] = {"losses": steps.losses, "users": model.user_embeddings(), "items": model.item_embeddings()}
    trainer.test(model, datamodule=datamodule, verbose=False)
    result["dp"]["test"] = {k: float(v) for k, v in trainer.callback_metrics.items() if "/" in k}

    for sharding in ("table_wise", "column_wise"):
        steps = _Steps()
        model = _model(datamodule, sharding=sharding)
        trainer = _trainer([steps])
        trainer.fit(model, datamodule=datamodule)
        result[sharding] = {"losses": steps.losses, "users": model.user_embeddings(),
                            "items": model.item_embeddings(),
                            "local": {n: tuple(p.shape) for n, p in model.named_parameters() if p.numel()}}
        path = Path(out) / f"{sharding}.ckpt"
        trainer.save_checkpoint(path)  # every rank takes part in gathering the shards
    model = _model(datamodule, objective="bpr", engine="compiled", num_threads=1, lr=0.05)
    trainer = _trainer()
    trainer.fit(model, datamodule=datamodule)  # 3 kernel epochs, each over this rank's users' positives
    result["compiled"] = {"pairs": model._kernels[0].pairs.copy(), "users": model.user_embeddings(),
                          "items": model.item_embeddings()}
    table = torch.zeros(4, 2)
    start = table.clone()
    table[[0, 2] if rank == 0 else [1, 2]] += torch.tensor([[1.0], [2.0]]) * (1 + 2 * rank)
    merge_row_updates(table, start)
    result["merged"] = table
    # the personality ranker: sharded field tables (column-wise) beside DDP-replicated MLP and heads
    from recsys.data.personality_datamodule import PersonalityDataModule

    people = PersonalityDataModule(**PEOPLE)
    steps = _Steps()
    ranker = _ranker(people, sharding="column_wise")
    trainer = _trainer([steps])
    trainer.fit(ranker, datamodule=people)
    trainer.save_checkpoint(Path(out) / "personality.ckpt")
    result["personality"] = {"losses": steps.losses, "batches": steps.batches,
                             "scores": ranker.score_users(torch.arange(8))}
    try:
        shard_collections([model.preference.collections()[0]], "row_wise")
    except UserInputError as error:
        result["row_wise"] = str(error)
    torch.save(result, Path(out) / f"rank{rank}.pt")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("distributed")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return out, [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.fixture(scope="module")
def datamodule() -> InteractionDataModule:
    return InteractionDataModule(**DATA)


def _pairs(batch: dict) -> list[tuple[int, int]]:
    return sorted(zip(batch["users"].tolist(), batch["positives"].tolist()))


def test_each_rank_takes_its_own_slice_of_the_single_process_batch(runs, datamodule):
    _, ranks = runs
    single = TripleBatches(datamodule.train_users, datamodule.train_items, datamodule.sampler, BATCH * WORLD,
                           datamodule.negatives, datamodule.seed, lambda: 0)
    shares = [TripleBatches(datamodule.train_users, datamodule.train_items, datamodule.sampler, BATCH,
                            datamodule.negatives, datamodule.seed, lambda: 0, RankShare(len(single.users), BATCH, r, WORLD))
              for r in range(WORLD)]
    assert len(shares[0]) == len(shares[1]) == len(single)
    for step in range(len(single)):
        parts = [share[step] for share in shares]
        assert len(parts[0]["users"]) == len(parts[1]["users"])  # equal shares: DDP's mean is the union's mean
        union = _pairs({k: torch.cat([p[k] for p in parts]) for k in ("users", "positives")})
        whole = _pairs(single[step])
        assert set(union) <= set(whole) and len(whole) - len(union) < WORLD
        assert not (set(_pairs(parts[0])) & set(_pairs(parts[1])))  # no row trained twice
        assert not torch.equal(parts[0]["negatives"][:10], parts[1]["negatives"][:10])  # own negative draws
    for rank in range(WORLD):  # what the ranks trained on inside Lightning is that share
        for step in range(STEPS):
            assert _pairs(ranks[rank]["batches"][step]) == _pairs(shares[rank][step])


def test_ddp_weights_equal_one_process_stepping_on_the_union_batches(runs, datamodule):
    _, ranks = runs
    model = _model(datamodule)
    optimizer = model.configure_optimizers()
    for step in range(STEPS):
        union = {k: torch.cat([ranks[r]["batches"][step][k] for r in range(WORLD)]) for k in ("users", "positives",
                                                                                                "negatives")}
        optimizer.zero_grad()
        loss = model.loss(union["users"], union["positives"], union["negatives"])["loss"]
        loss.backward()
        optimizer.step()
        mean_of_ranks = np.mean([ranks[r]["dp"]["losses"][step] for r in range(WORLD)])
        # equal shares: the mean of the ranks' losses is the union batch's loss, step after step
        assert mean_of_ranks == pytest.approx(float(loss.detach()), rel=1e-5)
    for rank in range(WORLD):
        torch.testing.assert_close(ranks[rank]["dp"]["users"], model.user_embeddings(), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ranks[rank]["dp"]["items"], model.item_embeddings(), rtol=1e-4, atol=1e-5)


def test_metrics_gathered_across_ranks_equal_one_process(runs, datamodule):
    _, ranks = runs
    model = _model(datamodule)
    with torch.no_grad():
        model.preference.user_weight.copy_(ranks[0]["dp"]["users"])
        model.preference.item_weight.copy_(ranks[0]["dp"]["items"])
    truth, exclude = datamodule.evaluation_inputs("test")
    single = evaluate(model.scorer, truth=truth, exclude=exclude, ks=MODEL["eval_ks"]).metrics
    for rank in range(WORLD):
        logged = ranks[rank]["dp"]["test"]
        assert set(logged) == {k for k, v in single.items() if np.isfinite(v)}
        for key, value in logged.items():
            assert value == pytest.approx(single[key], abs=1e-6), key


@pytest.mark.parametrize("sharding", ["table_wise", "column_wise"])
def test_sharded_tables_train_like_the_unsharded_run(runs, sharding):
    _, ranks = runs
    for rank in range(WORLD):
        sharded, plain = ranks[rank][sharding], ranks[rank]["dp"]
        np.testing.assert_allclose(sharded["losses"], plain["losses"], rtol=1e-5)
        torch.testing.assert_close(sharded["users"], plain["users"], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(sharded["items"], plain["items"], rtol=1e-4, atol=1e-5)
    local = [ranks[r][sharding]["local"] for r in range(WORLD)]
    if sharding == "table_wise":  # 4 tables on 2 ranks: each rank holds whole tables, but not all of them
        assert all(0 < len(held) < 4 for held in local) and not set(local[0]) & set(local[1])
    else:  # each rank holds 4 of the 8 columns of the user and item preference tables
        for held in local:
            slices = {shape for name, shape in held.items() if "preference" in name}
            assert slices == {(200, 4), (150, 4)}, held


@pytest.mark.parametrize("sharding", ["table_wise", "column_wise"])
def test_sharded_checkpoint_loads_in_one_process(runs, datamodule, sharding):
    out, ranks = runs
    checkpoint = torch.load(out / f"{sharding}.ckpt", weights_only=False)
    assert all(type(t) is torch.Tensor for t in checkpoint["state_dict"].values())
    model = ImplicitRecommender.load_from_checkpoint(out / f"{sharding}.ckpt")
    assert not model.preference.sharded
    torch.testing.assert_close(model.user_embeddings(), ranks[0][sharding]["users"])
    torch.testing.assert_close(model.item_embeddings(), ranks[0][sharding]["items"])


def test_row_wise_sharding_on_gloo_says_why_it_is_refused(runs):
    _, ranks = runs
    assert "reduce-scatter" in ranks[0]["row_wise"] and "gloo" in ranks[0]["row_wise"]


def test_compiled_engine_splits_users_and_merges_table_updates(runs, datamodule):
    _, ranks = runs
    pairs = [ranks[r]["compiled"]["pairs"] for r in range(WORLD)]
    assert all(set(p[:, 0] % WORLD) == {r} for r, p in enumerate(pairs))  # a user's positives stay on one rank
    union = sorted(map(tuple, np.concatenate(pairs).tolist()))
    assert union == sorted(zip(datamodule.train_users.tolist(), datamodule.train_items.tolist()))
    for key in ("users", "items"):  # after each kernel epoch the ranks hold the same merged tables
        torch.testing.assert_close(ranks[0]["compiled"][key], ranks[1]["compiled"][key])
    # row 0 changed on rank 0 (+1), row 1 on rank 1 (+3), row 2 on both (+2, +6: their mean), row 3 nowhere
    expected = torch.tensor([[1.0, 1.0], [3.0, 3.0], [4.0, 4.0], [0.0, 0.0]])
    for rank in range(WORLD):
        torch.testing.assert_close(ranks[rank]["merged"], expected)


def test_sharded_personality_ranker_steps_like_one_process_on_the_ranks_batches(runs):
    from recsys.data.personality_datamodule import PersonalityDataModule
    from recsys.models.personality import PersonalityRecommender
    from recsys.models.personality_features import FeatureSpace

    out, ranks = runs
    people = PersonalityDataModule(**PEOPLE)
    train = people.split.train
    model = _ranker(people)
    model.build(FeatureSpace.build(train), warm_users=np.bincount(train.user, minlength=train.n_users) > 0,
                warm_items=np.bincount(train.item, minlength=train.n_items) > 0)  # what setup() does
    model._start_at_base_rates(train)
    optimizer = model.configure_optimizers()
    for step in range(STEPS):
        # The click and rating losses are means over each batch's known labels, whose counts differ
        # between the ranks: DDP steps on the mean of the ranks' losses, and so does this reference.
        optimizer.zero_grad()
        losses = [model.loss(ranks[r]["personality"]["batches"][step])["loss"] for r in range(WORLD)]
        torch.stack(losses).mean().backward()
        optimizer.step()
        for rank in range(WORLD):
            assert ranks[rank]["personality"]["losses"][step] == pytest.approx(float(losses[rank].detach()), rel=1e-4)
    model.eval()
    expected = model.score_users(torch.arange(8))
    for rank in range(WORLD):
        torch.testing.assert_close(ranks[rank]["personality"]["scores"], expected, rtol=1e-4, atol=1e-4)
    loaded = PersonalityRecommender.load_from_checkpoint(out / "personality.ckpt")
    assert set(loaded.state_dict()) == set(model.state_dict())  # every buffer and dense layer is kept
    loaded.eval()
    torch.testing.assert_close(loaded.score_users(torch.arange(8)), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n_rows", [2, 3, 511, 512, 513, 1025, 3146])
@pytest.mark.parametrize("world", [1, 2, 3])
def test_rank_shares_partition_an_epoch_into_equal_non_empty_steps(n_rows, world):
    if n_rows < world:
        return
    shares = [RankShare(n_rows, BATCH, rank, world) for rank in range(world)]
    order = np.random.default_rng(0).permutation(n_rows)
    taken = [[share.rows(order, step) for step in range(len(share))] for share in shares]
    assert len({len(t) for t in taken}) == 1  # every rank takes as many steps
    for step in range(len(shares[0])):
        sizes = {len(t[step]) for t in taken}
        assert len(sizes) == 1 and sizes.pop() > 0
    rows = np.concatenate([np.concatenate(t) for t in taken])
    assert len(np.unique(rows)) == len(rows)  # no row twice
    assert len(rows) + shares[0].dropped_per_epoch == n_rows and shares[0].dropped_per_epoch < BATCH * world
    if world == 1:  # one process: the batches of before, nothing left out
        assert shares[0].dropped_per_epoch == 0 and len(shares[0]) == -(-n_rows // BATCH)
