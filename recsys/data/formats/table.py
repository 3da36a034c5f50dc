"""Generic interaction tables: CSV, TSV or Parquet with a column mapping.

`columns` maps the canonical names to the file's columns, e.g.
`{"user": "customer", "item": "sku", "timestamp": "ts", "rating": "stars"}`. A field the mapping
does not name is looked up under its canonical name and then under common aliases (user_id,
itemId, unixReviewTime, ...); what was picked is logged. Only user and item are required: a
table without a timestamp gets timestamp 0 everywhere (time-based splits then fall back to file
order), and a warning says so.

A text table without a header takes `names=[...]`, its column names in order (then mapped
like any others). Optional side tables (`items=`, `users=`): tables whose first matching column (`item`/`item_id`,
`user`/`user_id`, or the mapped id column) is the id and whose other columns become the
catalog (title, text, category, attributes) or the profiles (Big-Five traits, demographics).
"""

from __future__ import annotations

import logging
from pathlib import Path

from recsys.data.formats.common import RawInteractions, SideInfo
from recsys.data.parsing import interaction_columns, side_table
from recsys.data.tables import is_parquet, read_table_with_source
from recsys.errors import DataFormatError, UserInputError

log = logging.getLogger(__name__)

FIELDS = ("user", "item", "timestamp", "rating", "label")
ALIASES: dict[str, tuple[str, ...]] = {
    "user": ("user", "user_id", "userId", "userid", "uid", "reviewerID", "customer_id"),
    "item": ("item", "item_id", "itemId", "itemid", "iid", "movieId", "movie_id", "asin", "product_id"),
    "timestamp": ("timestamp", "time", "ts", "datetime", "date", "unixReviewTime", "unix_time"),
    "rating": ("rating", "ratings", "score", "overall", "stars"),
    "label": ("label", "click", "clicked", "is_positive"),
}


def check_mapping(columns: dict[str, str] | None) -> dict[str, str]:
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(FIELDS))
    if unknown:
        raise UserInputError(f"column mapping keys must be among {FIELDS}, got {unknown}")
    return columns


def resolve_columns(available, columns: dict[str, str] | None, path: Path) -> dict[str, str]:
    """Canonical name -> the file's column: the mapping first, then the canonical name and aliases."""
    columns = check_mapping(columns)
    available = list(available)
    resolved: dict[str, str] = {}
    for name in FIELDS:
        if name in columns:
            resolved[name] = columns[name]
            continue
        match = next((alias for alias in ALIASES[name] if alias in available), None)
        if match is not None:
            resolved[name] = match
    guessed = {k: v for k, v in resolved.items() if k not in columns and k != v}
    if guessed:
        log.info("%s: read columns by alias %s", path, guessed)
    return resolved


def read_interactions(path, columns: dict[str, str] | None = None, sep: str | None = None,
                      names: list[str] | None = None) -> RawInteractions:
    path = Path(path)
    candidates = {alias for name in ("user", "item") for alias in ALIASES[name]} | set((columns or {}).values())
    if names is not None and is_parquet(path):
        raise UserInputError("names= is for header-less text tables; Parquet files name their columns")
    frame, source = read_table_with_source(path, sep, string_columns=candidates, header=names is None,
                                           names=list(names) if names is not None else None)
    resolved = resolve_columns(frame.columns, columns, path)
    for needed in ("user", "item"):
        if needed not in resolved:
            have = ", ".join(map(str, frame.columns))
            raise DataFormatError(path, f"no {needed} column (columns present: {have}); name it with "
                                        f"columns={{'{needed}': '<column>'}}", field=needed)
    if "timestamp" not in resolved:
        log.warning("%s: no timestamp column; every timestamp is 0 (time-based splits use file order)", path)
    parsed = interaction_columns(frame, source, resolved, timestamp_required=False)
    return RawInteractions.from_columns(parsed, source, resolved)


def read_side_table(path, id_columns: tuple[str, ...], what: str, sep: str | None = None):
    """A side table indexed by outside id: the first of `id_columns` the file has is the id."""
    path = Path(path)
    frame, source = read_table_with_source(path, sep, string_columns=id_columns)
    id_column = next((c for c in id_columns if c in frame.columns), id_columns[0])
    return side_table(frame, id_column, source, what), source


def read(path, columns: dict[str, str] | None = None, sep: str | None = None, *, items=None, users=None,
         names: list[str] | None = None, side: bool = True) -> tuple[RawInteractions, SideInfo]:
    raw = read_interactions(path, columns, sep, names)
    info = SideInfo()
    if side and items is not None:
        info.items = read_side_table(items, _id_columns("item", raw), "item", sep)[0]
    if side and users is not None:
        info.users = read_side_table(users, _id_columns("user", raw), "user", sep)[0]
    return raw, info


def _id_columns(name: str, raw: RawInteractions) -> tuple[str, ...]:
    return tuple(dict.fromkeys((raw.fields.get(name, name), *ALIASES[name])))

