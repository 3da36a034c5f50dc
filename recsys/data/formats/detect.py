"""`format="auto"`: tell a data set's format from its file names and first line."""

from __future__ import annotations

from pathlib import Path

from recsys.data.formats import ads, amazon, movielens, recbole, sequences
from recsys.data.native import MANIFEST, is_native
from recsys.data.tables import first_line, is_parquet
from recsys.errors import DataFormatError


def detect_format(path) -> tuple[str, str]:
    """(format, the reason it was picked) for a file or directory; a `DataFormatError` if unknown."""
    path = Path(path)
    if not path.exists():
        raise DataFormatError(path, "no such file or directory")
    return _detect_directory(path) if path.is_dir() else _detect_file(path)


def _detect_directory(path: Path) -> tuple[str, str]:
    if is_native(path):
        return "prefengine", f"{MANIFEST} names the prefengine format"
    if sequences.is_sequence_directory(path):
        return "sequences", f"{sequences.SEQUENCES_FILE} (S3-Rec / SASRec sequence layout)"
    inter = sorted(path.glob("*.inter"))
    if inter:
        return "recbole", f"RecBole atomic file {inter[0].name}"
    for name in movielens.RATING_FILES:
        if (path / name).is_file():
            return "movielens", f"MovieLens ratings file {name}"
    if ads.is_ads_corpus(path):
        return "ads", "ADS user folders (Uxxxx/Uxxxx-RT.csv)"
    if any(amazon.is_json_lines(p) for p in path.iterdir()):
        return "amazon", "JSON-lines files"
    raise DataFormatError(path, f"cannot tell the format of this directory (no {MANIFEST}, .inter file, "
                                f"{'/'.join(movielens.RATING_FILES)} or JSON-lines file); pass format=...")


def _detect_file(path: Path) -> tuple[str, str]:
    name = path.name.lower()
    if path.name == MANIFEST and is_native(path.parent):
        return "prefengine", f"{MANIFEST} names the prefengine format"
    if name.endswith(".inter"):
        return "recbole", "file name ends in .inter"
    if path.name == sequences.SEQUENCES_FILE:
        return "sequences", f"file name {path.name} (S3-Rec / SASRec sequence layout)"
    if ads.RATINGS_FILE.match(path.name):
        return "ads", f"ADS ratings file {path.name}"
    if name == "ratings.dat" or movielens.ML100K_TAB_FILE.match(name):
        return "movielens", f"file name {path.name}"
    if path.stat().st_size == 0:
        raise DataFormatError(path, "empty file")
    if amazon.is_json_lines(path):
        line = first_line(path)
        if '"reviewerID"' in line or "'reviewerID'" in line:
            return "amazon", "JSON lines with reviewerID"
        raise DataFormatError(path, "JSON lines without reviewerID/asin: not Amazon reviews; pass format=...",
                              line=1)
    if is_parquet(path):
        return "table", "Parquet file"
    line = first_line(path)
    if name == "ratings.csv" and line.replace(" ", "").startswith("userId,movieId"):
        return "movielens", "header userId,movieId,..."
    if sequences.attributes_path(path).is_file() and _integers_by_spaces(line):
        return "sequences", f"lines of integer ids with {sequences.ATTRIBUTES_FILE} beside them"
    if recbole.looks_like_recbole_header(line):
        return "recbole", "header of name:type fields"
    return "table", "a delimited table"


def _integers_by_spaces(line: str) -> bool:
    tokens = line.split(" ")
    return len(tokens) >= 2 and all(t.isdigit() for t in tokens)
