"""The hidden-likes view ("hidden/") and withheld training positives ("withheld/"), on a hand-built world.

Two users, eight items, leave-one-out splits (latest pair -> test, second latest -> valid), so every
assignment below is known by hand:

user 0: observed 0, 1, 2, 3 (times 1-4)  -> train {0, 1}, valid {2}, test {3}; likes 0-6
        missed (liked, exposed, never observed) 4, 5, 6 (times 10-12) -> shares train {4}, valid {5}, test {6}
user 1: observed 0, 1, 2, 7 (times 1-4)  -> train {0, 1}, valid {2}, test {7}; likes 0-4 (7 is a false positive)
        missed 3 (time 5) -> train share (one pair stays in train)
"""

import math
from dataclasses import dataclass

import numpy as np
import pytest
import scipy.sparse as sp

import recsys.data.world as world_module
from recsys.data.datamodule import InteractionDataModule
from recsys.data.interactions import IdVocab, InteractionData
from recsys.evaluation import evaluate

VOCAB = IdVocab.range(2, 8)
LIKED = {0: set(range(7)), 1: set(range(5))}


def _data(rows: list[tuple[int, int, int]]) -> InteractionData:
    user, item, time = (np.array(column) for column in zip(*rows))
    return InteractionData(user=user, item=item, timestamp=time, vocab=VOCAB)


@dataclass(frozen=True)
class HandWorld:
    """What the DataModule asks of a PreferenceWorld, with the truth written out."""

    observed: InteractionData
    missed: InteractionData

    def truly_liked(self, users, items) -> np.ndarray:
        return np.array([int(i) in LIKED[int(u)] for u, i in zip(users, items)], dtype=bool)

    def clean(self, data: InteractionData) -> InteractionData:
        return data.subset(self.truly_liked(data.user, data.item))

    def liked_items(self) -> sp.csr_matrix:
        dense = np.zeros((2, 8), dtype=bool)
        for user, items in LIKED.items():
            dense[user, sorted(items)] = True
        return sp.csr_matrix(dense)


WORLD = HandWorld(
    observed=_data([(0, 0, 1), (0, 1, 2), (0, 2, 3), (0, 3, 4), (1, 0, 1), (1, 1, 2), (1, 2, 3), (1, 7, 4)]),
    missed=_data([(0, 4, 10), (0, 5, 11), (0, 6, 12), (1, 3, 5)]))

# Scores that rank items 7 > 6 > 5 > ... > 0 for both users.
SCORES = np.tile(np.arange(8, dtype=np.float32), (2, 1))


def scorer(users: np.ndarray) -> np.ndarray:
    return SCORES[users]


@pytest.fixture
def datamodule(monkeypatch) -> InteractionDataModule:
    monkeypatch.setattr(world_module, "generate_world", lambda config: WORLD)
    return InteractionDataModule(split="loo", world_preset="toy")


def _pairs(data: InteractionData) -> set[tuple[int, int]]:
    return set(zip(data.user.tolist(), data.item.tolist()))


def test_hidden_likes_are_split_like_the_observed_pairs(datamodule):
    hidden = datamodule.hidden_likes
    assert _pairs(hidden.train) == {(0, 4), (1, 3)}
    assert _pairs(hidden.valid) == {(0, 5)}
    assert _pairs(hidden.test) == {(0, 6)}
    truth, exclude = datamodule.evaluation_inputs("test")
    assert set(truth) == {"test", "clean", "hidden"}
    assert _pairs(truth["test"]) == {(0, 3), (1, 7)}
    assert _pairs(truth["clean"]) == {(0, 3)}
    assert _pairs(truth["hidden"]) == {(0, 3), (0, 6)}  # clean test + the test share of the hidden likes
    masked = set().union(*(_pairs(d) for d in exclude["hidden"]))
    assert masked == {(0, 0), (0, 1), (0, 2), (0, 4), (0, 5), (1, 0), (1, 1), (1, 2), (1, 3)}
    assert set().union(*(_pairs(d) for d in exclude["test"])) == {(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)}
    # nothing a view scores is masked, and the hidden likes never reach training or validation
    for name, data in truth.items():
        assert not _pairs(data) & set().union(*(_pairs(d) for d in exclude[name]))
    assert not _pairs(WORLD.missed) & (_pairs(datamodule.split.train) | _pairs(datamodule.split.valid))
    valid_truth, _ = datamodule.evaluation_inputs("valid")
    assert "hidden" not in valid_truth


