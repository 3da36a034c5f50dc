"""How a raw user profile becomes the personality ranker's ids: the one encoding of one value.

The model (`recsys.models.personality_features.FeatureSpace.encode_profile`) and the server
(`serving.profile.ProfileEncoder`) must turn a new user's raw profile into the same ids, or the
served ranking drifts from the model's; both call these functions. Ids are 1-based: UNKNOWN (0)
is a missing value or one never seen in training, and carries no signal. Standard library and
numpy only: both sides import it, and it imports neither.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

UNKNOWN = 0


def token(value: str | float | None) -> str | None:
    """The training data's spelling of a categorical value: 25.0 -> "25", stripped, empty -> missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def number(value: str | float | None) -> float | None:
    """A finite number from a raw value (a number or its text); None for anything else."""
    if value is None or isinstance(value, bool):
        return None
    try:
        result = float(value)
    except ValueError:
        return None
    return result if math.isfinite(result) else None


def demographic_id(value: str | float | None, values: Sequence[str], edges: Sequence[float] | None) -> int:
    """1-based id of one raw value of a demographic field: its position in `values` (a categorical
    field), or 1 + the number of bin `edges` <= it (a numeric field); UNKNOWN when missing or unseen."""
    if edges is not None:
        found = number(value)
        if found is None:
            return UNKNOWN
        return int(np.searchsorted(np.asarray(edges, dtype=np.float64), found, side="right")) + 1
    spelled = token(value)
    return values.index(spelled) + 1 if spelled in values else UNKNOWN


def taste_ids(tastes: Iterable[str], index: Mapping[str, int]) -> list[int]:
    """The 1-based ids of the distinct known tastes, in the order given (unknown tastes are dropped)."""
    return [index[t] for t in dict.fromkeys(tastes) if t in index]
