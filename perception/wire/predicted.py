"""The frame header's `predicted` table (docs/protocol.md 5.1.1): tracks not seen in this frame
but still predicted by the tracker. Apart from the segments table on purpose: a predicted object
has no pixels in the id map and no segment id, and a reader that only draws segments never
mistakes one for something seen. Written only by a tracker that predicts; readers of older
nodes find no key and read "none predicted".
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from perception.core.tracks import PredictedTracks
from perception.wire.errors import DecodeError

_FLOATS = {"bbox": 4, "centroid": 2, "velocity": 2}


def predicted_to_wire(predicted: PredictedTracks) -> dict[str, Any]:
    return {
        "count": len(predicted),
        "instance_id": predicted.instance_ids.tolist(),
        "class_id": predicted.class_ids.tolist(),
        "bbox": predicted.bboxes.astype(np.float64).tolist(),
        "centroid": predicted.centroid.astype(np.float64).tolist(),
        "velocity": predicted.velocity.astype(np.float64).tolist(),
        "first_seen_ns": predicted.first_seen_ns.tolist(),
        "lost_s": predicted.lost_s.astype(np.float64).tolist(),
    }


def _ints(raw: Mapping[str, Any], name: str, count: int, low: int, high: int) -> np.ndarray:
    values = raw.get(name)
    if not isinstance(values, list) or len(values) != count or not all(
            isinstance(v, int) and not isinstance(v, bool) and low <= v < high for v in values):
        raise DecodeError(f"predicted.{name} is not a list of {count} integers in [{low}, {high})", "corrupt message")
    return np.array(values, np.int64)


def _floats(raw: Mapping[str, Any], name: str, shape: tuple[int, ...]) -> np.ndarray:
    values = raw.get(name)
    array = None
    if isinstance(values, list) and len(values) == shape[0]:
        with contextlib.suppress(TypeError, ValueError):  # ragged or not numbers
            array = np.asarray(values, np.float64).reshape(shape)
    if array is None or not np.isfinite(array).all() or (np.abs(array) > 1e30).any():
        raise DecodeError(f"predicted.{name} is not {shape} finite numbers", "corrupt message")
    return array


def predicted_from_wire(raw: object) -> PredictedTracks | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise DecodeError("header field 'predicted' is not a map", "corrupt message")
    count = raw.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count < 2**31:
        raise DecodeError("predicted.count is not a non-negative integer", "corrupt message")
    floats = {name: _floats(raw, name, (count, width)) for name, width in _FLOATS.items()}
    return PredictedTracks(
        instance_ids=_ints(raw, "instance_id", count, 1, 2**32).astype(np.uint32),
        class_ids=_ints(raw, "class_id", count, 0, 2**31),
        bboxes=floats["bbox"],
        centroid=floats["centroid"],
        velocity=floats["velocity"],
        first_seen_ns=_ints(raw, "first_seen_ns", count, -(2**63), 2**63),
        lost_s=_floats(raw, "lost_s", (count,)),
    )
