"""New users placed from pairwise comparisons, for bundles of a pluralistic model (numpy, no torch).

A request's `comparisons` ([{"preferred": item, "over": item}, ...]) become item indices here; the
placement among the bundle's prototypes and the query vector are `bundleformat.pluralistic`'s.
Items the bundle does not know are a QueryError that names the comparison and the field (a 422).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from bundleformat.manifest import BundleError
from bundleformat.pluralistic import SECTION, Placement
from serving.bundle import BundleData, _load_array


def load_placement(data: BundleData) -> Placement | None:
    """The bundle's placement, or None when it has no "pluralistic" section."""
    section = data.manifest.get(SECTION)
    if section is None:
        return None
    if not isinstance(section, dict) or not isinstance(section.get("prototypes"), str):
        raise BundleError(data.path, f"manifest '{SECTION}' must be an object naming its prototypes file")
    prototypes = _load_array(data.path, section["prototypes"], np.dtype(np.float32), 2)
    try:
        return Placement.from_arrays(prototypes, np.asarray(data.item_vectors), section)
    except (KeyError, TypeError, ValueError) as error:
        raise BundleError(data.path, f"manifest '{SECTION}': {error}") from None


def encode_comparisons(comparisons: Sequence[Mapping[str, str]], item_index: Mapping[str, int],
                       error: type[Exception]) -> tuple[np.ndarray, np.ndarray]:
    """(preferred, over) item indices; an unknown item raises `error` naming comparisons[m].field."""
    preferred, over = np.empty(len(comparisons), np.int64), np.empty(len(comparisons), np.int64)
    for m, comparison in enumerate(comparisons):
        for field, out in (("preferred", preferred), ("over", over)):
            index = item_index.get(comparison[field])
            if index is None:
                raise error(f"comparisons[{m}].{field}: unknown item {comparison[field]!r}")
            out[m] = index
    return preferred, over
