import itertools

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from ads_fixtures import write_corpus
from sklearn.metrics import log_loss, roc_auc_score

from recsys.data.interactions import BIG_FIVE, Catalog, IdVocab, InteractionData, UserProfiles
from recsys.data.personality_datamodule import PersonalityDataModule, cold_user_split
from recsys.data.profiles import read_profiles
from recsys.errors import DataFormatError, UserInputError
from recsys.export.personality import RankerTwin, random_profiles, user_inputs
from recsys.models.personality import PersonalityNet, PersonalityRecommender, fm_interaction
from recsys.models.personality_features import FeatureSpace
from recsys.models.personality_metrics import pointwise_metrics

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _toy_data(n_users=6, n_items=5, seed=0) -> InteractionData:
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), n_items)
    items = np.tile(np.arange(n_items), n_users)
    traits = rng.normal(4, 1, size=(n_users, 5)).astype(np.float32)
    traits[1, 2] = np.nan
    demographics = pd.DataFrame({"gender": ["f", "m", "f", "", "m", "f"][:n_users],
                                 "age": [18, 25, 33, 47, 52, 64][:n_users],
                                 "tastes": ["a|b", "", "b", "c|a", "a", ""][:n_users]})
    catalog = Catalog(pd.DataFrame({"category": ["x", "y", "x", "", "z"][:n_items]}))
    return InteractionData(user=users, item=items, timestamp=np.zeros(len(users)), vocab=IdVocab.range(n_users, n_items),
                           rating=rng.integers(1, 6, len(users)).astype(np.float32),
                           label=(rng.random(len(users)) < 0.5).astype(np.float32), catalog=catalog,
                           profiles=UserProfiles(traits, demographics))


# features ---------------------------------------------------------------------------------
def test_feature_space_ids_bins_tastes_and_traits():
    data = _toy_data()
    space = FeatureSpace.build(data, max_categories=3)
    assert space.categories == ["x", "y", "z"]
    np.testing.assert_array_equal(space.item_category, [1, 2, 1, 0, 3])  # "" -> 0 (none)
    gender, age = space.fields
    assert gender.values == ["f", "m"] and gender.edges is None  # most frequent first
    np.testing.assert_array_equal(space.user_demographics[:, 0], [1, 2, 1, 0, 2, 1])
    assert age.edges is not None and len(age.edges) == 2  # 6 distinct ages > 3 -> 3 quantile bins
    np.testing.assert_array_equal(age.encode([10, 40, 99, None]), [1, 2, 3, 0])
    assert space.tastes == ["a", "b", "c"]
    rows = space.user_rows(np.array([0, 1, 3]))
    np.testing.assert_array_equal(rows["tastes"], [[1, 2], [0, 0], [3, 1]])
    traits = data.profiles.traits
    mean, std = np.nanmean(traits, axis=0), np.nanstd(traits, axis=0)
    np.testing.assert_allclose(space.user_traits[0], (traits[0] - mean) / std, rtol=1e-5)
    assert space.user_traits[1, 2] == 0 and space.user_trait_mask[1, 2] == 0
    # A raw profile encodes as the stored row of the same user; unknown values map to 0.
    profile = space.encode_profile({t: float(traits[3, j]) for j, t in enumerate(BIG_FIVE)},
                                   {"gender": "", "age": 47}, ["c", "a", "unseen"])
    np.testing.assert_allclose(profile["traits"][0], space.user_traits[3], atol=1e-6)
    np.testing.assert_array_equal(profile["demographics"][0], space.user_demographics[3])
    np.testing.assert_array_equal(profile["tastes"][0], [3, 1])
    again = FeatureSpace.from_dict(space.to_dict())
    np.testing.assert_array_equal(again.user_demographics, space.user_demographics)
    assert again.fields[1].edges == age.edges
    with pytest.raises(UserInputError, match="unknown trait"):
        space.encode_profile({"honesty": 1.0})


