"""MovieLens rating files, with the movie and user files beside them when present.

Ratings: `u.data` (ML-100K: tab-separated user, item, rating, timestamp, no header; also its
splits u1.base ... u5.test, ua/ub.base/test),
`ratings.dat` (ML-1M/10M: `UserID::MovieID::Rating::Timestamp`), `ratings.csv` (ML-20M/25M/
latest: header `userId,movieId,rating,timestamp`).

Movies, read into the catalog from the same directory: `u.item` (pipe-separated, Latin-1, 19
genre flags), `movies.dat` (`MovieID::Title::Genres`), `movies.csv` (`movieId,title,genres`).
Catalog columns: title; text empty (MovieLens has no descriptions); category = the first
listed genre; `genres` = all genres joined by '|'. Users, read into the profiles:
`u.user` (age, gender, occupation, zip_code) or `users.dat` (gender, age, occupation, zip_code);
MovieLens has no Big-Five traits, so those are NaN.
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.formats.common import RawInteractions, SideInfo
from recsys.data.parsing import interaction_columns, side_table
from recsys.data.tables import read_table_with_source
from recsys.errors import DataFormatError, UserInputError

log = logging.getLogger(__name__)

RATING_FILES = ("u.data", "ratings.dat", "ratings.csv")
# u.data and ML-100K's own splits (u1.base ... u5.test, ua/ub.base/test) share one layout.
ML100K_TAB_FILE = re.compile(r"^u[0-9ab]?\.(data|base|test)$")
# ML-100K's genre order (u.genre); used when u.genre is not beside u.item.
ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                 "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
                 "Thriller", "War", "Western")
NO_GENRES = "(no genres listed)"


def ratings_file(path) -> Path:
    """The ratings file itself, or the one a MovieLens directory holds."""
    path = Path(path)
    if path.is_dir():
        for name in RATING_FILES:
            if (path / name).is_file():
                return path / name
        raise DataFormatError(path, f"no MovieLens ratings file here (looked for {', '.join(RATING_FILES)})")
    return path


def read_interactions(path) -> RawInteractions:
    path = ratings_file(path)
    name = path.name.lower()
    if ML100K_TAB_FILE.match(name):
        fields = {"user": "user_id", "item": "item_id", "rating": "rating", "timestamp": "timestamp"}
        frame, source = read_table_with_source(path, "\t", header=False, names=list(fields.values()),
                                               string_columns=("user_id", "item_id"))
    elif name.endswith(".dat"):
        fields = {"user": "UserID", "item": "MovieID", "rating": "Rating", "timestamp": "Timestamp"}
        frame, source = read_table_with_source(path, "::", header=False, names=list(fields.values()),
                                               string_columns=("UserID", "MovieID"), quoting=csv.QUOTE_NONE)
    else:
        fields = {"user": "userId", "item": "movieId", "rating": "rating", "timestamp": "timestamp"}
        frame, source = read_table_with_source(path, ",", string_columns=("userId", "movieId"))
    return RawInteractions.from_columns(interaction_columns(frame, source, fields), source, fields)


def read_items(directory: Path) -> pd.DataFrame | None:
    """The movie file beside the ratings as a side table (index: movie id), or None."""
    if (directory / "u.item").is_file():
        return _read_u_item(directory)
    if (directory / "movies.dat").is_file():
        frame, source = read_table_with_source(directory / "movies.dat", "::", header=False,
                                               names=["MovieID", "Title", "Genres"], encoding="latin-1",
                                               quoting=csv.QUOTE_NONE, all_strings=True)
        return _with_genre_lists(side_table(frame, "MovieID", source, "movie"), "Title", "Genres")
    if (directory / "movies.csv").is_file():
        frame, source = read_table_with_source(directory / "movies.csv", ",", all_strings=True)
        return _with_genre_lists(side_table(frame, "movieId", source, "movie"), "title", "genres")
    return None


def _with_genre_lists(table: pd.DataFrame, title: str, genres: str) -> pd.DataFrame:
    genre_text = table[genres].fillna("").astype(str).replace(NO_GENRES, "")
    return pd.DataFrame({
        "title": table[title].fillna("").astype(str), "text": "",
        "category": genre_text.str.split("|").str[0], "genres": genre_text,
    }, index=table.index)


def _read_u_item(directory: Path) -> pd.DataFrame:
    genres = _ml100k_genres(directory)
    names = ["movie_id", "title", "release_date", "video_release_date", "imdb_url", *genres]
    frame, source = read_table_with_source(directory / "u.item", "|", header=False, names=names,
                                           encoding="latin-1", quoting=csv.QUOTE_NONE, all_strings=True)
    table = side_table(frame, "movie_id", source, "movie")
    flags = table[list(genres)].fillna("0").astype(str).eq("1").to_numpy()
    genre_names = np.array(genres, dtype=object)
    listed = ["|".join(genre_names[row]) for row in flags]  # 1,682 movies: a plain loop is fine
    return pd.DataFrame({
        "title": table["title"].fillna("").astype(str), "text": "",
        "category": [g.split("|")[0] for g in listed], "genres": listed,
        "release_date": table["release_date"].fillna("").astype(str),
    }, index=table.index)


def _ml100k_genres(directory: Path) -> tuple[str, ...]:
    path = directory / "u.genre"
    if not path.is_file():
        return ML100K_GENRES
    frame, _ = read_table_with_source(path, "|", header=False, names=["genre", "index"], all_strings=True,
                                      encoding="latin-1")
    return tuple(frame.sort_values("index", key=lambda s: s.astype(int))["genre"])


def read_users(directory: Path) -> pd.DataFrame | None:
    if (directory / "u.user").is_file():
        names = ["user_id", "age", "gender", "occupation", "zip_code"]
        frame, source = read_table_with_source(directory / "u.user", "|", header=False, names=names,
                                               string_columns=("user_id", "zip_code"), quoting=csv.QUOTE_NONE)
        return side_table(frame, "user_id", source, "user")
    if (directory / "users.dat").is_file():
        names = ["user_id", "gender", "age", "occupation", "zip_code"]
        frame, source = read_table_with_source(directory / "users.dat", "::", header=False, names=names,
                                               string_columns=("user_id", "zip_code"), quoting=csv.QUOTE_NONE)
        return side_table(frame, "user_id", source, "user")
    return None


def read(path, columns=None, sep=None, *, side: bool = True) -> tuple[RawInteractions, SideInfo]:
    if columns or sep:
        raise UserInputError("the movielens format has fixed columns; use format='table' with "
                             "columns=... for a different layout")
    raw = read_interactions(path)
    if not side:
        return raw, SideInfo()
    directory = raw.source.path.parent
    info = SideInfo(items=read_items(directory), users=read_users(directory))
    found = [what for what, table in (("movies", info.items), ("users", info.users)) if table is not None]
    log.info("%s: MovieLens ratings%s", raw.source.path, f" with {' and '.join(found)}" if found else "")
    return raw, info
