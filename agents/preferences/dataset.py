"""A data set of preferences between segment pairs, with a JSON-lines file form.

The file holds an optional header line and then one pair per line:

    {"format": "prefengine-preferences", "version": 1, "feature_names": ["gas", "goal", ...]}
    {"segments": [{"states": [12, 13, 14, 24], "actions": [1, 1, 2],
                   "features": [[1, 0, 0, 0, 0, 0], [1, 0, 0, 1, 0, 0], [1, 0, 0, 0, 0, 0]]},
                  {"states": [...], "actions": [...], "features": [...]}],
     "label": 1.0}

`label` is the probability that the first segment is preferred: 1 (first), 0 (second), 0.5 (no
preference), or anything between for soft labels. Segments may have different lengths (states one
longer than actions; one feature row per action), so preferences collected elsewhere load as is.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agents.preferences.segments import Segments
from recsys.errors import DataFormatError

logger = logging.getLogger(__name__)

FORMAT = "prefengine-preferences"
VERSION = 1


@dataclass(frozen=True)
class PreferenceDataset:
    pairs: Segments  # leading shape (N, 2)
    labels: np.ndarray  # (N,) P(first preferred)
    feature_names: tuple[str, ...]

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels, dtype=np.float64)
        if self.pairs.shape != (len(labels), 2):
            raise ValueError(f"pairs have shape {self.pairs.shape}, expected ({len(labels)}, 2)")
        if np.any((labels < 0) | (labels > 1)):
            raise ValueError("labels must lie in [0, 1]")
        if self.pairs.features.shape[-1] != len(self.feature_names):
            raise ValueError(
                f"{self.pairs.features.shape[-1]} features but {len(self.feature_names)} feature names"
            )
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "feature_names", tuple(self.feature_names))

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def subset(self, index) -> PreferenceDataset:
        return PreferenceDataset(self.pairs[index], self.labels[index], self.feature_names)

    def both_orders(self) -> PreferenceDataset:
        """Each pair twice: as given, and swapped with the complementary label."""
        pairs = Segments.concatenate([self.pairs, self.pairs.swap_pairs()])
        return PreferenceDataset(pairs, np.concatenate([self.labels, 1.0 - self.labels]), self.feature_names)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as file:
            file.write(
                json.dumps({"format": FORMAT, "version": VERSION, "feature_names": list(self.feature_names)})
                + "\n"
            )
            for i in range(len(self)):
                record = {
                    "segments": [_segment_record(self.pairs[i, j]) for j in range(2)],
                    "label": float(self.labels[i]),
                }
                file.write(json.dumps(record) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> PreferenceDataset:
        """Read a JSON-lines file; any malformed line raises DataFormatError naming line and field."""
        path = Path(path)
        if not path.is_file():
            raise DataFormatError(path, "no such preference file")
        feature_names: list[str] | None = None
        width: int | None = None  # feature-vector length: from the header, else the first record
        records: list = []
        n_blank = 0
        with path.open() as file:
            for line_number, line in enumerate(file, start=1):
                if not line.strip():
                    n_blank += 1
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise DataFormatError(path, f"not valid JSON ({error.msg})", line=line_number) from None
                if not isinstance(record, dict):
                    raise DataFormatError(path, "each line must be a JSON object", line=line_number)
                if "format" in record:
                    feature_names = _read_header(path, line_number, record, is_first=not records)
                    width = len(feature_names)
                    continue
                segments, label = _read_record(path, line_number, record, width)
                if width is None:
                    width = next((len(f[0]) for (_, _, f) in segments if f), None)
                records.append((segments, label))
        if n_blank:
            logger.info("%s: skipped %d blank lines", path, n_blank)
        if not records:
            raise DataFormatError(path, "the file holds no preference records")
        if width is None:
            raise DataFormatError(
                path, "no header and no feature vectors: cannot tell the number of features"
            )
        names = (
            tuple(feature_names) if feature_names is not None else tuple(f"feature_{k}" for k in range(width))
        )
        return cls._from_records(records, names)

    @classmethod
    def _from_records(cls, records, names: tuple[str, ...]) -> PreferenceDataset:
        d = len(names)
        N, L = len(records), max(len(actions) for (segments, _) in records for (_, actions, _) in segments)
        states = np.zeros((N, 2, L + 1), dtype=np.int64)
        actions = np.zeros((N, 2, L), dtype=np.int64)
        features = np.zeros((N, 2, L, d))
        lengths = np.zeros((N, 2), dtype=np.int64)
        labels = np.zeros(N)
        for i, (segments, label) in enumerate(records):
            labels[i] = label
            for j, (seg_states, seg_actions, seg_features) in enumerate(segments):
                k = len(seg_actions)
                states[i, j, : k + 1] = seg_states
                states[i, j, k + 1 :] = seg_states[-1]  # padding repeats the end state
                actions[i, j, :k] = seg_actions
                if k:
                    features[i, j, :k] = seg_features
                lengths[i, j] = k
        return cls(Segments(states, actions, features, lengths), labels, names)


def _segment_record(segment: Segments) -> dict:
    k = int(segment.lengths)
    return {
        "states": segment.states[: k + 1].tolist(),
        "actions": segment.actions[:k].tolist(),
        "features": segment.features[:k].tolist(),
    }


def _read_header(path: Path, line: int, record: dict, is_first: bool) -> list[str]:
    if not is_first:
        raise DataFormatError(
            path, "a header line may only come before the records", line=line, field="format"
        )
    if record["format"] != FORMAT:
        raise DataFormatError(
            path, f"unknown format {record['format']!r}, expected {FORMAT!r}", line=line, field="format"
        )
    if record.get("version") != VERSION:
        raise DataFormatError(
            path,
            f"unsupported version {record.get('version')!r}, expected {VERSION}",
            line=line,
            field="version",
        )
    names = record.get("feature_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DataFormatError(
            path, "feature_names must be a list of strings", line=line, field="feature_names"
        )
    return names


def _read_record(path: Path, line: int, record: dict, width: int | None):
    for key in ("segments", "label"):
        if key not in record:
            raise DataFormatError(path, f"missing required field '{key}'", line=line, field=key)
    label = record["label"]
    if isinstance(label, bool) or not isinstance(label, int | float) or not 0.0 <= label <= 1.0:
        raise DataFormatError(
            path, f"label must be a number in [0, 1], got {label!r}", line=line, field="label"
        )
    segments = record["segments"]
    if not isinstance(segments, list) or len(segments) != 2:
        raise DataFormatError(
            path, "segments must be a list of exactly two segments", line=line, field="segments"
        )
    parsed = []
    for j, segment in enumerate(segments):
        where = f"segments[{j}]"
        if not isinstance(segment, dict):
            raise DataFormatError(path, "a segment must be an object", line=line, field=where)
        for key in ("states", "actions", "features"):
            if key not in segment:
                raise DataFormatError(
                    path, f"missing required field '{key}'", line=line, field=f"{where}.{key}"
                )
        states = _int_list(path, line, f"{where}.states", segment["states"])
        actions = _int_list(path, line, f"{where}.actions", segment["actions"])
        if len(states) != len(actions) + 1:
            raise DataFormatError(
                path,
                f"{len(states)} states for {len(actions)} actions (need one more state than actions)",
                line=line,
                field=f"{where}.states",
            )
        features = segment["features"]
        if not isinstance(features, list) or len(features) != len(actions):
            raise DataFormatError(
                path,
                f"need one feature vector per action ({len(actions)})",
                line=line,
                field=f"{where}.features",
            )
        for t, row in enumerate(features):
            if not isinstance(row, list) or not all(
                isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in row
            ):
                raise DataFormatError(
                    path,
                    "feature vectors must be lists of finite numbers",
                    line=line,
                    field=f"{where}.features[{t}]",
                )
            width = len(row) if width is None else width
            if len(row) != width:
                raise DataFormatError(
                    path,
                    f"{len(row)} features where earlier lines (or the header) have {width}",
                    line=line,
                    field=f"{where}.features[{t}]",
                )
        parsed.append((states, actions, features))
    return parsed, float(label)


def _int_list(path: Path, line: int, field: str, value) -> list[int]:
    if not isinstance(value, list) or not all(
        isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in value
    ):
        raise DataFormatError(path, "must be a list of non-negative integers", line=line, field=field)
    return value
