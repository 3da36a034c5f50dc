"""Turning raw columns read from a file into the canonical arrays, with errors that name where.

Every reader (the native form, the outside formats) reads a file into a DataFrame and then
asks this module for ids, timestamps, ratings and labels. A value that does not parse raises
`DataFormatError` with the file, the 1-based line of the offending row and the column.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.interactions import BIG_FIVE, UserProfiles
from recsys.errors import DataFormatError


@dataclass(frozen=True)
class Source:
    """Where a frame came from, so a bad row can be reported as a line of the file.

    `first_line` is the 1-based line of frame row 0 (2 for a CSV with one header line). For
    Parquet there are no lines; row numbers (1-based) stand in for them, and `unit` says so.
    `line_of_row`, when given, maps frame rows to file lines explicitly (files with skipped
    blank lines or comments).
    """

    path: Path
    first_line: int = 2
    unit: str = "line"
    line_of_row: np.ndarray | None = None

    def line(self, row: int) -> int:
        if self.line_of_row is not None:
            return int(self.line_of_row[row])
        return self.first_line + int(row)

    def lines(self, rows=None) -> np.ndarray:
        """File lines of frame rows (all rows of the frame the source describes when `rows` is None)."""
        if rows is None:
            if self.line_of_row is None:
                raise ValueError("lines() of all rows needs line_of_row")
            return self.line_of_row
        rows = np.asarray(rows, dtype=np.int64)
        return self.line_of_row[rows] if self.line_of_row is not None else self.first_line + rows

    def subset(self, rows) -> Source:
        """The source of frame rows `rows` (indices or a boolean mask), renumbered from 0."""
        rows = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows)
        return Source(self.path, self.first_line, self.unit, self.lines(rows))

    def error(self, message: str, row: int | None = None, field: str | None = None) -> DataFormatError:
        if row is None:
            return DataFormatError(self.path, message, field=field)
        line = self.line(row)
        if self.unit != "line":
            message = f"{message} ({self.unit} {line})"
        return DataFormatError(self.path, message, line=line, field=field)


def source_for(path: Path, header_lines: int = 1) -> Source:
    """The `Source` of a table file: CSV/TSV rows start after the header, Parquet rows are rows."""
    if Path(path).suffix.lower() in (".parquet", ".pq"):
        return Source(Path(path), first_line=1, unit="row")
    return Source(Path(path), first_line=header_lines + 1)


def require_columns(frame: pd.DataFrame, columns, source: Source) -> None:
    """Raise naming the first required column the frame lacks (and the ones it has)."""
    for column in columns:
        if column not in frame.columns:
            have = ", ".join(map(str, frame.columns))
            raise source.error(f"missing column '{column}' (columns present: {have})", field=column)


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _is_missing(values: pd.Series) -> np.ndarray:
    missing = values.isna().to_numpy()
    if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values)):
        missing = missing | values.astype(str).str.strip().eq("").to_numpy()
    return missing


def parse_ids(values: pd.Series, source: Source, field: str) -> pd.Series:
    """Outside ids as strings; an empty id is an error. Integral floats (1.0) read as '1'.

    A categorical column (Parquet dictionary columns) stays categorical, with string categories:
    checking and encoding then touch each distinct id once.
    """
    if isinstance(values.dtype, pd.CategoricalDtype):
        categories = values.cat.categories
        missing = values.cat.codes.to_numpy() < 0
        empty = np.flatnonzero(categories.astype(str).str.strip() == "")
        missing = missing | np.isin(values.cat.codes.to_numpy(), empty)
        if missing.any():
            raise source.error("empty id", row=_first(missing), field=field)
        return values.cat.rename_categories(categories.astype(str)) if categories.dtype != object else values
    missing = _is_missing(values)
    if missing.any():
        raise source.error("empty id", row=_first(missing), field=field)
    if pd.api.types.is_float_dtype(values):
        as_int = values.astype(np.int64)
        if (as_int.to_numpy() == values.to_numpy()).all():
            values = as_int
    return values.astype(str)


def parse_float(values: pd.Series, source: Source, field: str) -> np.ndarray:
    """A float32 column (ratings); empty or non-numeric values are errors."""
    if pd.api.types.is_bool_dtype(values):
        return values.to_numpy(dtype=np.float32)
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna().to_numpy() | ~np.isfinite(numbers.to_numpy(dtype=np.float64, na_value=np.nan))
    if bad.any():
        row = _first(bad)
        raise source.error(f"cannot parse {values.iloc[row]!r} as a number", row=row, field=field)
    return numbers.to_numpy(dtype=np.float32)


_TRUE = {"1", "1.0", "true", "t", "yes", "y"}
_FALSE = {"0", "0.0", "false", "f", "no", "n"}


def parse_label(values: pd.Series, source: Source, field: str) -> np.ndarray:
    """A 0/1 label column as float32; accepts 0/1 and true/false; anything else is an error."""
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isin(numbers, (0.0, 1.0))
    else:
        text = values.astype(str).str.strip().str.lower()
        numbers = np.where(text.isin(_TRUE), 1.0, np.where(text.isin(_FALSE), 0.0, np.nan))
        bad = np.isnan(numbers) | values.isna().to_numpy()
    if bad.any():
        row = _first(bad)
        raise source.error(f"label must be 0 or 1, got {values.iloc[row]!r}", row=row, field=field)
    return numbers.astype(np.float32)


def parse_timestamp(values: pd.Series, source: Source, field: str) -> np.ndarray:
    """Timestamps as int64 unix seconds.

    Accepts integers (unix seconds), floats (fractions floored: the canonical unit is the
    second), datetime columns and ISO-8601 strings ('2021-03-04', '2021-03-04T05:06:07Z';
    naive times are read as UTC). Empty or unparsable values are errors.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        if values.isna().any():
            raise source.error("empty timestamp", row=_first(values.isna().to_numpy()), field=field)
        stamps = values.dt.tz_localize("UTC") if values.dt.tz is None else values
        return _datetime_seconds(stamps)
    if pd.api.types.is_bool_dtype(values):
        raise source.error("timestamp is a boolean", row=0, field=field)
    numbers = pd.to_numeric(values, errors="coerce")
    if pd.api.types.is_integer_dtype(numbers) and not numbers.isna().any():
        return numbers.to_numpy(dtype=np.int64)  # exact, without a trip through float64
    seconds = np.floor(numbers.to_numpy(dtype=np.float64, na_value=np.nan))
    unparsed = np.isnan(seconds)
    if unparsed.any() and not pd.api.types.is_numeric_dtype(values):
        # Only the rows that are not numbers go through the (slower) ISO parser.
        text = values[unparsed]
        parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
        ok = parsed.notna().to_numpy()
        seconds[np.flatnonzero(unparsed)[ok]] = _datetime_seconds(parsed[ok])
        unparsed = np.isnan(seconds)
    if unparsed.any():
        row = _first(unparsed)
        value = values.iloc[row]
        what = "empty timestamp" if _is_missing(values.iloc[[row]])[0] else (
            f"cannot parse {value!r} as a timestamp (unix seconds or ISO 8601)")
        raise source.error(what, row=row, field=field)
    if np.abs(seconds).max(initial=0) > 2**62:
        row = _first(np.abs(seconds) > 2**62)
        raise source.error(f"timestamp {values.iloc[row]!r} is out of range", row=row, field=field)
    return seconds.astype(np.int64)


