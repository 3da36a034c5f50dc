"""RecBole atomic files: `<name>.inter`, with `<name>.item` and `<name>.user` beside it.

Each file is tab-separated with a header of `field:type` entries, type one of token,
token_seq, float, float_seq (sequences are space-separated inside the field), for example
`user_id:token	item_id:token	rating:float	timestamp:float`. Values are read without quote
handling, as RecBole does.

Interactions come from the fields user_id, item_id, timestamp, rating and label (RecBole's
defaults), or those `columns` names, e.g. `columns={"timestamp": "time"}`. The `.item` file
becomes the catalog: title from the first of title/movie_title/item_title/name, text from
description/text, category from the first token of categories/category/class/genre/genres;
every other field is kept as an attribute (float fields as numbers, sequences as their text).
The `.user` file becomes the profiles (Big-Five fields when present, the rest demographics).
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

import pandas as pd

from recsys.data.formats.common import RawInteractions, SideInfo
from recsys.data.formats.table import check_mapping
from recsys.data.parsing import Source, interaction_columns, parse_float, side_table
from recsys.data.tables import read_table_with_source
from recsys.errors import DataFormatError

log = logging.getLogger(__name__)

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")
DEFAULT_FIELDS = {"user": "user_id", "item": "item_id", "timestamp": "timestamp", "rating": "rating",
                  "label": "label"}
TITLE_FIELDS = ("title", "movie_title", "item_title", "name")
TEXT_FIELDS = ("description", "text", "item_text")
CATEGORY_FIELDS = ("categories", "category", "class", "genre", "genres")
_HEADER_ENTRY = re.compile(r"^([^:\s]+):([a-z_]+)$")
SPLIT_SUFFIXES = (".train.inter", ".valid.inter", ".test.inter")


def looks_like_recbole_header(line: str) -> bool:
    entries = line.split("\t")
    return bool(entries) and all(_HEADER_ENTRY.match(e.strip()) and e.strip().split(":")[1] in FIELD_TYPES
                                 for e in entries)


def read_atomic(path: Path) -> tuple[pd.DataFrame, dict[str, str], Source]:
    """An atomic file as text columns named by field, the field types, and its `Source`."""
    path = Path(path)
    frame, source = read_table_with_source(path, "\t", all_strings=True, quoting=csv.QUOTE_NONE)
    types: dict[str, str] = {}
    for entry in map(str, frame.columns):
        match = _HEADER_ENTRY.match(entry.strip())
        if not match or match.group(2) not in FIELD_TYPES:
            raise DataFormatError(path, f"header entry {entry!r} is not 'name:type' with type one of "
                                        f"{', '.join(FIELD_TYPES)}", line=1, field=entry)
        if match.group(1) in types:
            raise DataFormatError(path, f"field {match.group(1)!r} appears twice in the header", line=1,
                                  field=entry)
        types[match.group(1)] = match.group(2)
    frame.columns = list(types)
    return frame, types, source


def inter_file(path) -> Path:
    """The `.inter` file itself, or the one a RecBole dataset directory holds."""
    path = Path(path)
    if not path.is_dir():
        return path
    candidates = [p for p in sorted(path.glob("*.inter")) if not p.name.endswith(SPLIT_SUFFIXES)]
    named = path / f"{path.name}.inter"
    if named.is_file():
        return named
    if len(candidates) == 1:
        return candidates[0]
    if not candidates and list(path.glob("*.inter")):
        raise DataFormatError(path, "holds only pre-split .train/.valid/.test.inter files; use load_presplit")
    raise DataFormatError(path, f"expected one .inter file here, found {len(candidates)}")


def dataset_stem(inter: Path) -> str:
    """`ml-100k` for ml-100k.inter and ml-100k.train.inter."""
    name = inter.name
    for suffix in (*SPLIT_SUFFIXES, ".inter"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return inter.stem


def read_interactions(path, columns: dict[str, str] | None = None) -> RawInteractions:
    path = inter_file(path)
    frame, types, source = read_atomic(path)
    fields = DEFAULT_FIELDS | check_mapping(columns)
    present = {name: column for name, column in fields.items() if column in types}
    for needed in ("user", "item"):
        if needed not in present:
            raise DataFormatError(path, f"no {needed} field {fields[needed]!r} in the header (fields: "
                                        f"{', '.join(types)})", line=1, field=fields[needed])
    for column in (columns or {}).values():
        if column not in types:
            raise DataFormatError(path, f"no field {column!r} in the header", line=1, field=column)
    if "timestamp" not in present:
        log.warning("%s: no timestamp field; every timestamp is 0 (time-based splits use file order)", path)
    parsed = interaction_columns(frame, source, present, timestamp_required=False)
    return RawInteractions.from_columns(parsed, source, present)


def _typed_side(path: Path, id_field: str, what: str) -> tuple[pd.DataFrame, dict[str, str]]:
    frame, types, source = read_atomic(path)
    if id_field not in types:
        raise DataFormatError(path, f"no {id_field!r} field in the header (fields: {', '.join(types)})",
                              line=1, field=id_field)
    for column, kind in types.items():
        if kind == "float" and column != id_field:
            frame[column] = _floats_allowing_empty(frame[column], source, column)
    return side_table(frame, id_field, source, what), types


def _floats_allowing_empty(values: pd.Series, source: Source, column: str) -> pd.Series:
    # Side fields may be empty (RecBole fills them); only a present, non-numeric value is an error.
    present = values.notna().to_numpy()
    numbers = pd.Series(float("nan"), index=values.index, dtype="float64")
    if present.any():
        parsed = parse_float(values[present].reset_index(drop=True), source.subset(present), column)
        numbers[present] = parsed.astype("float64")
    return numbers


def read_items(path: Path, item_field: str) -> pd.DataFrame:
    table, types = _typed_side(path, item_field, "item")
    title = next((f for f in TITLE_FIELDS if f in table), None)
    text = next((f for f in TEXT_FIELDS if f in table), None)
    category = next((f for f in CATEGORY_FIELDS if f in table), None)
    catalog = pd.DataFrame(index=table.index)
    catalog["title"] = table[title].fillna("").astype(str) if title else ""
    catalog["text"] = table[text].fillna("").astype(str) if text else ""
    if category:
        values = table[category].fillna("").astype(str)
        catalog["category"] = values.str.split(" ").str[0] if types[category].endswith("_seq") else values
    else:
        catalog["category"] = ""
    rest = [c for c in table.columns if c not in {title, text} and c not in catalog.columns]
    return pd.concat([catalog, table[rest]], axis=1)


def read_users(path: Path, user_field: str) -> pd.DataFrame:
    return _typed_side(path, user_field, "user")[0]


def read(path, columns=None, sep=None, *, side: bool = True) -> tuple[RawInteractions, SideInfo]:
    raw = read_interactions(path, columns)
    if not side:
        return raw, SideInfo()
    inter = raw.source.path
    stem = inter.parent / dataset_stem(inter)
    item_path, user_path = stem.with_name(stem.name + ".item"), stem.with_name(stem.name + ".user")
    info = SideInfo(
        items=read_items(item_path, raw.fields["item"]) if item_path.is_file() else None,
        users=read_users(user_path, raw.fields["user"]) if user_path.is_file() else None,
    )
    log.info("%s: RecBole atomic files%s", inter,
             "".join(f" + {p.name}" for p, t in ((item_path, info.items), (user_path, info.users)) if t is not None))
    return raw, info

