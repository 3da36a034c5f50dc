"""prefengine's own file form of a data set: a directory of tables plus `dataset.json`.

Layout (`<ext>` is `parquet` or `csv`, the same for every table of one directory):

- `interactions.<ext>`: user, item, timestamp[, rating][, label] with outside ids as strings;
- `items.<ext>`: one row per item in vocabulary order: item[, title, text, category, attributes...];
- `users.<ext>`: one row per user in vocabulary order: user[, the Big-Five traits, demographics...];
- `<name>.<ext>`: any extra table (the world adds truth, reviews, preferences);
- `dataset.json`: {"format": "prefengine", "version": 1, "file_format": ..., "tables": [...],
  "n_users", "n_items", "n_interactions", "catalog": bool, "profiles": bool, free metadata...}.

`items` and `users` are always written, because they fix the vocabulary (its order, and ids
with no interactions). An `items` table with only the `item` column means "no catalog"; a
`users` table with only the `user` column means "no profiles". Reading back gives the same
`InteractionData`: same internal ids, arrays, catalog and profiles.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.interactions import BIG_FIVE, Catalog, IdVocab, InteractionData, UserProfiles
from recsys.data.parsing import Source, interaction_columns, profiles_from_frame, side_table
from recsys.data.tables import read_table_with_source, write_table
from recsys.errors import DataFormatError, UserInputError

log = logging.getLogger(__name__)

FORMAT_NAME = "prefengine"
FORMAT_VERSION = 1
MANIFEST = "dataset.json"
FILE_FORMATS = {"parquet": ".parquet", "csv": ".csv"}
CORE_TABLES = ("interactions", "items", "users")
_RESERVED_KEYS = ("format", "version", "file_format", "tables", "n_users", "n_items", "n_interactions",
                  "catalog", "profiles")
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


# writing -------------------------------------------------------------------------------------
def write_native(directory, data: InteractionData, tables: dict[str, pd.DataFrame] | None = None,
                 file_format: str = "parquet", metadata: dict | None = None) -> Path:
    """Write `data` (and any extra `tables`) as a prefengine data directory; returns the directory.

    `metadata` goes into `dataset.json` beside the fixed keys (it must be JSON-serializable and
    may not reuse them). Existing files of the same names are overwritten.
    """
    if file_format not in FILE_FORMATS:
        raise UserInputError(f"file_format must be one of {sorted(FILE_FORMATS)}, got {file_format!r}")
    tables = dict(tables or {})
    for name in tables:
        if name in CORE_TABLES or not _TABLE_NAME.match(name) or name == Path(MANIFEST).stem:
            raise UserInputError(f"cannot write an extra table named {name!r}: names must be identifiers "
                                 f"other than {', '.join(CORE_TABLES)}")
    clash = sorted(set(metadata or {}) & set(_RESERVED_KEYS))
    if clash:
        raise UserInputError(f"metadata may not set the reserved keys {clash}")

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ext = FILE_FORMATS[file_format]
    frames = {"interactions": _interactions_frame(data),
              "items": _items_frame(data), "users": _users_frame(data), **tables}
    for name, frame in frames.items():
        write_table(frame, directory / f"{name}{ext}")
    manifest = {
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "file_format": file_format,
        "tables": list(frames), "n_users": data.n_users, "n_items": data.n_items,
        "n_interactions": len(data), "catalog": data.catalog is not None,
        "profiles": data.profiles is not None, **(metadata or {}),
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, default=_json_default) + "\n")
    log.info("wrote %s (%s) to %s", data.describe(), file_format, directory)
    return directory


def _interactions_frame(data: InteractionData) -> pd.DataFrame:
    # Outside ids as categoricals: Parquet stores them as dictionary columns (small, and fast
    # to read back); CSV writes them as plain strings.
    frame = data.to_frame(outside_ids=False)
    frame["user"] = pd.Categorical.from_codes(data.user, categories=pd.Index(data.vocab.users, dtype=str))
    frame["item"] = pd.Categorical.from_codes(data.item, categories=pd.Index(data.vocab.items, dtype=str))
    return frame


def _items_frame(data: InteractionData) -> pd.DataFrame:
    frame = pd.DataFrame({"item": pd.Series(data.vocab.items, dtype=str)})
    if data.catalog is None:
        return frame
    if len(data.catalog) != data.n_items:
        raise ValueError(f"catalog has {len(data.catalog)} rows, vocabulary has {data.n_items} items")
    if "item" in data.catalog.frame:
        raise ValueError("a catalog column may not be named 'item' (the native form uses it for the id)")
    return pd.concat([frame, data.catalog.frame.reset_index(drop=True)], axis=1)


def _users_frame(data: InteractionData) -> pd.DataFrame:
    frame = pd.DataFrame({"user": pd.Series(data.vocab.users, dtype=str)})
    if data.profiles is None:
        return frame
    if len(data.profiles) != data.n_users:
        raise ValueError(f"profiles have {len(data.profiles)} rows, vocabulary has {data.n_users} users")
    traits = pd.DataFrame(data.profiles.traits, columns=list(BIG_FIVE))
    demographics = data.profiles.demographics.reset_index(drop=True)
    if set(demographics.columns) & {"user", *BIG_FIVE}:
        raise ValueError("demographic columns may not reuse the names 'user' or the Big-Five traits")
    return pd.concat([frame, traits, demographics], axis=1)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"metadata value {value!r} is not JSON-serializable")


# reading -------------------------------------------------------------------------------------
def is_native(directory) -> bool:
    """Whether `directory` holds a prefengine data set (a `dataset.json` naming the format)."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("format") == FORMAT_NAME
    except (ValueError, AttributeError):
        return False


