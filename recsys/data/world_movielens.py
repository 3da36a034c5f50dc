"""Write a generated world in MovieLens-1M's file format (`ratings.dat`, `movies.dat`).

There is no internet here, so the MovieLens sanity check runs on files this writes from the
world's MovieLens-1M-shaped preset (6,040 users x 3,706 items, about 1M ratings); the files then
go through the MovieLens loader exactly as downloaded ones would. They have MovieLens's shape and
format, not its content: numbers on them say nothing about real MovieLens accuracy.

    python -m recsys.data.world_movielens --out artifacts/ml1m-world [--seed 0] [--false-positive-rate 0.1]
    python -m recsys.data.world_movielens --out artifacts/toy-world --preset toy     # a small file, same format

`ratings.dat`: `UserID::MovieID::Rating::Timestamp`, ids 1-based, ratings rounded to 1..5.
`movies.dat`: `MovieID::Title::Genres`, the item's category as its genre.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.interactions import InteractionData
from recsys.errors import UserInputError

log = logging.getLogger(__name__)


def write_movielens(data: InteractionData, directory) -> Path:
    """Write `data` (with ratings; catalog optional) as ratings.dat and movies.dat; return ratings.dat's path."""
    if data.rating is None:
        raise UserInputError("MovieLens files need ratings; this data has none")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ratings = np.clip(np.rint(data.rating), 1, 5).astype(np.int64)
    frame = pd.DataFrame({"user": data.user + 1, "item": data.item + 1, "rating": ratings,
                          "timestamp": data.timestamp})
    path = directory / "ratings.dat"
    _write_dat(path, frame)
    if data.catalog is not None:
        titles = pd.Series(data.catalog.titles).str.replace("::", ":", regex=False)
        genres = pd.Series(data.catalog.categories).replace("", "(no genres listed)").str.replace("|", "/", regex=False)
        movies = pd.DataFrame({"item": np.arange(1, data.n_items + 1), "title": titles, "genres": genres})
        _write_dat(directory / "movies.dat", movies)
    log.info("wrote %d ratings of %d users x %d items to %s", len(frame), data.n_users, data.n_items, path)
    return path


def _write_dat(path: Path, frame: pd.DataFrame) -> None:
    """MovieLens's '::'-separated lines (pandas writes single-character separators only)."""
    lines = frame.astype(str).agg("::".join, axis=1)
    path.write_text("\n".join(lines) + "\n", encoding="latin-1", errors="replace")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recsys.data.world_movielens", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="directory for ratings.dat and movies.dat")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default="movielens-1m", choices=("toy", "small", "movielens-1m"),
                        help="world size: movielens-1m (6,040 users x 3,706 items, about 1M ratings) or smaller")
    parser.add_argument("--false-positive-rate", type=float, default=None,
                        help="share of observed positives that are clicks on disliked items (preset default if unset)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from recsys.data.world import WorldConfig, generate_world

    overrides = {"seed": args.seed}
    if args.false_positive_rate is not None:
        overrides["false_positive_rate"] = args.false_positive_rate
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    world = generate_world(WorldConfig.preset(args.preset, **overrides))
    print(write_movielens(world.observed, args.out))
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except UserInputError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