def _datetime_seconds(stamps: pd.Series) -> np.ndarray:
    """Unix seconds of a tz-aware datetime Series, whatever its resolution (ns, us, s)."""
    epoch = pd.Timestamp(0, tz="UTC")
    return ((stamps - epoch) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)


def interaction_columns(frame: pd.DataFrame, source: Source, columns: dict[str, str] | None = None, *,
                        timestamp_required: bool = True) -> dict:
    """Parse the interaction columns of a frame read from a file.

    `columns` maps the canonical names (user, item, timestamp, rating, label) to the file's
    column names (default: the same names); errors name the file's column. Returns
    {"user": Series[str], "item": Series[str], "timestamp": int64, "rating": float32 | None,
    "label": float32 | None}. A missing timestamp column is an error unless
    `timestamp_required` is False, in which case every timestamp is 0.
    """
    names = {name: name for name in ("user", "item", "timestamp", "rating", "label")} | dict(columns or {})
    required = ["user", "item", *(["timestamp"] if timestamp_required else [])]
    require_columns(frame, [names[c] for c in required], source)
    if columns:
        # A mapping names its optional columns on purpose: they must be there too.
        require_columns(frame, [names[c] for c in columns], source)
    present = {c: names[c] for c in names if names[c] in frame.columns}
    return {
        "user": parse_ids(frame[present["user"]], source, present["user"]),
        "item": parse_ids(frame[present["item"]], source, present["item"]),
        "timestamp": (parse_timestamp(frame[present["timestamp"]], source, present["timestamp"])
                      if "timestamp" in present else np.zeros(len(frame), dtype=np.int64)),
        "rating": parse_float(frame[present["rating"]], source, present["rating"]) if "rating" in present else None,
        "label": parse_label(frame[present["label"]], source, present["label"]) if "label" in present else None,
    }


def side_table(frame: pd.DataFrame, id_column: str, source: Source, what: str) -> pd.DataFrame:
    """Index a side table (items, users) by its id column as strings, in file order.

    A missing id column, an empty id or a repeated id is an error naming its line.
    """
    require_columns(frame, [id_column], source)
    ids = parse_ids(frame[id_column], source, id_column)
    repeated = ids.duplicated().to_numpy()
    if repeated.any():
        row = _first(repeated)
        raise source.error(f"{what} id {ids.iloc[row]!r} appears twice", row=row, field=id_column)
    return frame.drop(columns=[id_column]).set_axis(pd.Index(ids.to_numpy(dtype=object)))


def profiles_from_frame(frame: pd.DataFrame, source: Source) -> UserProfiles:
    """UserProfiles from a per-user frame: the Big-Five columns it has (NaN for the rest, and
    where a value is empty) and every other column as demographics. A trait that is not a
    number is an error; `source` reports rows (of `frame`) as its lines.
    """
    traits = np.full((len(frame), len(BIG_FIVE)), np.nan, dtype=np.float32)
    for k, trait in enumerate(BIG_FIVE):
        if trait in frame:
            values = frame[trait].reset_index(drop=True)
            numbers = pd.to_numeric(values, errors="coerce")
            bad = numbers.isna().to_numpy() & ~_is_missing(values)
            if bad.any():
                row = _first(bad)
                raise source.error(f"cannot parse {values.iloc[row]!r} as a number", row=row, field=trait)
            traits[:, k] = numbers.to_numpy(dtype=np.float32, na_value=np.nan)
    demographics = frame.drop(columns=[t for t in BIG_FIVE if t in frame]).reset_index(drop=True)
    # No demographic columns reads back as UserProfiles' own default (an empty frame).
    return UserProfiles(traits, demographics if len(demographics.columns) else pd.DataFrame())
