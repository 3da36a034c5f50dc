"""Reading and writing one table file (CSV, TSV or Parquet) with errors that name the file and line.

The outside formats, the native form and the evaluation CLI all read tables through here, so a
bad file gets the same kind of message everywhere.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.parsing import Source
from recsys.errors import DataFormatError

log = logging.getLogger(__name__)

PARQUET_SUFFIXES = (".parquet", ".pq")
_SEPARATORS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
# The ids a table most often carries; read as text so '007' stays '007'.
DEFAULT_STRING_COLUMNS = ("user", "item")


def table_suffix(path: Path) -> str:
    """The suffix that says what a table file is, looking through a trailing .gz."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def is_parquet(path: Path) -> bool:
    return table_suffix(path) in PARQUET_SUFFIXES


def open_text(path: Path):
    """Open a plain or gzip-compressed UTF-8 text file for reading."""
    return open_text_as(path, "utf-8")


def open_text_as(path: Path, encoding: str):
    path = Path(path)
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding=encoding)
    return open(path, encoding=encoding)


def first_line(path: Path) -> str:
    """The first non-blank line of a text file ('' when there is none); undecodable bytes are replaced."""
    path = Path(path)
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.strip():
                return line.rstrip("\r\n")
    return ""


def guess_separator(path: Path, sep: str | None = None) -> str:
    """The given separator, else the one the extension says, else a sniff of the first line."""
    if sep is not None:
        return sep
    suffix = table_suffix(path)
    if suffix in _SEPARATORS:
        return _SEPARATORS[suffix]
    line = first_line(path)
    for candidate in ("\t", "::", ",", ";", "|"):
        if candidate in line:
            return candidate
    return r"\s+"


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise DataFormatError(path, "no such file")
    if path.is_dir():
        raise DataFormatError(path, "is a directory, expected a table file")
    if path.stat().st_size == 0:
        raise DataFormatError(path, "empty file")


def read_table_with_source(path, sep: str | None = None, *, string_columns=DEFAULT_STRING_COLUMNS,
                           header: bool = True, names: list[str] | None = None, allow_empty: bool = False,
                           encoding: str = "utf-8", quoting: int = csv.QUOTE_MINIMAL,
                           all_strings: bool = False) -> tuple[pd.DataFrame, Source]:
    """Read a CSV/TSV/Parquet table and the `Source` that maps its rows back to file lines.

    CSV-like files are read by extension (.csv ',', .tsv/.tab tab, else `sep` or a sniff of
    the first line; .gz is decompressed). Columns in `string_columns` are read as text; only an
    empty field counts as missing (so an id 'NA' stays 'NA'). Blank lines are skipped but
    still counted, so reported line numbers are the file's. With `header=False`, `names`
    gives the columns; `all_strings` reads every column as text. An empty file, or one with a
    header and no rows (unless `allow_empty`), is a `DataFormatError`.
    """
    path = Path(path)
    _check_exists(path)
    if is_parquet(path):
        try:
            frame = pd.read_parquet(path)
        except Exception as error:  # pyarrow raises several types for a corrupt file
            raise DataFormatError(path, f"not a readable Parquet file ({error})") from error
        source = Source(path, first_line=1, unit="row")
    else:
        frame, source = _read_delimited(path, guess_separator(path, sep), string_columns, header, names,
                                        encoding, quoting, all_strings)
    if len(frame) == 0 and not allow_empty:
        raise DataFormatError(path, "no data rows" + (" (only a header)" if header else ""))
    return frame, source


def _read_delimited(path: Path, sep: str, string_columns, header: bool, names, encoding: str, quoting: int,
                    all_strings: bool) -> tuple[pd.DataFrame, Source]:
    if not header and names is None:
        raise ValueError("a table without a header needs `names`")
    header_lines = 1 if header else 0
    source_file = path
    if sep == "::":
        # MovieLens-1M's '::' needs pandas' slow python parser; as a tab it takes the C parser.
        with open_text_as(path, encoding) as handle:
            text = handle.read()
        if "\t" not in text:
            source_file, sep = io.StringIO(text.replace("::", "\t")), "\t"
    try:
        # Read the header alone first: ids must be read as text, and dtype needs the names.
        columns = names or list(pd.read_csv(source_file, sep=sep, nrows=0, engine=_engine(sep),
                                            encoding=encoding, quoting=quoting).columns)
        if isinstance(source_file, io.StringIO):
            source_file.seek(0)
        dtype = str if all_strings else {c: str for c in columns if c in set(string_columns)}
        frame = pd.read_csv(
            source_file, sep=sep, engine=_engine(sep), header=0 if header else None, names=names,
            dtype=dtype, keep_default_na=False, na_values=[""], skip_blank_lines=False,
            quoting=quoting, encoding=encoding,
        )
    except pd.errors.EmptyDataError as error:
        raise DataFormatError(path, "empty file") from error
    except pd.errors.ParserError as error:
        match = re.search(r"line (\d+)", str(error))
        raise DataFormatError(path, f"malformed row ({error})",
                              line=int(match.group(1)) if match else None) from error
    except UnicodeDecodeError as error:
        raise DataFormatError(path, f"not {encoding} text ({error})") from error
    # Blank lines come back as all-empty rows; drop them but keep every row's true line number.
    blank = frame.isna().all(axis=1).to_numpy()
    line_of_row = np.arange(len(frame)) + header_lines + 1
    if blank.any():
        log.debug("%s: skipped %d blank lines", path, int(blank.sum()))
        frame = frame.loc[~blank].reset_index(drop=True)
        line_of_row = line_of_row[~blank]
    return frame, Source(path, first_line=header_lines + 1, line_of_row=line_of_row)


def _engine(sep: str) -> str:
    # The C parser takes one-character separators only ('::' in MovieLens-1M needs python).
    return "c" if len(sep) == 1 else "python"


def read_table(path, sep: str | None = None, *, string_columns=DEFAULT_STRING_COLUMNS,
               allow_empty: bool = False) -> pd.DataFrame:
    """Read a CSV/TSV/Parquet table by extension; see `read_table_with_source` for the rules."""
    return read_table_with_source(path, sep, string_columns=string_columns, allow_empty=allow_empty)[0]


def write_table(frame: pd.DataFrame, path: Path) -> Path:
    """Write a table as Parquet or CSV, chosen by the file's extension."""
    path = Path(path)
    if is_parquet(path):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, sep=_SEPARATORS.get(table_suffix(path), ","))
    return path
