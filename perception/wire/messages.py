"""Typed, immutable messages a subscriber receives, one class per topic kind.

Every message carries the publisher epoch and its topic's sequence number, plus what the
subscriber learned on arrival: receive time (CLOCK_MONOTONIC ns), frames missed just before
it on its topic, and whether the publisher restarted (epoch changed) since the previous one.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np

from perception.core.segmentation import Segments
from perception.core.tracks import TRACK_STATES, PredictedTracks, TrackColumns
from perception.wire.errors import WireError
from perception.wire.limits import MAX_CLASS_ID_DIGITS
from perception.wire.payload import Buffer, IdMapDecoder, PayloadSpec
from perception.wire.schema import Kind


class PredictedObject(NamedTuple):
    """A track not seen in this frame but still predicted by the tracker (state lost): where it
    is expected now. It has no segment and no pixels in the id map."""

    instance_id: int
    class_id: int
    class_name: str
    bbox: tuple[float, float, float, float]  # predicted x0, y0, x1, y1, id-map pixels (may leave the image)
    centroid: tuple[float, float]  # predicted, id-map pixels
    velocity: tuple[float, float]  # px/s, source clock
    first_seen_ns: int  # stamp_ns of the track's first frame (source clock)
    lost_s: float  # seconds since it was last seen (source clock)

    @property
    def speed(self) -> float:
        """|velocity| in px/s."""
        return math.hypot(*self.velocity)


@dataclass(frozen=True, kw_only=True)
class WireMessage:
    camera: str
    epoch: int
    seq: int
    publish_ns: int  # CLOCK_MONOTONIC of the publisher host, just before sending
    receive_ns: int  # CLOCK_MONOTONIC of this host, when the message was read
    header: Mapping[str, Any] = field(repr=False)  # the full decoded header (unknown keys included)
    missed: int = 0  # messages of this topic lost right before this one (sequence gap)
    restarted: bool = False  # the publisher epoch changed since the previous message of this camera

    kind = Kind.FRAME  # overridden by each subclass

    @property
    def publish_to_receive_ns(self) -> int:
        """Transport latency; meaningful on the publisher's host only (same CLOCK_MONOTONIC)."""
        return self.receive_ns - self.publish_ns


class SegmentObject(NamedTuple):
    """One row of a frame's segments table, with its class name resolved.

    The track fields keep their defaults (untracked) when the node runs without a tracker.
    """

    id: int
    class_id: int
    class_name: str
    instance_id: int
    is_thing: bool
    score: float
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1; x1/y1 exclusive, id-map pixels
    area: int
    track_state: str = "none"  # "tentative" (seen < min_hits times), "confirmed", or "none"
    track_age_s: float = 0.0  # seconds since first_seen_ns, source clock
    track_hits: int = 0  # frames the track was matched in
    first_seen_ns: int = 0  # stamp_ns of the track's first frame (source clock)
    centroid: tuple[float, float] = (0.0, 0.0)  # x, y of the segment's pixels, id-map pixels
    velocity: tuple[float, float] = (0.0, 0.0)  # px/s of the filtered centroid (source clock)
    velocity_valid: bool = False  # the tracker has seen the object often enough to trust velocity

    @property
    def speed(self) -> float:
        """|velocity| in px/s."""
        return math.hypot(*self.velocity)