def test_hidden_view_scores_known_numbers_through_the_evaluator(datamodule):
    result = evaluate(scorer, *datamodule.evaluation_inputs("test"), ks=(2, 5))
    # hidden, user 0: items 0, 1, 2, 4, 5 masked, so the list is 7, 6, 3: hits at ranks 2 and 3
    assert result.counts["hidden"]["users"] == 1  # user 1 has no clean test pair and no hidden test like
    assert result.metrics["hidden/recall@2"] == pytest.approx(0.5)
    assert result.metrics["hidden/ndcg@2"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert result.metrics["hidden/recall@5"] == pytest.approx(1.0)
    # test, user 0: items 0, 1, 2 masked, list 7, 6, 5, 4, 3: item 3 at rank 5
    assert result.value("test", "recall", 2) == pytest.approx((0.0 + 1.0) / 2)  # user 1: item 7 ranks first
    assert result.per_user["clean/ndcg@5"].tolist() == pytest.approx([1 / math.log2(6)])


def test_flip_contrast_pairs_hidden_likes_with_unobserved_unliked_items(datamodule):
    users, items, is_target = datamodule.flip_contrasts(seed=3)["hidden"]
    assert sorted(zip(users[is_target].tolist(), items[is_target].tolist())) == [(0, 4), (0, 5), (0, 6), (1, 3)]
    observed = _pairs(WORLD.observed)
    for user, item in zip(users[~is_target].tolist(), items[~is_target].tolist()):
        assert item not in LIKED[user] and (user, item) not in observed
    assert users[~is_target].tolist() == users[is_target].tolist()  # one contrast per hidden like, same user
    users, items, is_target = datamodule.flip_contrasts(seed=3)["hidden_vs_heldout"]
    # hidden likes against the liked pairs of valid and test: user 0's 2 and 3, user 1's 2 (its 7 is not liked)
    assert sorted(zip(users[~is_target].tolist(), items[~is_target].tolist())) == [(0, 2), (0, 3), (1, 2)]
    assert is_target.sum() == 4


def test_withheld_training_pairs_leave_training_and_form_their_own_view(tmp_path):
    rows = [f"{u}\t{i}\t5\t{t}" for u in range(6) for t, i in enumerate(range(u, u + 12))]
    path = tmp_path / "tiny.inter"
    path.write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "\n".join(rows) + "\n")
    full = InteractionDataModule(path=str(path), format="recbole", split="loo")
    dm = InteractionDataModule(path=str(path), format="recbole", split="loo", hide_positives=0.4, hide_seed=1)
    kept, withheld = _pairs(dm.split.train), _pairs(dm.withheld)
    assert kept | withheld == _pairs(full.split.train) and not kept & withheld
    # per user: 10 training pairs, round(0.4 * 10) = 4 withheld
    assert np.bincount(dm.withheld.user, minlength=6).tolist() == [4] * 6
    assert _pairs(dm.split.test) == _pairs(full.split.test)
    truth, exclude = dm.evaluation_inputs("test")
    assert set(truth) == {"test", "withheld"}
    assert set().union(*(_pairs(d) for d in exclude["test"])) == _pairs(full.split.train) | _pairs(dm.split.valid)
    assert set().union(*(_pairs(d) for d in exclude["withheld"])) == (
        kept | _pairs(dm.split.valid) | _pairs(dm.split.test))
    users, items, is_target = dm.flip_contrasts()["withheld"]
    assert set(zip(users[is_target].tolist(), items[is_target].tolist())) == withheld
    everything = _pairs(full.split.train) | _pairs(full.split.valid) | _pairs(full.split.test)
    assert not set(zip(users[~is_target].tolist(), items[~is_target].tolist())) & everything
    other_seed = InteractionDataModule(path=str(path), format="recbole", split="loo", hide_positives=0.4, hide_seed=2)
    assert _pairs(other_seed.withheld) != withheld


def test_hide_positives_out_of_range_is_one_clear_error():
    from recsys.errors import UserInputError

    with pytest.raises(UserInputError, match="hide_positives"):
        InteractionDataModule(world_preset="toy", hide_positives=1.0)
