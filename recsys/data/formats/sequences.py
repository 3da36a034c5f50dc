"""The S3-Rec / SASRec sequence layout: `sequences.txt` with `item2attributes.json` beside it.

`sequences.txt` holds one line per user, `user item item ...`, separated by spaces, the items in
time order; ids are positive integers (1-based), as in the files of S3-Rec (Zhou et al., 2020),
SASRec and the TIGER-style papers that reuse their preprocessing. The file has no timestamps: as
an `InteractionData` an item's timestamp is its position in the user's sequence (0, 1, ...), so
time-based splits (leave-one-out) keep the file's order. `item2attributes.json` maps item id ->
list of attribute ids (brand and categories, without names); it becomes the catalog's
`attributes` column (the ids joined by spaces) and is what semantic IDs can be built from when
there is no item text (`attribute_sets`).

Errors name the file, the line and the field (`user`, or `item N` for the N-th item of a line);
nothing is dropped silently.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.formats.common import RawInteractions, SideInfo
from recsys.data.parsing import Source
from recsys.errors import DataFormatError, UserInputError

log = logging.getLogger(__name__)

SEQUENCES_FILE = "sequences.txt"
ATTRIBUTES_FILE = "item2attributes.json"


def is_sequence_directory(path: Path) -> bool:
    return (Path(path) / SEQUENCES_FILE).is_file()


def sequences_file(path) -> Path:
    """The sequences file itself, or the `sequences.txt` a directory holds."""
    path = Path(path)
    if path.is_dir():
        if not is_sequence_directory(path):
            raise DataFormatError(path, f"no {SEQUENCES_FILE} in this directory")
        return path / SEQUENCES_FILE
    return path


@dataclass(frozen=True)
class SequenceFile:
    """Parsed lines: outside user ids, each user's items (outside ids, time order), and the line of each user."""

    path: Path
    users: list[str]
    items: list[list[str]]
    lines: np.ndarray

    def __len__(self) -> int:
        return len(self.users)

    @property
    def n_interactions(self) -> int:
        return sum(map(len, self.items))


def _positive_id(token: str, path: Path, line: int, field: str) -> str:
    if not token.isdigit() or int(token) < 1:
        raise DataFormatError(path, f"{token!r} is not a positive integer id (ids are 1-based)", line=line,
                              field=field)
    return str(int(token))  # "007" and "7" are one item


def read_sequence_file(path) -> SequenceFile:
    """Every user's line; a malformed line is a `DataFormatError` naming its line and field."""
    path = sequences_file(path)
    if not path.is_file():
        raise DataFormatError(path, "no such file")
    users: list[str] = []
    items: list[list[str]] = []
    lines: list[int] = []
    first_line_of: dict[str, int] = {}
    try:
        with open(path, encoding="utf-8") as handle:
            for number, text in enumerate(handle, start=1):
                tokens = text.split()
                if not tokens:
                    continue
                user = _positive_id(tokens[0], path, number, "user")
                if user in first_line_of:
                    raise DataFormatError(path, f"user {user} already has a line ({first_line_of[user]}); one line "
                                                f"per user", line=number, field="user")
                if len(tokens) < 2:
                    raise DataFormatError(path, f"user {user} has no items", line=number, field="item 1")
                first_line_of[user] = number
                users.append(user)
                items.append([_positive_id(t, path, number, f"item {i}") for i, t in enumerate(tokens[1:], start=1)])
                lines.append(number)
    except UnicodeDecodeError as error:
        raise DataFormatError(path, f"not a text file ({error})") from None
    if not users:
        raise DataFormatError(path, "empty file (expected lines 'user item item ...')")
    return SequenceFile(path, users, items, np.asarray(lines, dtype=np.int64))


def read_attributes(path) -> dict[str, list[int]]:
    """{item id: [attribute id, ...]} from `item2attributes.json`."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataFormatError(path, "no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataFormatError(path, f"not valid JSON ({error})") from None
    if not isinstance(payload, dict):
        raise DataFormatError(path, "must hold a JSON object {item id: [attribute id, ...]}")
    out: dict[str, list[int]] = {}
    for item, values in payload.items():
        if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                   for v in values):
            raise DataFormatError(path, "attributes must be a list of non-negative integers", field=str(item))
        key = str(item).strip()
        if not key.isdigit():
            raise DataFormatError(path, f"item id {item!r} is not a positive integer", field=str(item))
        out[str(int(key))] = values
    return out


def attributes_path(sequences: Path) -> Path:
    return Path(sequences).parent / ATTRIBUTES_FILE


def read(path, columns=None, sep=None, *, side: bool = True) -> tuple[RawInteractions, SideInfo]:
    """`recsys.data.formats.load`'s reader: rows in file order, timestamps = positions in the sequence."""
    if columns:
        raise UserInputError("format 'sequences' has fixed fields (user, items in order); columns= does not apply")
    if sep:
        raise UserInputError("format 'sequences' is separated by spaces; sep= does not apply")
    parsed = read_sequence_file(path)
    lengths = np.array([len(s) for s in parsed.items], dtype=np.int64)
    user = pd.Series(np.repeat(np.asarray(parsed.users, dtype=object), lengths), dtype=object)
    item = pd.Series([i for row in parsed.items for i in row], dtype=object)
    position = np.concatenate([np.arange(n, dtype=np.int64) for n in lengths.tolist()])
    # Every interaction of a line comes from that line (errors found later point there).
    source = Source(parsed.path, line_of_row=np.repeat(parsed.lines, lengths))
    raw = RawInteractions(user=user, item=item, timestamp=position, source=source,
                          fields={"user": "user", "item": "item"})
    info = SideInfo()
    attributes = attributes_path(parsed.path)
    if side and attributes.is_file():
        table = read_attributes(attributes)
        info = SideInfo(items=pd.DataFrame({"attributes": [" ".join(map(str, v)) for v in table.values()]},
                                           index=pd.Index(list(table), dtype=object)))
    log.info("%s: %d users, %d interactions%s", parsed.path, len(parsed), len(raw),
             f" + {ATTRIBUTES_FILE}" if info.items is not None else "")
    return raw, info


@dataclass(frozen=True)
class Sequences:
    """Users' item sequences in internal ids (items numbered by first appearance, as `load` numbers them)."""

    user_ids: list[str]
    item_ids: list[str]
    sequences: list[np.ndarray]
    attributes: list[list[int]] | None = None  # per internal item, when item2attributes.json is there

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


def read_sequences(path) -> Sequences:
    """The file as sequences of internal item ids (what the generative models and SASRec train on)."""
    parsed = read_sequence_file(path)
    index: dict[str, int] = {}
    sequences = [np.array([index.setdefault(i, len(index)) for i in row], dtype=np.int64) for row in parsed.items]
    item_ids = list(index)
    attributes = None
    path = attributes_path(parsed.path)
    if path.is_file():
        table = read_attributes(path)
        lacking = [i for i in item_ids if i not in table]
        if lacking:
            log.warning("%s: %d items of the sequences have no attributes (first: %s)", path, len(lacking),
                        lacking[:3])
        attributes = [table.get(i, []) for i in item_ids]
    log.info("%s: %d sequences over %d items", parsed.path, len(sequences), len(item_ids))
    return Sequences(parsed.users, item_ids, sequences, attributes)