@dataclass(frozen=True, kw_only=True)
class FrameMessage(WireMessage):
    """One processed frame: panoptic id map (decoded on first use) plus its segments table."""

    frame_index: int
    stamp_ns: int  # acquisition time in the source's clock
    width: int
    height: int
    stamps: Mapping[str, int]  # stage -> CLOCK_MONOTONIC ns on the publisher's host
    segments: Segments
    id_map_spec: PayloadSpec
    payload: Buffer = field(repr=False)
    predicted_tracks: PredictedTracks | None = None  # None: the node's tracker does not predict
    class_names: Mapping[int, str] = field(default_factory=dict, repr=False)
    decoder: IdMapDecoder = field(default_factory=IdMapDecoder, repr=False, compare=False)

    kind = Kind.FRAME

    @cached_property
    def id_map(self) -> np.ndarray:
        """(height, width) uint16/uint32, 0 = void, value = segment id; read-only."""
        return self.decoder.decode(self.id_map_spec, self.payload)

    def mask(self, segment_id: int) -> np.ndarray:
        """Boolean (height, width) mask of one segment, cut from the id map on demand."""
        if segment_id not in set(self.segments.ids.tolist()):
            raise WireError(
                f"segment {segment_id} is not in frame {self.frame_index}",
                f"use one of its segment ids {self.segments.ids.tolist()[:20]}",
            )
        return self.id_map == segment_id

    def class_name(self, class_id: int) -> str:
        return self.class_names.get(int(class_id), f"class{int(class_id)}")

    @property
    def objects(self) -> list[SegmentObject]:
        s = self.segments
        return [
            SegmentObject(
                id=int(s.ids[i]),
                class_id=int(s.class_ids[i]),
                class_name=self.class_name(int(s.class_ids[i])),
                instance_id=int(s.instance_ids[i]),
                is_thing=bool(s.is_thing[i]),
                score=float(s.scores[i]),
                bbox=(int(s.bboxes[i, 0]), int(s.bboxes[i, 1]), int(s.bboxes[i, 2]), int(s.bboxes[i, 3])),
                area=int(s.areas[i]),
                **_track_fields(s.tracks, i),
            )
            for i in range(len(s))
        ]

    @property
    def tracks(self) -> list[SegmentObject]:
        """The tracked things of this frame (instance_id != 0)."""
        return [o for o in self.objects if o.instance_id]

    @property
    def predicted(self) -> list[PredictedObject]:
        """Tracks not seen in this frame but still predicted (empty when none, or no tracker)."""
        p = self.predicted_tracks
        if p is None:
            return []
        return [
            PredictedObject(
                instance_id=int(p.instance_ids[i]),
                class_id=int(p.class_ids[i]),
                class_name=self.class_name(int(p.class_ids[i])),
                bbox=(float(p.bboxes[i, 0]), float(p.bboxes[i, 1]), float(p.bboxes[i, 2]), float(p.bboxes[i, 3])),
                centroid=(float(p.centroid[i, 0]), float(p.centroid[i, 1])),
                velocity=(float(p.velocity[i, 0]), float(p.velocity[i, 1])),
                first_seen_ns=int(p.first_seen_ns[i]),
                lost_s=float(p.lost_s[i]),
            )
            for i in range(len(p))
        ]

    def summary(self) -> str:
        """Object count by class name, most frequent first: 'car×2 person'."""
        counts = Counter(self.class_name(c) for c in self.segments.class_ids.tolist())
        return " ".join(name if n == 1 else f"{name}×{n}" for name, n in counts.most_common())

    @property
    def capture_to_receive_ns(self) -> int | None:
        """End-to-end latency from the capture stamp; same host only (CLOCK_MONOTONIC)."""
        capture = self.stamps.get("capture")
        return None if capture is None else self.receive_ns - capture


@dataclass(frozen=True, kw_only=True)
class MetadataMessage(WireMessage):
    """Model card, class names, input size and versions; sent at start and on every new subscription."""

    metadata: Mapping[str, Any]

    kind = Kind.META

    @property
    def class_names(self) -> dict[int, str]:
        return class_names_of(self.metadata)


@dataclass(frozen=True, kw_only=True)
class StatusMessage(WireMessage):
    """Heartbeat (about 1 Hz) with the node state and its counters."""

    state: str
    counters: Mapping[str, Any]
    detail: str = ""
    errors: int = 0  # an `error` status for failed frames: how many failed since the previous such status

    kind = Kind.STATUS


@dataclass(frozen=True, kw_only=True)
class StatsMessage(WireMessage):
    """Latency percentiles per stage and end to end, fps and counters (see docs/protocol.md)."""

    stats: Mapping[str, Any]

    kind = Kind.STATS


@dataclass(frozen=True, kw_only=True)
class ImageMessage(WireMessage):
    """The input frame of `frame_index`, compressed (JPEG); published before that frame's result."""

    frame_index: int
    stamp_ns: int
    width: int
    height: int
    format: str  # "jpeg"
    data: bytes = field(repr=False)

    kind = Kind.IMAGE


Message = FrameMessage | MetadataMessage | StatusMessage | StatsMessage | ImageMessage

_CLASS_ID_KEY = re.compile(rf"-?[0-9]{{1,{MAX_CLASS_ID_DIGITS}}}")


def _track_fields(tracks: TrackColumns | None, i: int) -> dict[str, Any]:
    if tracks is None:
        return {}
    return {
        "track_state": TRACK_STATES[int(tracks.state[i])],
        "track_age_s": float(tracks.age_s[i]),
        "track_hits": int(tracks.hits[i]),
        "first_seen_ns": int(tracks.first_seen_ns[i]),
        "centroid": (float(tracks.centroid[i, 0]), float(tracks.centroid[i, 1])),
        "velocity": (float(tracks.velocity[i, 0]), float(tracks.velocity[i, 1])),
        "velocity_valid": bool(tracks.velocity_valid[i]),
    }


def class_names_of(metadata: Mapping[str, Any]) -> dict[int, str]:
    """Class id -> name from a metadata map: `class_names` {"<id>": name}, else a `classes` list
    [{id, name, ...}] at the top or in `model`; {} if none is there."""
    by_id = metadata.get("class_names")
    if isinstance(by_id, Mapping):
        names: dict[int, str] = {}
        for key, name in by_id.items():
            # bounded digits: int() of a hostile 5,000-digit key raises ValueError (and a class id is int32)
            if isinstance(key, str) and _CLASS_ID_KEY.fullmatch(key) and isinstance(name, str):
                names[int(key)] = name
        return names
    classes = metadata.get("classes")
    if classes is None and isinstance(metadata.get("model"), Mapping):
        classes = metadata["model"].get("classes")
    names = {}
    if isinstance(classes, list):
        for entry in classes:
            if isinstance(entry, Mapping) and isinstance(entry.get("id"), int) and isinstance(entry.get("name"), str):
                names[entry["id"]] = entry["name"]
    return names
