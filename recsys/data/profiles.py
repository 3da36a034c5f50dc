"""User profiles from a generic user table, for data whose own files carry no traits.

A user table is a CSV/TSV/Parquet file with one row per user: an id column (`user`, `user_id`,
`userId`, ... as the table format knows them, or the one named), any of the Big-Five trait columns
(openness, conscientiousness, extraversion, agreeableness, neuroticism) and any demographic
columns. `read_profiles` lines it up with an existing vocabulary; `with_profiles` attaches it.
The table format's `users=` option reads the same kind of table while loading interactions; this
is for data loaded otherwise (MovieLens, RecBole, the native form, the world).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pandas as pd

from recsys.data.formats.table import ALIASES, read_side_table
from recsys.data.interactions import BIG_FIVE, IdVocab, InteractionData, UserProfiles
from recsys.data.parsing import profiles_from_frame
from recsys.errors import DataFormatError

log = logging.getLogger(__name__)


def read_profiles(path, vocab: IdVocab, id_column: str | None = None, sep: str | None = None) -> UserProfiles:
    """Profiles for every user of `vocab` from a user table (users the table lacks get NaN traits).

    The table must name at least one Big-Five trait column; rows for users outside the vocabulary
    are left out and counted in the log.
    """
    path = Path(path)
    id_columns = (id_column,) if id_column else ALIASES["user"]
    table, source = read_side_table(path, id_columns, "user", sep)
    traits = [t for t in BIG_FIVE if t in table.columns]
    if not traits:
        raise DataFormatError(path, f"no Big-Five trait column (expected any of {', '.join(BIG_FIVE)}; "
                                    f"columns present: {', '.join(map(str, table.columns))})", line=1)
    index = pd.Index(vocab.users)
    outside = int((~table.index.isin(index)).sum())
    if outside:
        log.warning("%s: %d users of the table are not in the data's vocabulary; left out", path, outside)
    lacking = int((~index.isin(table.index)).sum())
    if lacking:
        log.warning("%s: %d users of the data have no row in the table; their traits are unknown", path, lacking)
    # Parse in file order first, so a bad value is reported at its line; then line up with the vocabulary.
    parsed = profiles_from_frame(table.reset_index(drop=True), source)
    frame = pd.concat([pd.DataFrame(parsed.traits, columns=list(BIG_FIVE)), parsed.demographics], axis=1)
    aligned = frame.set_axis(table.index).reindex(index).reset_index(drop=True)
    profiles = UserProfiles(aligned[list(BIG_FIVE)].to_numpy(dtype="float32"), aligned.drop(columns=list(BIG_FIVE)))
    log.info("%s: profiles for %d of %d users (traits: %s)", path, len(index) - lacking, len(index), ", ".join(traits))
    return profiles


def with_profiles(data: InteractionData, profiles: UserProfiles) -> InteractionData:
    """`data` with `profiles` attached (one row per user of its vocabulary)."""
    if len(profiles) != data.n_users:
        raise ValueError(f"profiles have {len(profiles)} rows for {data.n_users} users")
    return replace(data, profiles=profiles)
