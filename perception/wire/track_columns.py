"""The track columns of the segments table on the wire (docs/protocol.md 5.1.1).

Written only when the node tracks; a reader of an older node finds none and every object
then reads as untracked. All seven columns come together or not at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from perception.core.tracks import TRACK_STATES, TrackColumns
from perception.wire.errors import DecodeError

COLUMNS = ("track_state", "track_age_s", "track_hits", "first_seen_ns", "centroid", "velocity", "velocity_valid")


def tracks_to_wire(tracks: TrackColumns | None) -> dict[str, Any]:
    if tracks is None:
        return {}
    return {
        "track_state": tracks.state_names(),
        "track_age_s": tracks.age_s.astype(np.float64).tolist(),
        "track_hits": tracks.hits.tolist(),
        "first_seen_ns": tracks.first_seen_ns.tolist(),
        "centroid": tracks.centroid.astype(np.float64).tolist(),
        "velocity": tracks.velocity.astype(np.float64).tolist(),
        "velocity_valid": tracks.velocity_valid.tolist(),
    }


def _floats(raw: Mapping[str, Any], name: str, shape: tuple[int, ...]) -> np.ndarray:
    values = np.asarray(raw[name], np.float64)
    if values.shape != shape or not np.isfinite(values).all() or (np.abs(values) > 1e30).any():
        raise DecodeError(f"segments.{name} is not {shape} finite numbers", "corrupt message")
    return values


def tracks_from_wire(raw: Mapping[str, Any], count: int) -> TrackColumns | None:
    present = [c for c in COLUMNS if c in raw]
    if not present:
        return None
    if len(present) != len(COLUMNS):
        missing = sorted(set(COLUMNS) - set(present))
        raise DecodeError(f"segments table has track columns but lacks {missing}", "corrupt message")
    for name in COLUMNS:
        if not isinstance(raw[name], list) or len(raw[name]) != count:
            raise DecodeError(f"segments.{name} is not a list of {count} values", "corrupt message")
    codes = {name: code for code, name in enumerate(TRACK_STATES)}
    try:
        state = np.array([codes[s] for s in raw["track_state"]], np.uint8).reshape(count)
    except (KeyError, TypeError) as exc:
        raise DecodeError(f"segments.track_state holds a value outside {list(TRACK_STATES)}", "corrupt message") \
            from exc
    hits, first_seen = raw["track_hits"], raw["first_seen_ns"]
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**32 for v in hits):
        raise DecodeError("segments.track_hits holds values that are not uint32", "corrupt message")
    if not all(isinstance(v, int) and not isinstance(v, bool) and -(2**63) <= v < 2**63 for v in first_seen):
        raise DecodeError("segments.first_seen_ns holds values that are not int64", "corrupt message")
    if not all(isinstance(v, bool) for v in raw["velocity_valid"]):
        raise DecodeError("segments.velocity_valid holds values that are not booleans", "corrupt message")
    return TrackColumns(
        state=state,
        age_s=_floats(raw, "track_age_s", (count,)),
        hits=np.array(hits, np.uint32).reshape(count),
        first_seen_ns=np.array(first_seen, np.int64).reshape(count),
        centroid=_floats(raw, "centroid", (count, 2)).astype(np.float32) if count else np.zeros((0, 2), np.float32),
        velocity=_floats(raw, "velocity", (count, 2)).astype(np.float32) if count else np.zeros((0, 2), np.float32),
        velocity_valid=np.array(raw["velocity_valid"], bool).reshape(count),
    )
