"""The ADS corpus (Roffo & Vinciarelli, 2016): 120 users rating 300 real ads in 20 categories.

Layout: one folder per user, `Uxxxx/` (found anywhere below the given directory, so both halves of
the download, `ADS16_Benchmark_part1/.../Corpus/U0001` and `..._part2/...`, load together; a single
user folder, or its `Uxxxx-RT.csv`, loads that one user). In each folder:

- `Uxxxx-RT.csv` (required), the ratings: `;`-separated lines, cells optionally double-quoted.
  Every line but the last non-blank one is a header row (the first one, when it holds 20 names,
  names the categories); the last holds 20 cells, cell c the 15 comma-separated ratings of the
  ads of category c, each an integer 1..5, or 0 = not rated. Unrated ads are left out (counted
  in the log). Ad c/k (1-based) gets the id `A{c:02d}_{k:02d}`, e.g. `A03_15`.
- `Uxxxx-B5.csv`, the Ten-Item Personality Inventory (TIPI): a `;`-separated table with a header
  and an `Answer` column holding the 10 answers in TIPI item order, integers -2..2. See
  `tipi_traits` for the scoring key. A user without this file has unknown (NaN) traits, logged.
- `Uxxxx-INF.csv`, demographics: a `;`-separated header line and one line of values. Each column
  becomes a demographic column (name lower-cased, spaces as '_'); a cell holding several
  comma-separated values becomes taste tokens `<column>=<value>` instead.
- `Uxxxx-PREF.csv` (optional), stated tastes in the same shape as INF: every value becomes a
  taste token `<column>=<value>`.

Taste tokens go, '|'-joined, into the demographic column `tastes` (the personality ranker reads
it as a multi-hot field). Ratings have no time: every timestamp is 0. The loader keeps the 1-5
ratings and sets no label; "click" as a rating threshold is chosen where the data is used (the
personality DataModule's `click_threshold`).
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.formats.common import RawInteractions, SideInfo
from recsys.data.interactions import BIG_FIVE
from recsys.data.parsing import Source
from recsys.data.tables import read_table_with_source
from recsys.errors import DataFormatError, UserInputError

log = logging.getLogger(__name__)

N_CATEGORIES = 20
ADS_PER_CATEGORY = 15
USER_FOLDER = re.compile(r"^U\d+$")
RATINGS_FILE = re.compile(r"^(U\d+)-RT\.csv$", re.IGNORECASE)
TASTES_COLUMN = "tastes"
TASTE_SEPARATOR = "|"
# Category names of the ADS download (folders 1..20 of Ads/), used when an RT file has no name row.
ADS_CATEGORIES = (
    "Clothing & Shoes", "Automotive", "Baby Products", "Health & Beauty", "Media (BMVD)",
    "Consumer Electronics", "Console & Video Games", "DIY & Tools", "Garden & Outdoor living", "Grocery",
    "Kitchen & Home", "Betting", "Jewellery & Watches", "Musical Instruments", "Office Products",
    "Pet Supplies", "Computer Software", "Sports & Outdoors", "Toys & Games", "Dating Sites",
)

# TIPI scoring key (Gosling, Rentfrow & Swann, 2003): trait -> (item, reversed item), 1-based items:
# 1 extraverted/enthusiastic, 2 critical/quarrelsome, 3 dependable/self-disciplined,
# 4 anxious/easily upset, 5 open to new experiences/complex, 6 reserved/quiet,
# 7 sympathetic/warm, 8 disorganized/careless, 9 calm/emotionally stable, 10 conventional/uncreative.
# TIPI scores emotional stability (9, 4R); prefengine's fifth trait is neuroticism, its opposite,
# so its pair is (4, 9R).
TIPI_KEY: dict[str, tuple[int, int]] = {
    "openness": (5, 10),
    "conscientiousness": (3, 8),
    "extraversion": (1, 6),
    "agreeableness": (7, 2),
    "neuroticism": (4, 9),
}
TIPI_ITEMS = 10
TIPI_LOW, TIPI_HIGH = -2, 2


def tipi_traits(answers) -> np.ndarray:
    """The five trait scores (BIG_FIVE order) of 10 TIPI answers on the ADS scale -2..2.

    Each trait is the mean of its item and its reversed item; on a scale symmetric around 0 a
    reversed answer is the negated one (the 1..7 form's 8 - x), so trait = (a_item - a_reversed) / 2,
    again on -2..2.
    """
    answers = np.asarray(answers, dtype=np.float64)
    if answers.shape != (TIPI_ITEMS,):
        raise ValueError(f"TIPI needs {TIPI_ITEMS} answers, got shape {answers.shape}")
    return np.array([(answers[TIPI_KEY[t][0] - 1] - answers[TIPI_KEY[t][1] - 1]) / 2 for t in BIG_FIVE],
                    dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# finding the user folders
# ---------------------------------------------------------------------------------------------
def _is_user_folder(path: Path) -> bool:
    return USER_FOLDER.match(path.name) is not None and (path / f"{path.name}-RT.csv").is_file()


def user_folders(path) -> list[Path]:
    """Every `Uxxxx/` folder holding its `Uxxxx-RT.csv` at or below `path`, by user number."""
    path = Path(path)
    if path.is_file():
        match = RATINGS_FILE.match(path.name)
        if not match:
            raise DataFormatError(path, "not an ADS ratings file (expected Uxxxx-RT.csv)")
        return [path.parent]
    if not path.is_dir():
        raise DataFormatError(path, "no such file or directory")
    if _is_user_folder(path):
        return [path]
    found = [p.parent for p in path.rglob("*-RT.csv") if _is_user_folder(p.parent) and
             RATINGS_FILE.match(p.name) and p.name[:-len("-RT.csv")] == p.parent.name]
    if not found:
        raise DataFormatError(path, "no ADS user folder (Uxxxx/ with Uxxxx-RT.csv) found here or below")
    folders = sorted(set(found), key=lambda p: (int(p.name[1:]), str(p)))
    names = [p.name for p in folders]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        where = [str(p) for p in folders if p.name == repeated[0]]
        raise DataFormatError(path, f"user {repeated[0]} appears in several folders: {', '.join(where)}")
    return folders


def is_ads_corpus(directory: Path, max_depth: int = 4) -> bool:
    """Whether `directory` is, or holds within `max_depth` levels, an ADS user folder (for format='auto')."""
    directory = Path(directory)
    frontier = [directory]
    for _ in range(max_depth + 1):
        next_frontier = []
        for folder in frontier:
            if _is_user_folder(folder):
                return True
            try:
                next_frontier += [p for p in folder.iterdir() if p.is_dir()]
            except OSError:
                continue
        frontier = next_frontier
    return False


# ---------------------------------------------------------------------------------------------
# one user's files
# ---------------------------------------------------------------------------------------------
def _read_lines(path: Path) -> list[tuple[int, list[str]]]:
    """(1-based line, cells) of each non-blank line of a `;`-separated file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        text = path.read_text(encoding="latin-1")
    rows = []
    for number, cells in enumerate(csv.reader(text.splitlines(), delimiter=";", quotechar='"'), start=1):
        if any(cell.strip() for cell in cells):
            rows.append((number, [cell.strip() for cell in cells]))
    return rows


def _drop_trailing_empty(cells: list[str]) -> list[str]:
    # Spreadsheet exports often end a line with ';'.
    while cells and cells[-1] == "":
        cells = cells[:-1]
    return cells


def read_ratings(path: Path) -> tuple[np.ndarray, list[str] | None, int]:
    """(ratings (20, 15) int array with 0 = not rated, the category names of the header or None, line)."""
    rows = _read_lines(path)
    if not rows:
        raise DataFormatError(path, "empty file")
    line, cells = rows[-1]
    cells = _drop_trailing_empty(cells)
    if len(cells) != N_CATEGORIES:
        raise DataFormatError(path, f"the ratings line has {len(cells)} cells; expected {N_CATEGORIES} "
                                    f"(one per ad category)", line=line)
    ratings = np.zeros((N_CATEGORIES, ADS_PER_CATEGORY), dtype=np.int64)
    for c, cell in enumerate(cells):
        field = f"category {c + 1}"
        values = [v.strip() for v in cell.split(",")]
        if len(values) != ADS_PER_CATEGORY:
            raise DataFormatError(path, f"{len(values)} ratings in the cell; expected {ADS_PER_CATEGORY} "
                                        "comma-separated ratings", line=line, field=field)
        for k, value in enumerate(values):
            if not re.fullmatch(r"[0-5]", value):
                raise DataFormatError(path, f"ad {k + 1}: rating {value!r} is not an integer 0..5 (0 = not rated)",
                                      line=line, field=field)
            ratings[c, k] = int(value)
    names = None
    if len(rows) > 1:
        header = _drop_trailing_empty(rows[0][1])
        if len(header) == N_CATEGORIES and all(h and not re.fullmatch(r"[\d\s,.]+", h) for h in header):
            names = header
    return ratings, names, line


def read_tipi(path: Path) -> np.ndarray:
    """The 10 TIPI answers of a `-B5.csv` file (int array), checked."""
    frame, source = read_table_with_source(path, ";", all_strings=True, encoding="utf-8-sig")
    columns = {str(c).strip().lower(): c for c in frame.columns}
    if "answer" not in columns:
        raise DataFormatError(path, f"no 'Answer' column (columns present: {', '.join(map(str, frame.columns))})",
                              line=1, field="Answer")
    answers = frame[columns["answer"]].fillna("").astype(str).str.strip()
    if len(answers) != TIPI_ITEMS:
        raise DataFormatError(path, f"{len(answers)} answers; the TIPI has {TIPI_ITEMS} items",
                              line=source.line(len(answers) - 1) if len(answers) else 1, field="Answer")
    values = np.zeros(TIPI_ITEMS, dtype=np.int64)
    for row, text in enumerate(answers):
        if not re.fullmatch(r"[+-]?\d+", text) or not TIPI_LOW <= int(text) <= TIPI_HIGH:
            raise DataFormatError(path, f"item {row + 1}: answer {text!r} is not an integer {TIPI_LOW}..{TIPI_HIGH}",
                                  line=source.line(row), field=str(columns["answer"]))
        values[row] = int(text)
    return values


def _column_name(name: str) -> str:
    return re.sub(r"\s+", "_", str(name).strip().lower())


def read_fields(path: Path, all_tastes: bool = False) -> tuple[dict[str, str], list[str]]:
    """(demographic column -> value, taste tokens) of an INF or PREF file (a header and one line)."""
    rows = _read_lines(path)
    if len(rows) < 2:
        raise DataFormatError(path, "expected a header line and a line of values", line=rows[0][0] if rows else None)
    if len(rows) > 2:
        raise DataFormatError(path, "expected one line of values after the header; found more", line=rows[2][0])
    (_, header), (line, values) = rows
    header = _drop_trailing_empty(header)
    values = values[:len(header)] + [""] * max(0, len(header) - len(values))
    if len(_drop_trailing_empty(rows[1][1])) > len(header):
        raise DataFormatError(path, f"{len(_drop_trailing_empty(rows[1][1]))} values for {len(header)} columns",
                              line=line)
    fields: dict[str, str] = {}
    tastes: list[str] = []
    for name, value in zip(header, values):
        column = _column_name(name)
        if not column:
            raise DataFormatError(path, "a column without a name", line=rows[0][0])
        if column in fields or column in BIG_FIVE or column == TASTES_COLUMN:
            raise DataFormatError(path, f"column name {column!r} repeats or is reserved", line=rows[0][0],
                                  field=str(name))
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if all_tastes or len(parts) > 1:
            tastes += [f"{column}={p.lower()}" for p in parts]
        else:
            fields[column] = value
    return fields, tastes


def _read_user(folder: Path) -> tuple[np.ndarray, list[str] | None, dict]:
    user = folder.name
    ratings, names, _ = read_ratings(folder / f"{user}-RT.csv")
    profile: dict = {}
    b5 = folder / f"{user}-B5.csv"
    if b5.is_file():
        profile.update(zip(BIG_FIVE, tipi_traits(read_tipi(b5)).tolist()))
    tastes: list[str] = []
    inf = folder / f"{user}-INF.csv"
    if inf.is_file():
        fields, more = read_fields(inf)
        profile.update(fields)
        tastes += more
    pref = folder / f"{user}-PREF.csv"
    if pref.is_file():
        tastes += read_fields(pref, all_tastes=True)[1]
    profile[TASTES_COLUMN] = TASTE_SEPARATOR.join(dict.fromkeys(tastes))
    return ratings, names, profile


def _users(folders: list[Path]) -> Iterator[tuple[str, np.ndarray, list[str] | None, dict]]:
    for folder in folders:
        ratings, names, profile = _read_user(folder)
        yield folder.name, ratings, names, profile


# ---------------------------------------------------------------------------------------------
# the format reader
# ---------------------------------------------------------------------------------------------
def ad_id(category: int, position: int) -> str:
    """The id of ad `position` (1..15) of category `category` (1..20)."""
    return f"A{category:02d}_{position:02d}"


def read(path, columns=None, sep=None, *, side: bool = True) -> tuple[RawInteractions, SideInfo]:
    """All user folders at or below `path` -> rated (user, ad) rows, the ad catalog and the profiles."""
    if columns or sep:
        raise UserInputError("the ads format has a fixed layout; columns= and sep= do not apply")
    folders = user_folders(path)
    users, items, ratings, profiles = [], [], [], {}
    category_names: list[str] | None = None
    unrated = 0
    for user, matrix, names, profile in _users(folders):
        category_names = category_names or names
        rated = np.argwhere(matrix > 0)
        unrated += matrix.size - len(rated)
        users += [user] * len(rated)
        items += [ad_id(c + 1, k + 1) for c, k in rated]
        ratings.append(matrix[matrix > 0].astype(np.float32))
        profiles[user] = profile
    if not users:
        raise DataFormatError(path, "no rated ad in any user's RT file")
    if unrated:
        log.info("%s: %d (user, ad) cells are 0 = not rated and are left out", path, unrated)
    root = Path(path)
    raw = RawInteractions(user=pd.Series(users, dtype=str), item=pd.Series(items, dtype=str),
                          timestamp=np.zeros(len(users), dtype=np.int64), source=Source(root, first_line=1, unit="row"),
                          rating=np.concatenate(ratings))
    missing_traits = [u for u, p in profiles.items() if BIG_FIVE[0] not in p]
    if missing_traits:
        log.warning("%s: %d users have no -B5.csv (their traits are unknown), e.g. %s", path, len(missing_traits),
                    missing_traits[0])
    if not side:
        return raw, SideInfo()
    log.info("%s: ADS corpus, %d users, %d ratings", path, len(profiles), len(users))
    return raw, SideInfo(items=_catalog(category_names or list(ADS_CATEGORIES)), users=_profiles(profiles))


def _catalog(category_names: list[str]) -> pd.DataFrame:
    ids, rows = [], []
    for c, name in enumerate(category_names, start=1):
        for k in range(1, ADS_PER_CATEGORY + 1):
            ids.append(ad_id(c, k))
            rows.append({"title": f"{name} ad {k}", "text": "", "category": name, "category_index": c})
    return pd.DataFrame(rows, index=pd.Index(ids, dtype=object))


def _profiles(profiles: dict[str, dict]) -> pd.DataFrame:
    frame = pd.DataFrame.from_dict(profiles, orient="index")
    for trait in BIG_FIVE:
        if trait not in frame:
            frame[trait] = np.nan
    frame.index = frame.index.astype(object)
    demographics = [c for c in frame.columns if c not in BIG_FIVE and c != TASTES_COLUMN]
    for column in demographics:
        # A column whose every given value is a number (age, income bracket) is kept as numbers.
        values = frame[column].replace("", np.nan)
        numbers = pd.to_numeric(values, errors="coerce")
        if values.notna().any() and numbers.notna().sum() == values.notna().sum():
            frame[column] = numbers
    return frame[list(BIG_FIVE) + demographics + [TASTES_COLUMN]].fillna({TASTES_COLUMN: ""})
