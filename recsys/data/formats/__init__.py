"""Outside data formats -> `InteractionData`, once, at the edge.

`load(path, format=...)` reads one data set; `load_presplit(train, valid, test)` reads files that
are already split, with one vocabulary taken from train. Formats:

- "table": generic CSV/TSV/Parquet with a column mapping (`recsys.data.formats.table`);
- "movielens": u.data, ratings.dat, ratings.csv (+ movies and users beside them);
- "recbole": RecBole atomic files .inter (+ .item, .user);
- "amazon": Amazon review JSON lines (+ item metadata);
- "ads": the ADS corpus of user folders (ratings, TIPI traits, demographics; `recsys.data.formats.ads`);
- "sequences": the S3-Rec / SASRec layout, `sequences.txt` (`user item item ...` in time order) with
  `item2attributes.json` (`recsys.data.formats.sequences`; timestamps are positions in the sequence);
- "prefengine": the native directory (`recsys.data.native`);
- "auto": picked by file name and first line (`recsys.data.formats.detect`); the pick is logged.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from recsys.data.formats import ads, amazon, movielens, recbole, sequences, table
from recsys.data.formats.common import RawInteractions, assemble, check_unused_side
from recsys.data.formats.detect import detect_format
from recsys.data.interactions import InteractionData, Split
from recsys.data.native import read_native, read_native_interactions
from recsys.data.tables import read_table, write_table
from recsys.errors import UserInputError

log = logging.getLogger(__name__)

READERS = {"table": table.read, "movielens": movielens.read, "recbole": recbole.read, "amazon": amazon.read,
           "ads": ads.read,
           "sequences": sequences.read}
FORMATS = (*READERS, "prefengine")
FORMAT_ALIASES = {"native": "prefengine", "csv": "table", "tsv": "table", "parquet": "table"}
# Keyword options each reader takes beyond (path, columns, sep).
OPTIONS = {"table": ("items", "users", "names"), "movielens": (), "recbole": (), "amazon": ("meta",), "ads": (),
           "sequences": (), "prefengine": ()}

__all__ = ["FORMATS", "detect_format", "load", "load_presplit", "read_table", "write_table"]


def resolve_format(path, format: str) -> str:
    """The format to read `path` as: `format` itself, or the detected one for "auto" (logged)."""
    if format == "auto":
        picked, reason = detect_format(path)
        log.info("format auto: read %s as '%s' (%s)", path, picked, reason)
        return picked
    format = FORMAT_ALIASES.get(format, format)
    if format not in FORMATS:
        raise UserInputError(f"unknown data format {format!r}; known: auto, {', '.join(FORMATS)}")
    return format


def _check_options(format: str, columns, sep, options: dict) -> None:
    unknown = sorted(set(options) - set(OPTIONS[format]))
    if unknown:
        allowed = ", ".join(OPTIONS[format]) or "none"
        raise UserInputError(f"format {format!r} takes no option(s) {unknown} (its options: {allowed})")
    if format == "prefengine" and (columns or sep):
        raise UserInputError("format 'prefengine' has fixed columns; columns= and sep= do not apply")


def _native_directory(path: Path) -> Path:
    return path.parent if path.is_file() else path


def load(path, format: str = "auto", columns: dict[str, str] | None = None, sep: str | None = None,
         unused_side: str = "drop", **options) -> InteractionData:
    """Read a data set in any known format into an `InteractionData`.

    `columns` maps canonical names (user, item, timestamp, rating, label) to the file's columns
    (format "table", and field names for "recbole"); `sep` overrides the delimiter ("table").
    `unused_side`: "drop" (default) leaves out side-file items/users that no interaction names,
    "keep" keeps them in the vocabulary. Format options: table: items=, users= (side tables), names= (column names of a
    header-less file);
    amazon: meta= (metadata file, or False for none).
    """
    path = Path(path)
    fmt = resolve_format(path, format)
    _check_options(fmt, columns, sep, options)
    check_unused_side(unused_side)
    if fmt == "prefengine":
        data = read_native(_native_directory(path))
    else:
        raw, side = READERS[fmt](path, columns, sep, **options)
        data = assemble(raw, side, unused_side)
    log.info("loaded %s from %s (%s)", data.describe(), path, fmt)
    return data


def load_presplit(train, valid, test, format: str = "auto", columns: dict[str, str] | None = None,
                  sep: str | None = None, unused_side: str = "drop", **options) -> Split:
    """Read train/validation/test files that are already split, sharing one vocabulary from train.

    `valid` may be None (no validation file, as with MovieLens-100K's u1.base/u1.test): the
    validation part is then empty. Side information (catalog, profiles) comes from beside the
    train file. A user or item in
    valid or test that train never names is a `DataFormatError` naming that file, line and field:
    it is not dropped. A (user, item) pair in both train and valid/test is allowed (files split
    elsewhere may hold repeats) and counted in a warning; the evaluator masks train items anyway.
    """
    fmt_train = resolve_format(Path(train), format)
    _check_options(fmt_train, columns, sep, options)
    train_data = load(train, fmt_train, columns, sep, unused_side=unused_side, **options)
    parts = []
    for path in (valid, test):
        if path is None:
            parts.append(train_data.subset(np.zeros(len(train_data), dtype=bool)))
            continue
        fmt = resolve_format(Path(path), format)
        _check_options(fmt, columns, sep, {k: v for k, v in options.items() if k in OPTIONS[fmt]})
        raw = _raw_rows(Path(path), fmt, columns, sep)
        parts.append(encode_with(raw, train_data, train))
    split = Split(train_data, *parts)
    _warn_overlap(split)
    log.info("pre-split data: %s", split.describe())
    return split


def _raw_rows(path: Path, fmt: str, columns, sep) -> RawInteractions:
    if fmt == "prefengine":
        parsed, source = read_native_interactions(_native_directory(path))
        return RawInteractions.from_columns(parsed, source)
    return READERS[fmt](path, columns, sep, side=False)[0]


def encode_with(raw: RawInteractions, train: InteractionData, train_path) -> InteractionData:
    """Rows of a valid/test file in train's vocabulary; an id train lacks is an error at its line."""
    users = train.vocab.encode_users(raw.user)
    items = train.vocab.encode_items(raw.item)
    unknown = (users < 0) | (items < 0)
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        what, value = ("user", raw.user.iloc[row]) if users[row] < 0 else ("item", raw.item.iloc[row])
        raise raw.source.error(f"{what} {value!r} does not appear in the training file {train_path} "
                               f"(the vocabulary comes from train)", row=row, field=raw.fields[what])
    return InteractionData(user=users, item=items, timestamp=raw.timestamp, vocab=train.vocab, rating=raw.rating,
                           label=raw.label, catalog=train.catalog, profiles=train.profiles)


def _warn_overlap(split: Split) -> None:
    from recsys.data.splits import count_overlap

    for name in ("valid", "test"):
        shared = count_overlap(split.train, getattr(split, name))
        if shared:
            log.warning("pre-split data: %d %s rows repeat a (user, item) pair of train", shared, name)

