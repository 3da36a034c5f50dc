"""Cold-start scoring from a personality profile: a bundle's ranker graph, run for a user the model never saw.

A personality bundle (written by `recsys.export.personality`) lists under manifest graphs.ranker
the graph `ranker.onnx` and its features file `profile_features.json`. The graph takes

    user_index int64[batch], user_known float32[batch]  (0 here: no user id takes part)
    demographics int64[batch, fields]                   (1-based value ids per field, 0 = unknown)
    tastes int64[batch, length]                         (1-based taste ids, 0 = padding)
    traits float32[batch, 5], trait_mask float32[batch, 5]  (raw scores in the features' trait order)

and returns the model's ranking score of every item. `ProfileEncoder` turns a request's raw profile
into those ids with `bundleformat.profile`, the encoding
`recsys.models.personality_features.FeatureSpace.encode_profile` runs too (a test checks both give
the same scores). Names the model does not know (a trait, a demographic field) are the caller's error;
values it never saw (a taste, a category of a field) carry no signal, so they are dropped with a
warning, as the model itself treats them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from bundleformat.manifest import BundleError
from bundleformat.profile import UNKNOWN, demographic_id, taste_ids, token
from serving.bundle import BundleData

INPUTS = {"user_index": "tensor(int64)", "user_known": "tensor(float)", "demographics": "tensor(int64)",
          "tastes": "tensor(int64)", "traits": "tensor(float)", "trait_mask": "tensor(float)"}


class ProfileError(ValueError):
    """A profile naming what the model does not know; the API answers 422 with this message."""


@dataclass(frozen=True)
class Profile:
    """A new user as a request describes them (raw values; see `ProfileEncoder`)."""

    traits: Mapping[str, float] = field(default_factory=dict)
    demographics: Mapping[str, str | float | None] = field(default_factory=dict)
    tastes: Sequence[str] = ()


@dataclass(frozen=True)
class DemographicField:
    name: str
    values: tuple[str, ...]
    edges: tuple[float, ...] | None  # a numeric field cut into bins: id = 1 + number of edges <= value

    def encode(self, value: str | float | None) -> int:
        """1-based id of a raw value, 0 when missing or never seen in training."""
        return demographic_id(value, self.values, self.edges)


class ProfileEncoder:
    """Raw profile -> the ranker graph's inputs, from a bundle's `profile_features.json`."""

    def __init__(self, features: Mapping[str, Any], path: Path):
        try:
            self.traits = [str(t) for t in features["traits"]]
            self.trait_mean = np.asarray(features["trait_mean"], dtype=np.float32)
            self.trait_std = np.asarray(features["trait_std"], dtype=np.float32)
            self.fields = [DemographicField(str(f["name"]), tuple(str(v) for v in f.get("values") or ()),
                                            None if f.get("edges") is None else tuple(float(e) for e in f["edges"]))
                           for f in features["demographic_fields"]]
            self.tastes = {str(t): i + 1 for i, t in enumerate(features["tastes"])}
            self.uses_traits = bool(features.get("use_traits", True))
        except (KeyError, TypeError, ValueError) as error:
            raise BundleError(path, f"the ranker's features file is malformed ({type(error).__name__}: {error})") from None
        if self.trait_mean.shape != (len(self.traits),) or self.trait_std.shape != (len(self.traits),):
            raise BundleError(path, "the ranker's features file: trait_mean / trait_std do not match its traits")
        self.field_names = [f.name for f in self.fields]

    def encode(self, profile: Profile, warnings: list[str]) -> dict[str, np.ndarray]:
        unknown = sorted(set(profile.traits) - set(self.traits))
        if unknown:
            raise ProfileError(f"profile.traits: unknown trait(s) {unknown}; this model knows {self.traits}")
        unknown = sorted(set(profile.demographics) - set(self.field_names))
        if unknown:
            raise ProfileError(f"profile.demographics: unknown field(s) {unknown}; this model knows "
                               f"{self.field_names or 'none'}")
        if profile.traits and not self.uses_traits:
            warnings.append("profile.traits ignored: this ranker was trained without traits")
        known = np.array([[name in profile.traits for name in self.traits]], dtype=bool)
        raw = np.array([[float(profile.traits.get(name, 0.0)) for name in self.traits]], dtype=np.float32)
        demographics = np.array([[f.encode(profile.demographics.get(f.name)) for f in self.fields]], dtype=np.int64)
        unseen = [f.name for f, id_ in zip(self.fields, demographics[0])
                  if id_ == UNKNOWN and token(profile.demographics.get(f.name)) is not None]
        if unseen:
            warnings.append(f"profile.demographics: values of {unseen} were never seen in training and carry no signal")
        distinct = list(dict.fromkeys(profile.tastes))
        ids = taste_ids(distinct, self.tastes)
        if len(ids) < len(distinct):
            dropped = [t for t in distinct if t not in self.tastes]
            warnings.append(f"profile.tastes: {len(dropped)} taste(s) never seen in training ignored: {dropped[:5]}")
        return {"user_index": np.zeros(1, dtype=np.int64), "user_known": np.zeros(1, dtype=np.float32),
                "demographics": demographics.reshape(1, len(self.fields)),
                "tastes": np.array([ids or [UNKNOWN]], dtype=np.int64),
                "traits": np.where(known, raw, 0).astype(np.float32), "trait_mask": known.astype(np.float32)}

    def describe(self) -> dict[str, Any]:
        """What a client may send (for GET /v1/models)."""
        return {"traits": list(self.traits),
                "trait_scale": {name: {"mean": round(float(m), 4), "std": round(float(sd), 4)}
                                for name, m, sd in zip(self.traits, self.trait_mean, self.trait_std)},
                "demographics": {f.name: ({"bins": list(f.edges)} if f.edges is not None else {"values": list(f.values)})
                                 for f in self.fields},
                "tastes": list(self.tastes)}


class ProfileRanker:
    """The ranker graph of a bundle: scores of every item for one new user's profile."""

    def __init__(self, data: BundleData, session_options: ort.SessionOptions):
        path, graph = data.path, data.manifest["graphs"]["ranker"]
        if not isinstance(graph, dict) or not isinstance(graph.get("file"), str) or \
                not isinstance(graph.get("features"), str):
            raise BundleError(path, "manifest.json: graphs.ranker needs 'file' and 'features'")
        for name in (graph["file"], graph["features"]):
            if name not in data.manifest["files"] or Path(name).name != name:
                raise BundleError(path, f"{name} (graphs.ranker) is not a file listed in manifest.json")
        try:
            features = json.loads((path / graph["features"]).read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
            raise BundleError(path, f"{graph['features']} cannot be read ({error})") from None
        self.encoder = ProfileEncoder(features if isinstance(features, dict) else {}, path)
        self.score_name = str(features.get("score", "score"))
        self.session = ort.InferenceSession(str(path / graph["file"]), session_options,
                                            providers=["CPUExecutionProvider"])
        found = {i.name: i.type for i in self.session.get_inputs()}
        if found != INPUTS:
            raise BundleError(path, f"{graph['file']}: inputs are {found}, expected {INPUTS}")
        probe = self.scores(Profile(), [])
        if probe.shape != (data.n_items,) or not np.isfinite(probe).all():
            raise BundleError(path, f"{graph['file']} returns {probe.shape} scores for an empty profile, "
                                    f"expected ({data.n_items},) finite")

    def scores(self, profile: Profile, warnings: list[str]) -> np.ndarray:
        """(n_items,) float32 ranking scores of a new user with this profile."""
        return self.session.run(None, self.encoder.encode(profile, warnings))[0][0]
