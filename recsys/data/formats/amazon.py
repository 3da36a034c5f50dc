"""Amazon review data (McAuley et al., 2014 and 2018 releases): JSON lines, plain or gzip.

Reviews: one JSON object per line with reviewerID (user), asin (item), overall (rating) and
unixReviewTime (timestamp; when a line lacks it, reviewTime 'MM DD, YYYY' is read as UTC
midnight). reviewText and summary are kept by `read_reviews` for preference extraction.

Item metadata (`meta=` a path, or found beside the reviews: `meta_<name>.json[.gz]`, else the
only `meta_*.json*` there): one object per line with asin, title, description (text or list),
categories (2014: list of category paths) or category (2018: one path), brand, price. The 2014
meta files are Python literals rather than JSON; both are accepted. Catalog: title; text =
description; category = the second level of the first category path (the first level is the
department every item of one file shares), or the first level when that is all there is;
`categories` = that path joined by ' > '; brand and price as text. The 2018 meta files repeat
some asins; the first entry is kept and the repeats are counted in the log.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.formats.common import RawInteractions, SideInfo
from recsys.data.parsing import Source, parse_float, parse_timestamp
from recsys.data.tables import open_text
from recsys.errors import DataFormatError, UserInputError

log = logging.getLogger(__name__)

JSON_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")
REQUIRED = ("reviewerID", "asin", "overall")


def is_json_lines(path: Path) -> bool:
    return Path(path).name.lower().endswith(JSON_SUFFIXES)


def reviews_file(path) -> Path:
    """The reviews file itself, or the one (non-`meta_`) JSON-lines file a directory holds."""
    path = Path(path)
    if not path.is_dir():
        return path
    candidates = [p for p in sorted(path.iterdir()) if is_json_lines(p) and not p.name.startswith("meta_")]
    if len(candidates) != 1:
        raise DataFormatError(path, f"expected one Amazon reviews JSON-lines file here, found {len(candidates)}")
    return candidates[0]


def _objects(path: Path, literal_ok: bool = False):
    """(line number, dict) for each non-blank line; a line that is not an object is an error."""
    if not path.is_file():
        raise DataFormatError(path, "no such file")
    empty = True
    try:
        with open_text(path) as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                empty = False
                yield number, _parse_object(line, path, number, literal_ok)
    except (OSError, EOFError, UnicodeDecodeError) as error:  # a truncated gzip or a binary file
        raise DataFormatError(path, f"cannot read ({error})") from error
    if empty:
        raise DataFormatError(path, "empty file")


def _parse_object(line: str, path: Path, number: int, literal_ok: bool) -> dict:
    try:
        value = json.loads(line.rstrip("\r\n"))
    except json.JSONDecodeError as error:
        value = None
        if literal_ok:  # the 2014 metadata files are Python dict literals
            try:
                value = ast.literal_eval(line.strip())
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                value = None
        if value is None:
            raise DataFormatError(path, f"malformed JSON ({error.msg}, column {error.colno})", line=number) from error
    if not isinstance(value, dict):
        raise DataFormatError(path, f"expected a JSON object, got {type(value).__name__}", line=number)
    return value


def _review_time(record: dict, path: Path, number: int):
    if "unixReviewTime" in record:
        return record["unixReviewTime"]
    if "reviewTime" in record:
        try:
            day = datetime.strptime(str(record["reviewTime"]).strip(), "%m %d, %Y")
        except ValueError as error:
            raise DataFormatError(path, f"cannot parse reviewTime {record['reviewTime']!r} as 'MM DD, YYYY'",
                                  line=number, field="reviewTime") from error
        return int(day.replace(tzinfo=UTC).timestamp())
    raise DataFormatError(path, "missing field (and no reviewTime)", line=number, field="unixReviewTime")


def read_reviews(path, keep_text: bool = True) -> tuple[pd.DataFrame, Source]:
    """Reviews as a frame: user, item, timestamp (int64), rating (float32)[, summary, text].

    Also returns the `Source` mapping frame rows to file lines.
    """
    path = reviews_file(path)
    lines, users, items, ratings, times, summaries, texts = [], [], [], [], [], [], []
    for number, record in _objects(path):
        for field in REQUIRED:
            if field not in record or record[field] is None:
                raise DataFormatError(path, "the JSON object lacks this field", line=number, field=field)
        lines.append(number)
        users.append(record["reviewerID"])
        items.append(record["asin"])
        ratings.append(record["overall"])
        times.append(_review_time(record, path, number))
        if keep_text:
            summaries.append(record.get("summary") or "")
            texts.append(record.get("reviewText") or "")
    source = Source(path, line_of_row=np.asarray(lines, dtype=np.int64))
    frame = pd.DataFrame({"user": pd.Series(users, dtype=str), "item": pd.Series(items, dtype=str)})
    frame["timestamp"] = parse_timestamp(pd.Series(times, dtype=object), source, "unixReviewTime")
    frame["rating"] = parse_float(pd.Series(ratings, dtype=object), source, "overall")
    if keep_text:
        frame["summary"], frame["text"] = summaries, texts
    return frame, source


def read_interactions(path) -> RawInteractions:
    frame, source = read_reviews(path, keep_text=False)
    return RawInteractions(user=frame["user"], item=frame["item"], timestamp=frame["timestamp"].to_numpy(),
                           rating=frame["rating"].to_numpy(), source=source,
                           fields={"user": "reviewerID", "item": "asin", "rating": "overall",
                                   "timestamp": "unixReviewTime"})


def meta_file(reviews: Path) -> Path | None:
    """The metadata file beside a reviews file, by name, else the only `meta_*` file there."""
    core = re.sub(r"\.(jsonl?)(\.gz)?$", "", reviews.name, flags=re.IGNORECASE)
    core = re.sub(r"^reviews_", "", core)
    core = re.sub(r"_5$", "", core)
    for suffix in JSON_SUFFIXES:
        candidate = reviews.parent / f"meta_{core}{suffix}"
        if candidate.is_file():
            return candidate
    others = [p for p in sorted(reviews.parent.glob("meta_*")) if is_json_lines(p)]
    return others[0] if len(others) == 1 else None


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return " ".join(_text(v) for v in value if v)
    return str(value)


def _category_path(record: dict) -> list[str]:
    paths = record.get("categories")
    if isinstance(paths, list) and paths:
        first = paths[0]
        return [str(c) for c in first] if isinstance(first, list) else [str(c) for c in paths]
    path = record.get("category")
    if isinstance(path, list):
        return [str(c) for c in path]
    return [str(path)] if path else []


def read_meta(path) -> pd.DataFrame:
    """Item metadata as a side table indexed by asin: title, text, category, categories, brand, price."""
    path = Path(path)
    rows: dict[str, dict] = {}
    repeats = 0
    for number, record in _objects(path, literal_ok=True):
        asin = record.get("asin")
        if not asin:
            raise DataFormatError(path, "the JSON object lacks this field", line=number, field="asin")
        asin = str(asin)
        if asin in rows:
            repeats += 1
            continue
        category_path = _category_path(record)
        rows[asin] = {
            "title": _text(record.get("title")), "text": _text(record.get("description")),
            "category": category_path[1] if len(category_path) > 1 else (category_path[0] if category_path else ""),
            "categories": " > ".join(category_path), "brand": _text(record.get("brand")),
            "price": _text(record.get("price")),
        }
    if repeats:
        log.warning("%s: %d repeated asins; kept the first entry of each", path, repeats)
    return pd.DataFrame.from_dict(rows, orient="index")


def read(path, columns=None, sep=None, *, meta=None, side: bool = True) -> tuple[RawInteractions, SideInfo]:
    if columns or sep:
        raise UserInputError("the amazon format has fixed fields; use format='table' for other layouts")
    raw = read_interactions(path)
    if not side or meta is False:
        return raw, SideInfo()
    meta_path = Path(meta) if meta else meta_file(raw.source.path)
    if meta_path is None:
        log.info("%s: Amazon reviews without item metadata", raw.source.path)
        return raw, SideInfo()
    log.info("%s: Amazon reviews with metadata %s", raw.source.path, meta_path.name)
    return raw, SideInfo(items=read_meta(meta_path))