# the network ------------------------------------------------------------------------------
def test_fm_interaction_equals_explicit_pairwise_sum():
    embeddings = torch.randn(4, 6, 3, dtype=torch.float64)
    explicit = sum((embeddings[:, f] * embeddings[:, g]).sum(-1) for f, g in itertools.combinations(range(6), 2))
    torch.testing.assert_close(fm_interaction(embeddings), explicit)


def test_net_equals_explicit_deepfm_over_concatenated_fields():
    torch.manual_seed(0)
    net = PersonalityNet(n_users=4, n_items=5, n_categories=3, field_sizes=[3], n_tastes=4, embedding_dim=3,
                         hidden=[8, 4], dropout=0.0, init_std=0.3).eval()
    users, keep = torch.tensor([0, 3, 2]), torch.tensor([True, True, False])
    demographics, tastes = torch.tensor([[1], [0], [2]]), torch.tensor([[1, 3], [0, 0], [2, 0]])
    traits = torch.randn(3, 5)
    items = torch.arange(5)
    categories = torch.tensor([1, 2, 0, 1, 2])
    user, item = net.user_side(users, keep, demographics, tastes, traits), net.item_side(items, torch.ones(5, dtype=bool), categories)
    cross = net.combine(user, item, cross=True)
    # Reference: look every field up by hand, then FM over all fields and the MLP over their concatenation.
    user_w = net.user_tables.embedding_bags
    item_w = net.item_tables.embedding_bags
    for b, i in itertools.product(range(3), range(5)):
        rows = [user_w["user"].weight[users[b] + 1] if keep[b] else torch.zeros(4),
                user_w["demo_0"].weight[demographics[b, 0]] if demographics[b, 0] > 0 else torch.zeros(4)]
        present = tastes[b][tastes[b] > 0]
        rows.append(user_w["tastes"].weight[present].mean(0) if len(present) else torch.zeros(4))
        rows += [traits[b, j] * net.trait_vectors[j] for j in range(5)]
        rows += [item_w["item"].weight[i + 1], item_w["category"].weight[categories[i]] if categories[i] > 0
                 else torch.zeros(4)]
        fields = torch.stack(rows)
        e, w = fields[:, :3], fields[:, 3]
        wide = w.sum() + sum(e[f] @ e[g] for f, g in itertools.combinations(range(len(e)), 2))
        n_user = 8
        first = (torch.cat([net.user_projection.weight, net.item_projection.weight], 1) @ e.flatten()
                 + net.user_projection.bias)
        assert n_user * 3 == net.user_projection.in_features
        deep = net.heads(net.mlp(first))
        expected = net.head_bias + net.wide_scale * wide + deep
        torch.testing.assert_close(cross["click"][b, i], expected[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(cross["rating"][b, i], expected[1], rtol=1e-5, atol=1e-5)
    aligned = net.combine(net.user_side(users[[0]].repeat(5), keep[[0]].repeat(5), demographics[[0]].repeat(5, 1),
                                        tastes[[0]].repeat(5, 1), traits[[0]].repeat(5, 1)), item, cross=False)
    torch.testing.assert_close(aligned["click"], cross["click"][0])


# the LightningModule on ADS fixtures ---------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny end-to-end run on an ADS corpus written in the download's layout."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ads")
    write_corpus(root, n_users=16, seed=1)
    datamodule = PersonalityDataModule(path=str(root), cold_user_share=0.25, batch_size=256, seed=0)
    pl.seed_everything(0, verbose=False)
    model = PersonalityRecommender(datamodule.n_users, datamodule.n_items, embedding_dim=8, hidden=[16],
                                   lr=0.01, eval_ks=[5, 10])
    trainer = pl.Trainer(max_epochs=6, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=datamodule)
    trainer.test(model, datamodule=datamodule, verbose=False)
    return datamodule, model, {k: float(v) for k, v in trainer.callback_metrics.items()}


def test_end_to_end_on_ads_fixtures(trained):
    datamodule, model, metrics = trained
    groups = datamodule.user_groups()
    assert groups["cold"].sum() == 4 and groups["warm"].sum() == 12
    assert not np.isin(datamodule.split.train.user, np.flatnonzero(groups["cold"])).any()
    test = datamodule.split.test
    np.testing.assert_array_equal(test.label, (test.rating >= 4).astype(np.float32))  # documented click rule
    for key in ("test/auc", "test_warm/auc", "test_cold/auc", "test_cold/logloss", "test/rmse", "test_cold/mae",
                "test_cold/user_auc", "test_cold/ndcg@10", "test_warm/recall@5"):
        assert np.isfinite(metrics[key]), key
    # Ratings follow the traits in this corpus, so the cold path has signal to find; and for warm users
    # the rating head beats predicting the mean training rating.
    warm_rows = groups["warm"][test.user]
    constant_rmse = np.sqrt(np.mean((test.rating[warm_rows] - datamodule.split.train.rating.mean()) ** 2))
    assert metrics["test_cold/auc"] > 0.6 and metrics["test_warm/rmse"] < constant_rmse


def test_cold_path_uses_no_user_id(trained):
    datamodule, model, _ = trained
    cold = np.flatnonzero(datamodule.user_groups()["cold"])
    warm = np.flatnonzero(datamodule.user_groups()["warm"])
    model.eval()
    users = torch.as_tensor(np.concatenate([cold[:2], warm[:2]]))
    before = model.score_users(users)
    with torch.no_grad():
        model.net.user_tables.embedding_bags["user"].weight.mul_(-3.0).add_(1.0)
    after = model.score_users(users)
    torch.testing.assert_close(after[:2], before[:2])  # cold users: their id's row is never read
    assert not torch.allclose(after[2:], before[2:])  # warm users: it is
    rows = model.features.user_rows(cold[:2])
    profile = model.score_profiles(torch.as_tensor(rows["demographics"]), torch.as_tensor(rows["tastes"]),
                                   torch.as_tensor(rows["traits"]))
    torch.testing.assert_close(profile, before[:2])
    # The plain-EmbeddingBag twin (what export turns into ONNX) scores like the TorchRec model.
    twin = RankerTwin(model)
    feeds = user_inputs(model, np.arange(datamodule.n_users))
    with torch.no_grad():
        twin_scores = twin(*(torch.from_numpy(v) for v in feeds.values()))
        torch.testing.assert_close(twin_scores, model.score_users(torch.arange(datamodule.n_users)),
                                   rtol=0, atol=1e-5)
        new = random_profiles(model, 3, np.random.default_rng(0))
        z = model.features.standardize(np.where(new["trait_mask"] > 0, new["traits"], np.nan))
        torch.testing.assert_close(twin(*(torch.from_numpy(v) for v in new.values())),
                                   model.score_profiles(torch.from_numpy(new["demographics"]),
                                                        torch.from_numpy(new["tastes"]), torch.from_numpy(z)),
                                   rtol=0, atol=1e-5)


def test_checkpoint_round_trip(trained, tmp_path):
    datamodule, model, _ = trained
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, accelerator="cpu")
    trainer.strategy.connect(model)
    model.trainer.datamodule = datamodule
    trainer.save_checkpoint(tmp_path / "p.ckpt")
    loaded = PersonalityRecommender.load_from_checkpoint(tmp_path / "p.ckpt", weights_only=False).eval()
    users = torch.arange(datamodule.n_users)
    torch.testing.assert_close(loaded.score_users(users), model.eval().score_users(users))


# the data ---------------------------------------------------------------------------------
def test_cold_user_split_holds_out_every_row_of_cold_users():
    data = _toy_data(n_users=6, n_items=5)
    split = cold_user_split(data, 0.34, ratios=(0.6, 0.2, 0.2), seed=3)
    assert len(split.train) + len(split.valid) + len(split.test) == len(data)
    cold = np.setdiff1d(np.arange(6), split.train.user)
    assert len(cold) == 2
    for part in (split.valid, split.test):
        for user in cold:
            if user in part.user:  # a cold user's rows all land in one part
                assert (part.user == user).sum() == 5
    again = cold_user_split(data, 0.34, ratios=(0.6, 0.2, 0.2), seed=3)
    np.testing.assert_array_equal(again.test.user, split.test.user)


def test_pointwise_metrics_match_sklearn():
    data = _toy_data()

    class Fixed:
        training = False
        hparams = type("H", (), {"click_weight": 1.0, "rating_weight": 1.0, "rank_by": "click"})()

        def eval(self):
            return self

        def train(self, mode):
            return self

        def predict_pairs(self, users, items):
            logits = torch.sin(users.float() * 1.3 + items.float())
            return {"click": logits, "rating": 3 + logits}

    groups = {"cold": np.arange(6) < 2}
    result = pointwise_metrics(Fixed(), {"test": data}, groups)
    logits = np.sin(data.user * 1.3 + data.item)
    assert result.metrics["test/auc"] == pytest.approx(roc_auc_score(data.label, logits))
    assert result.metrics["test/logloss"] == pytest.approx(log_loss(data.label, 1 / (1 + np.exp(-logits))))
    assert result.metrics["test/rmse"] == pytest.approx(np.sqrt(np.mean((3 + logits - data.rating) ** 2)), rel=1e-6)
    rows = data.user < 2
    assert result.metrics["test_cold/auc"] == pytest.approx(roc_auc_score(data.label[rows], logits[rows]))
    per_user = [roc_auc_score(data.label[data.user == u], logits[data.user == u]) for u in result.users["test"]]
    np.testing.assert_allclose(result.per_user["test/user_auc"], per_user)


def test_read_profiles_from_a_user_table(tmp_path):
    path = tmp_path / "users.csv"
    path.write_text("user_id,openness,neuroticism,country\nb,5.5,2,FR\na,3,,DE\nzz,1,1,US\n")
    profiles = read_profiles(path, IdVocab(np.array(["a", "b", "c"]), np.array(["i"])))
    np.testing.assert_allclose(profiles.traits[:, 0], [3, 5.5, np.nan])
    np.testing.assert_allclose(profiles.traits[:, 4], [np.nan, 2, np.nan])
    assert np.isnan(profiles.traits[:, 1]).all() and list(profiles.demographics["country"][:2]) == ["DE", "FR"]
    path.write_text("user,openness\na,high\n")
    with pytest.raises(DataFormatError) as error:
        read_profiles(path, IdVocab(np.array(["a"]), np.array(["i"])))
    assert (error.value.line, error.value.field) == (2, "openness")


def test_pointwise_batches_add_unseen_negatives_per_click(trained):
    datamodule, model, _ = trained
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, accelerator="cpu")
    trainer.strategy.connect(model)
    datamodule.trainer = trainer
    batches = datamodule.train_dataloader().dataset
    train = datamodule.split.train
    clicks = int((train.label > 0).sum())
    assert batches.n == len(train) + clicks * datamodule.sampled_negatives
    epoch = {name: torch.cat([batches[i][name] for i in range(len(batches))]).numpy()
             for name in ("users", "items", "click", "rating")}
    sampled = np.isnan(epoch["rating"]) & (epoch["click"] == 0)
    assert sampled.sum() == clicks  # ADS rows all have ratings: the rating-less click-0 rows are the samples
    seen = set(zip(train.user.tolist(), train.item.tolist()))
    assert not any((u, i) in seen for u, i in zip(epoch["users"][sampled], epoch["items"][sampled]))
    again = torch.cat([batches[i]["items"] for i in range(len(batches))]).numpy()
    np.testing.assert_array_equal(again, epoch["items"])  # the same epoch draws the same examples
