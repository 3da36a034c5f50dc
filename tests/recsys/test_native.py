import json

import numpy as np
import pandas as pd
import pytest

from recsys.data.interactions import BIG_FIVE, Catalog, IdVocab, InteractionData, UserProfiles
from recsys.data.native import (
    is_native,
    read_native,
    read_native_metadata,
    read_native_table,
    write_native,
)
from recsys.errors import DataFormatError, UserInputError


def _data(with_side: bool = True) -> InteractionData:
    # Vocabulary order differs from first appearance and holds ids with no interactions
    # ("u_idle", "i_unseen"), ids that look numeric with leading zeros, and one called "NA".
    vocab = IdVocab(np.array(["u2", "007", "NA", "u_idle"]), np.array(["i_unseen", "0042", "b", "c"]))
    catalog = Catalog(pd.DataFrame({
        "title": ["Unseen", "Answer", "", "Gamma"], "text": ["t0", "", "t2", "t3"],
        "category": ["x", "y", "y", ""], "price": [1.5, 2.0, np.nan, 4.25],
    }))
    traits = np.array([[0.1, 0.2, 0.3, 0.4, 0.5], [1, 2, 3, 4, 5], [np.nan] * 5, [0.5] * 5], dtype=np.float32)
    profiles = UserProfiles(traits, pd.DataFrame({"age": [31, 45, 22, 60], "gender": ["f", "m", "f", "x"]}))
    side = {"catalog": catalog, "profiles": profiles} if with_side else {}
    return InteractionData(
        user=np.array([1, 0, 2, 1, 0]), item=np.array([1, 2, 3, 3, 1]),
        timestamp=np.array([100, 50, 0, 2_000_000_000, 7]), vocab=vocab,
        rating=np.array([4.5, 1.0, 0.1, 5.0, 3.0]), label=np.array([1, 0, 1, 1, 0]), **side,
    )


def _assert_same(a: InteractionData, b: InteractionData) -> None:
    for name in ("user", "item", "timestamp", "rating", "label"):
        left, right = getattr(a, name), getattr(b, name)
        assert (left is None) == (right is None), name
        if left is not None:
            assert left.dtype == right.dtype, name
            np.testing.assert_array_equal(left, right, err_msg=name)
    assert list(a.vocab.users) == list(b.vocab.users)
    assert list(a.vocab.items) == list(b.vocab.items)
    assert a.vocab.digest() == b.vocab.digest()
    assert (a.catalog is None) == (b.catalog is None)
    if a.catalog is not None:
        pd.testing.assert_frame_equal(a.catalog.frame, b.catalog.frame, check_dtype=False)
    assert (a.profiles is None) == (b.profiles is None)
    if a.profiles is not None:
        np.testing.assert_array_equal(a.profiles.traits, b.profiles.traits)
        pd.testing.assert_frame_equal(a.profiles.demographics, b.profiles.demographics, check_dtype=False)


@pytest.mark.parametrize("file_format", ["parquet", "csv"])
@pytest.mark.parametrize("with_side", [True, False])
def test_round_trip_is_exact(tmp_path, file_format, with_side):
    data = _data(with_side)
    write_native(tmp_path, data, file_format=file_format)
    _assert_same(data, read_native(tmp_path))


def test_round_trip_without_rating_and_label(tmp_path):
    data = _data()
    data = InteractionData(data.user, data.item, data.timestamp, data.vocab, catalog=data.catalog)
    write_native(tmp_path, data, file_format="csv")
    back = read_native(tmp_path)
    assert back.rating is None and back.label is None and back.profiles is None
    _assert_same(data, back)


def test_round_trip_profiles_without_demographics(tmp_path):
    data = _data()
    data = InteractionData(data.user, data.item, data.timestamp, data.vocab,
                           profiles=UserProfiles(np.eye(4, 5, dtype=np.float32)))
    write_native(tmp_path, data)
    _assert_same(data, read_native(tmp_path))


def test_files_manifest_and_extra_tables(tmp_path):
    truth = pd.DataFrame({"user": ["007", "u2"], "item": ["0042", "b"], "utility": [0.5, -1.0]})
    write_native(tmp_path, _data(), tables={"truth": truth}, file_format="csv", metadata={"seed": np.int64(7)})
    manifest = json.loads((tmp_path / "dataset.json").read_text())
    assert manifest["format"] == "prefengine" and manifest["version"] == 1
    assert manifest["file_format"] == "csv" and manifest["tables"] == ["interactions", "items", "users", "truth"]
    assert (manifest["n_users"], manifest["n_items"], manifest["n_interactions"]) == (4, 4, 5)
    assert manifest["seed"] == 7 and read_native_metadata(tmp_path)["seed"] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "dataset.json", "interactions.csv", "items.csv", "truth.csv", "users.csv"]
    # outside ids as strings, the documented columns in order
    interactions = read_native_table(tmp_path, "interactions")
    assert list(interactions.columns) == ["user", "item", "timestamp", "rating", "label"]
    assert list(interactions["user"]) == ["007", "u2", "NA", "007", "u2"]
    assert list(read_native_table(tmp_path, "users").columns) == ["user", *BIG_FIVE, "age", "gender"]
    assert list(read_native_table(tmp_path, "items").columns) == ["item", "title", "text", "category", "price"]
    pd.testing.assert_frame_equal(read_native_table(tmp_path, "truth"), truth, check_dtype=False)
    assert is_native(tmp_path) and not is_native(tmp_path / "missing")


def test_write_rejects_bad_arguments(tmp_path):
    with pytest.raises(UserInputError, match="file_format"):
        write_native(tmp_path, _data(), file_format="xlsx")
    with pytest.raises(UserInputError, match="items"):
        write_native(tmp_path, _data(), tables={"items": pd.DataFrame()})
    with pytest.raises(UserInputError, match="reserved"):
        write_native(tmp_path, _data(), metadata={"version": 2})


def test_bad_directories_name_file_line_and_field(tmp_path):
    with pytest.raises(DataFormatError, match="not a prefengine data directory"):
        read_native(tmp_path)
    write_native(tmp_path, _data(), file_format="csv")
    with pytest.raises(DataFormatError, match="no table 'reviews'"):
        read_native_table(tmp_path, "reviews")

    # an interaction naming an item the items table lacks
    lines = (tmp_path / "interactions.csv").read_text().splitlines()
    lines[3] = lines[3].replace("NA,c", "NA,zzz")
    (tmp_path / "interactions.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError) as info:
        read_native(tmp_path)
    assert (info.value.line, info.value.field) == (4, "item") and "'zzz'" in str(info.value)
    assert info.value.path == str(tmp_path / "interactions.csv")

    # an unparsable timestamp
    lines[3] = lines[3].replace("NA,zzz,0", "NA,c,yesterday")
    (tmp_path / "interactions.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError) as info:
        read_native(tmp_path)
    assert (info.value.line, info.value.field) == (4, "timestamp")

    manifest = tmp_path / "dataset.json"
    manifest.write_text(manifest.read_text().replace('"version": 1', '"version": 9'))
    with pytest.raises(DataFormatError) as info:
        read_native(tmp_path)
    assert info.value.field == "version"
    manifest.write_text("{\n  \"format\": \n")
    with pytest.raises(DataFormatError) as info:
        read_native(tmp_path)
    assert info.value.line == 3
