import numpy as np
import pandas as pd
import pytest

from recsys.data.interactions import Catalog, IdVocab, InteractionData, UserProfiles


def small() -> InteractionData:
    frame = pd.DataFrame({
        "user": ["a", "a", "b", "c", "c", "c"],
        "item": ["x", "y", "x", "z", "x", "x"],
        "timestamp": [5, 3, 1, 2, 9, 4],
        "rating": [5, 1, 4, 2, 3, 5],
    })
    return InteractionData.from_frame(frame)


def test_from_frame_encodes_in_order_of_first_appearance():
    data = small()
    assert list(data.vocab.users) == ["a", "b", "c"]
    assert list(data.vocab.items) == ["x", "y", "z"]
    np.testing.assert_array_equal(data.user, [0, 0, 1, 2, 2, 2])
    np.testing.assert_array_equal(data.item, [0, 1, 0, 2, 0, 0])
    assert data.rating.dtype == np.float32


def test_matrix_counts_duplicates_once_and_respects_labels():
    data = small()
    m = data.matrix()
    assert m.shape == (3, 3)
    np.testing.assert_array_equal(m.toarray(), [[1, 1, 0], [1, 0, 0], [1, 0, 1]])
    labelled = InteractionData(data.user, data.item, data.timestamp, data.vocab,
                               label=np.array([1, 0, 1, 1, 0, 0]))
    np.testing.assert_array_equal(labelled.matrix().toarray(), [[1, 0, 0], [1, 0, 0], [0, 0, 1]])
    np.testing.assert_array_equal(labelled.item_counts(), [2, 0, 1])


def test_subset_keeps_vocab_and_side_columns():
    data = small()
    part = data.subset(data.rating >= 4)
    assert len(part) == 3 and part.vocab is data.vocab
    np.testing.assert_array_equal(part.rating, [5, 4, 5])


def test_to_frame_round_trips():
    data = small()
    again = InteractionData.from_frame(data.to_frame(), vocab=data.vocab)
    for name in ("user", "item", "timestamp", "rating"):
        np.testing.assert_array_equal(getattr(again, name), getattr(data, name))


def test_encode_marks_unknown_ids_and_digest_changes_with_vocab():
    vocab = IdVocab.from_ids(["u1", "u2"], ["i1"])
    np.testing.assert_array_equal(vocab.encode_users(["u2", "nope", "u1"]), [1, -1, 0])
    assert vocab.digest() == IdVocab.from_ids(["u1", "u2"], ["i1"]).digest()
    assert vocab.digest() != IdVocab.from_ids(["u2", "u1"], ["i1"]).digest()


def test_invalid_ids_and_lengths_are_rejected():
    vocab = IdVocab.range(2, 2)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        InteractionData(np.array([0, 2]), np.array([0, 1]), np.zeros(2), vocab)
    with pytest.raises(ValueError, match="rows"):
        InteractionData(np.array([0, 1]), np.array([0]), np.zeros(2), vocab)


def test_side_information_normalizes_columns():
    catalog = Catalog(pd.DataFrame({"title": ["A", None], "category": ["c2", "c1"]}))
    assert list(catalog.titles) == ["A", ""]
    codes, names = catalog.category_codes()
    assert names == ["c1", "c2"] and list(codes) == [1, 0]
    with pytest.raises(ValueError):
        UserProfiles(np.zeros((3, 4)))