def read_native_metadata(directory) -> dict:
    """The parsed `dataset.json` of a prefengine data directory, checked for format and version."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise DataFormatError(path, f"missing: {Path(directory)} is not a prefengine data directory")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DataFormatError(path, f"not valid JSON ({error.msg})", line=error.lineno) from error
    if not isinstance(manifest, dict):
        raise DataFormatError(path, "must hold a JSON object")
    if manifest.get("format") != FORMAT_NAME:
        raise DataFormatError(path, f"format is {manifest.get('format')!r}, expected {FORMAT_NAME!r}",
                              field="format")
    if manifest.get("version") != FORMAT_VERSION:
        raise DataFormatError(path, f"version {manifest.get('version')!r} is not supported "
                                    f"(this prefengine reads version {FORMAT_VERSION})", field="version")
    if manifest.get("file_format") not in FILE_FORMATS:
        raise DataFormatError(path, f"file_format must be one of {sorted(FILE_FORMATS)}", field="file_format")
    return manifest


def read_native_table(directory, name: str) -> pd.DataFrame:
    """One table of a prefengine data directory as written (ids as strings)."""
    frame = _read(Path(directory), read_native_metadata(directory), name)[0]
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.CategoricalDtype):
            frame[column] = frame[column].astype(str)
    return frame


def _read(directory: Path, manifest: dict, name: str) -> tuple[pd.DataFrame, Source]:
    path = directory / f"{name}{FILE_FORMATS[manifest['file_format']]}"
    if name not in manifest.get("tables", []) and not path.exists():
        raise DataFormatError(directory / MANIFEST, f"the data set has no table {name!r} "
                              f"(tables: {', '.join(manifest.get('tables', []))})", field="tables")
    return read_table_with_source(path, allow_empty=name != "interactions" or manifest.get("n_interactions") == 0)


def read_native_interactions(directory) -> tuple[dict, Source]:
    """The parsed interaction rows (outside ids, as `recsys.data.parsing.interaction_columns` gives
    them) and their `Source`, without the vocabulary: for checking them against another one."""
    directory = Path(directory)
    frame, source = _read(directory, read_native_metadata(directory), "interactions")
    return interaction_columns(frame, source), source


def read_native(directory) -> InteractionData:
    """Read a prefengine data directory back into the `InteractionData` that was written."""
    directory = Path(directory)
    manifest = read_native_metadata(directory)
    columns, source = read_native_interactions(directory)

    items, catalog = _read_items(directory, manifest)
    users, profiles = _read_users(directory, manifest)
    vocab = IdVocab(users, items)
    user = _encode(vocab.users, columns["user"], source, "user", "users")
    item = _encode(vocab.items, columns["item"], source, "item", "items")
    data = InteractionData(user=user, item=item, timestamp=columns["timestamp"], vocab=vocab,
                           rating=columns["rating"], label=columns["label"], catalog=catalog, profiles=profiles)
    log.info("read %s from %s", data.describe(), directory)
    return data


def _encode(vocab_ids: np.ndarray, outside: pd.Series, source: Source, field: str, table: str) -> np.ndarray:
    if isinstance(outside.dtype, pd.CategoricalDtype):
        category_codes = pd.Index(vocab_ids).get_indexer(outside.cat.categories)
        codes = category_codes[outside.cat.codes.to_numpy()]
    else:
        codes = pd.Index(vocab_ids).get_indexer(outside)
    if (codes < 0).any():
        row = int(np.flatnonzero(codes < 0)[0])
        raise source.error(f"{field} {outside.iloc[row]!r} is not in the {table} table", row=row, field=field)
    return codes.astype(np.int64)


def _read_items(directory: Path, manifest: dict) -> tuple[np.ndarray, Catalog | None]:
    frame, source = _read(directory, manifest, "items")
    side = side_table(frame, "item", source, "item")
    return side.index.to_numpy(dtype=object), (Catalog(side) if len(side.columns) else None)


def _read_users(directory: Path, manifest: dict) -> tuple[np.ndarray, UserProfiles | None]:
    frame, source = _read(directory, manifest, "users")
    side = side_table(frame, "user", source, "user")
    profiles = profiles_from_frame(side, source) if len(side.columns) else None
    return side.index.to_numpy(dtype=object), profiles
