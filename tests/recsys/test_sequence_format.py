"""The S3-Rec / SASRec sequence layout: real slices of the shared Amazon files, and malformed files."""

import json
from pathlib import Path

import numpy as np
import pytest

from recsys import cli
from recsys.data.formats import detect_format, load
from recsys.data.formats.sequences import read_sequences
from recsys.data.splits import leave_one_out
from recsys.errors import DataFormatError, UserInputError

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _slice(name: str, tmp_path: Path, n_lines: int = 200) -> Path:
    """The first lines of a shared sequences file and the attributes of their items, in a tmp directory."""
    source = SHARED / name
    if not (source / "sequences.txt").is_file():
        pytest.skip(f"shared data {source} is absent (see the data README)")
    lines = (source / "sequences.txt").read_text().splitlines()[:n_lines]
    attributes = json.loads((source / "item2attributes.json").read_text())
    items = {t for line in lines for t in line.split()[1:]}
    out = tmp_path / name
    out.mkdir()
    (out / "sequences.txt").write_text("\n".join(lines) + "\n")
    (out / "item2attributes.json").write_text(json.dumps({i: attributes[i] for i in sorted(items)}))
    return out


def _write(directory: Path, text: str, attributes: dict | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sequences.txt").write_text(text)
    if attributes is not None:
        (directory / "item2attributes.json").write_text(json.dumps(attributes))
    return directory / "sequences.txt"


@pytest.mark.parametrize("name", ["amazon-toys", "amazon-sports"])
def test_real_slice_as_interactions_and_sequences(name, tmp_path):
    directory = _slice(name, tmp_path)
    lines = [line.split() for line in (directory / "sequences.txt").read_text().splitlines()]
    assert detect_format(directory)[0] == "sequences"
    assert detect_format(directory / "sequences.txt")[0] == "sequences"
    data = load(directory)
    assert len(data) == sum(len(t) - 1 for t in lines) and data.n_users == len(lines)
    frame = data.to_frame()
    # Rows keep the file's order; timestamps count positions within each user's line.
    first = lines[0]
    rows = frame[frame["user"] == first[0]]
    assert rows["item"].tolist() == first[1:] and rows["timestamp"].tolist() == list(range(len(first) - 1))
    attributes = json.loads((directory / "item2attributes.json").read_text())
    catalog = data.catalog.frame
    item = data.vocab.items[0]
    assert catalog.loc[0, "attributes"] == " ".join(map(str, attributes[item]))

    # Leave-one-out by time = the last item of each line for test, the one before for validation.
    split = leave_one_out(data)
    test = split.test.to_frame().set_index("user")["item"]
    valid = split.valid.to_frame().set_index("user")["item"]
    for tokens in lines[:50]:
        assert test[tokens[0]] == tokens[-1]
        if len(tokens) >= 4:
            assert valid[tokens[0]] == tokens[-2]

    seqs = read_sequences(directory)
    assert seqs.item_ids == list(data.vocab.items)  # one numbering for both views
    assert [seqs.item_ids[i] for i in seqs.sequences[0]] == first[1:]
    assert seqs.attributes[0] == attributes[seqs.item_ids[0]]


def test_full_shared_files_have_the_published_sizes():
    directory = SHARED / "amazon-toys"
    if not (directory / "sequences.txt").is_file():
        pytest.skip(f"shared data {directory} is absent")
    data = load(directory)
    assert (data.n_users, data.n_items, len(data)) == (19_412, 11_924, 167_597)


@pytest.mark.parametrize("text, line, field, words", [
    ("1 2 3\n2 4 x\n", 2, "item 2", "not a positive integer"),
    ("1 2 3\n2 0 4\n", 2, "item 1", "1-based"),
    ("1 2 3\n\n1 4 5\n", 3, "user", "already has a line (1)"),
    ("1 2 3\n7\n", 2, "item 1", "no items"),
    ("u1 2 3\n", 1, "user", "not a positive integer"),
])
def test_malformed_lines_name_file_line_and_field(tmp_path, text, line, field, words):
    path = _write(tmp_path / "d", text)
    with pytest.raises(DataFormatError) as error:
        load(path, format="sequences")
    assert error.value.line == line and error.value.field == field and words in str(error.value)
    assert str(path) in str(error.value)


def test_empty_file_and_bad_attributes(tmp_path):
    with pytest.raises(DataFormatError, match="empty file"):
        load(_write(tmp_path / "a", "\n\n"), format="sequences")
    path = _write(tmp_path / "b", "1 2 3\n", {"2": [1, 2], "3": ["brand"]})
    with pytest.raises(DataFormatError) as error:
        load(path)
    assert error.value.field == "3" and "item2attributes.json" in str(error.value)
    (tmp_path / "b" / "item2attributes.json").write_text("{not json")
    with pytest.raises(DataFormatError, match="not valid JSON"):
        read_sequences(path)
    with pytest.raises(UserInputError, match="columns= does not apply"):
        load(path, format="sequences", columns={"user": "u"})


def test_attributes_are_optional_and_other_integer_tables_are_not_sequences(tmp_path):
    path = _write(tmp_path / "plain", "1 5 6 7\n2 6 7\n")
    data = load(path)
    assert data.catalog is None and len(data) == 5
    np.testing.assert_array_equal(data.timestamp, [0, 1, 2, 0, 1])
    other = tmp_path / "x" / "log.txt"
    other.parent.mkdir()
    other.write_text("1 5 6 7\n")
    assert detect_format(other)[0] == "table"  # without item2attributes.json beside it, no guess


def test_cli_prints_one_line_and_exits_2(tmp_path, capsys):
    path = _write(tmp_path / "bad", "1 2 3\n2 3 three\n")
    code = cli.main(["discern", "--out", str(tmp_path / "out"), "--data.sequences", str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0] == f"error: {path}, line 2, field 'item 2': 'three' is not a positive integer id (ids are 1-based)"


def test_attribute_vectors_and_the_id_source_choice(tmp_path):
    from recsys.experiments.discern import attribute_vectors, id_source
    from recsys.experiments.discern import read_sequences as discern_sequences

    vectors = attribute_vectors([[7, 1], [7, 1], [7], [3]])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(vectors[0], vectors[1])  # same attribute set, same vector
    # Attribute 7 is on three items, attribute 1 on two: the rarer one weighs more in item 0's vector.
    assert vectors[0].max() > vectors[0][vectors[0] > 0].min()
    assert float(vectors[2] @ vectors[3]) == 0.0

    path = _write(tmp_path / "d", "1 2 3\n2 3 4\n", {"2": [5], "3": [5, 6], "4": [6]})
    data = discern_sequences(path)
    assert data.attributes == [[5], [5, 6], [6]] and data.item_ids == ["2", "3", "4"]
    assert id_source("auto", data, None) == "attributes" and id_source("svd", data, None) == "svd"
    with pytest.raises(UserInputError, match="needs item texts"):
        id_source("text", data, None)
    bare = discern_sequences(_write(tmp_path / "e", "1 2 3\n"))
    with pytest.raises(UserInputError, match="item2attributes.json"):
        id_source("attributes", bare, None)
    assert id_source("auto", bare, None) == "svd"
