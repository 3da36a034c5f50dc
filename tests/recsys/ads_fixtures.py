"""Small ADS corpora written file by file in the download's layout (Uxxxx/Uxxxx-RT.csv, -B5.csv, -INF.csv)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recsys.data.formats.ads import ADS_CATEGORIES, ADS_PER_CATEGORY, N_CATEGORIES

TIPI_QUESTIONS = ("Extraverted, enthusiastic", "Critical, quarrelsome", "Dependable, self-disciplined",
                  "Anxious, easily upset", "Open to new experiences, complex", "Reserved, quiet",
                  "Sympathetic, warm", "Disorganized, careless", "Calm, emotionally stable",
                  "Conventional, uncreative")


def write_user(root: Path, user: str, ratings: np.ndarray, answers, inf: dict[str, str] | None = None,
               pref: dict[str, str] | None = None) -> Path:
    """One user folder: ratings (20, 15) ints 0..5, 10 TIPI answers -2..2, demographics, optional tastes."""
    folder = root / user
    folder.mkdir(parents=True, exist_ok=True)
    ratings = np.asarray(ratings)
    cells = ";".join('"' + ",".join(str(int(v)) for v in row) + '"' for row in ratings)
    # Two header rows as in the download (category names, category numbers), then the ratings.
    (folder / f"{user}-RT.csv").write_text(";".join(ADS_CATEGORIES) + "\n"
                                           + ";".join(str(c) for c in range(1, N_CATEGORIES + 1)) + "\n"
                                           + cells + "\n")
    lines = ["Question;Answer"] + [f"{q};{a}" for q, a in zip(TIPI_QUESTIONS, answers)]
    (folder / f"{user}-B5.csv").write_text("\n".join(lines) + "\n")
    inf = inf if inf is not None else {"Gender": "F", "Age": "25", "Income": "2"}
    (folder / f"{user}-INF.csv").write_text(";".join(inf) + "\n" + ";".join(inf.values()) + "\n")
    if pref is not None:
        (folder / f"{user}-PREF.csv").write_text(";".join(pref) + "\n" + ";".join(pref.values()) + "\n")
    return folder


def write_corpus(root: Path, n_users: int = 12, seed: int = 0, unrated_share: float = 0.1) -> dict:
    """A corpus of `n_users` users in two parts (like the download), with tastes shaped by the traits.

    Ratings follow a known rule, so a model has something to learn: a user's rating of category c
    rises with extraversion for even c and with openness for odd c. Returns what was written.
    """
    rng = np.random.default_rng(seed)
    written = {"ratings": {}, "answers": {}}
    for u in range(1, n_users + 1):
        user = f"U{u:04d}"
        part = root / ("ADS16_Benchmark_part1" if u <= n_users // 2 else "ADS16_Benchmark_part2") / "Corpus"
        answers = rng.integers(-2, 3, size=10)
        extraversion = (answers[0] - answers[5]) / 2
        openness = (answers[4] - answers[9]) / 2
        lean = np.where(np.arange(N_CATEGORIES) % 2 == 0, extraversion, openness)
        base = 3 + lean[:, None] + rng.normal(0, 0.7, size=(N_CATEGORIES, ADS_PER_CATEGORY))
        ratings = np.clip(np.rint(base), 1, 5).astype(int)
        ratings[rng.random(ratings.shape) < unrated_share] = 0
        gender = "F" if u % 2 else "M"
        write_user(part, user, ratings, answers, {"Gender": gender, "Age": str(20 + u), "Income": str(u % 3),
                                                   "Hobbies": "music, sport" if u % 3 else "reading"})
        written["ratings"][user], written["answers"][user] = ratings, answers
    return written
