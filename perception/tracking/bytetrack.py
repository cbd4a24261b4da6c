"""ByteTrack (Zhang et al., ECCV 2022) on the segments table, timed by the frames' source stamps.

Per frame: every track is predicted to the frame's stamp by a constant-velocity Kalman
filter (kalman.py); high-score detections are matched to confirmed and lost tracks, then
low-score detections to the confirmed tracks still unmatched (the "byte" step: an occluded
object's weak detection keeps its track), then the remaining high-score detections to
tentative tracks. Matching is one-to-one (Hungarian), by box or mask IoU, never across
classes. Unmatched high-score detections start tentative tracks; a track is confirmed after
min_hits matches, lost (still predicted) when unmatched, and removed max_lost_s seconds after
it was last seen. Ids count up and are never reused while the tracker lives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from perception.core.errors import ConfigError
from perception.core.segmentation import Segmentation
from perception.core.tracks import CONFIRMED, LOST, NONE, TENTATIVE, PredictedTracks, TrackColumns
from perception.tracking.detections import Detections, clean, thing_detections
from perception.tracking.kalman import BoxKalman, NoiseModel, cxcywh_to_xyxy, xyxy_to_cxcywh
from perception.tracking.matching import MaskCrop, assign, box_iou, mask_iou
from perception.tracking.reports import TrackerReports

MATCHES = ("box", "mask")
CENTRE_GATE = 9.21  # chi-square, 2 degrees of freedom, 99%: farther centres never match by motion
MOTION_WEIGHT = 0.5  # a perfect motion match counts like a half overlap
_ID_LIMIT = 2**32 - 1  # instance ids are uint32 on the wire; 0 means untracked


@dataclass(frozen=True)
class ByteTrackSettings:
    """[tracking] keys of tracker = "bytetrack" (docs: README, launch/default.toml)."""

    match: str = "box"  # "box" IoU or "mask" IoU (masks cut from the id map)
    high_threshold: float = 0.5  # detections at or above: first association, may start tracks
    low_threshold: float = 0.1  # detections in [low, high): second association only; below: ignored
    new_track_threshold: float = 0.6  # an unmatched detection starts a track from this score
    match_iou: float = 0.1  # least similarity (IoU, or the motion cue) of a high-score match
    low_match_iou: float = 0.5  # least IoU of a low-score match
    tentative_match_iou: float = 0.1  # the same for a match with a tentative track
    min_hits: int = 2  # matches that confirm a track
    max_lost_s: float = 1.0  # a track unseen this long (source clock) is removed
    tentative_lost_s: float = 0.0  # the same for a tentative track (0: removed at its first miss)
    max_detections: int = 512  # more things in one frame are capped (lowest scores), and counted
    max_tracks: int = 2048  # live tracks at most (oldest lost ones go first)
    velocity_min_hits: int = 3  # a velocity is published as valid from this many matches
    measurement_noise: float = 0.05  # box measurement std, fraction of the box's larger side
    acceleration_noise: float = 2.0  # process noise of the association filter, box sides per s^2
    velocity_acceleration_noise: float = 20.0  # the same for the filter that publishes velocity

    def __post_init__(self) -> None:
        where = "[tracking]"
        if self.match not in MATCHES:
            raise ConfigError(f"{where} match = {self.match!r} is not a known association",
                              f"use one of {', '.join(repr(m) for m in MATCHES)}")
        for name in ("high_threshold", "low_threshold", "new_track_threshold", "match_iou", "low_match_iou",
                     "tentative_match_iou"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{where} {name} = {value:g} is outside [0, 1]", "give a score or IoU in [0, 1]")
        if self.low_threshold > self.high_threshold:
            raise ConfigError(f"{where} low_threshold = {self.low_threshold:g} is above high_threshold = "
                              f"{self.high_threshold:g}", "keep low_threshold <= high_threshold, e.g. 0.1 and 0.5")
        for name in ("min_hits", "max_detections", "max_tracks", "velocity_min_hits"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where} {name} = {getattr(self, name)} must be at least 1", "e.g. 3")
        for name in ("max_lost_s", "measurement_noise", "acceleration_noise", "velocity_acceleration_noise"):
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise ConfigError(f"{where} {name} = {value:g} must be above 0", "e.g. 1.0")
        if not 0.0 <= self.tentative_lost_s <= self.max_lost_s:
            raise ConfigError(f"{where} tentative_lost_s = {self.tentative_lost_s:g} is outside [0, max_lost_s]",
                              "e.g. 0 (drop a tentative track at its first miss)")


@dataclass
class _Tracks:
    """Per-track columns, row k = row k of the filter."""

    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))
    class_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    state: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    hits: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))
    first_seen_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    last_seen_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    crops: list[MaskCrop | None] = field(default_factory=list)  # last mask, placed at its box then
    crop_centres: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))

    def __len__(self) -> int:
        return len(self.ids)

    def keep(self, rows: np.ndarray) -> None:
        for name in ("ids", "class_ids", "state", "hits", "first_seen_ns", "last_seen_ns", "crop_centres"):
            setattr(self, name, getattr(self, name)[rows])
        self.crops = [self.crops[i] for i in np.arange(len(self.crops))[rows].tolist()]


@dataclass(frozen=True)
class TrackedDetections:
    """Per detection (in Detections order): the track it belongs to, or instance id 0."""

    instance_ids: np.ndarray  # (M,) uint32
    state: np.ndarray  # (M,) uint8
    hits: np.ndarray  # (M,) uint32
    first_seen_ns: np.ndarray  # (M,) int64
    velocity: np.ndarray  # (M, 2) px/s
    velocity_valid: np.ndarray  # (M,) bool

    @classmethod
    def untracked(cls, m: int) -> TrackedDetections:
        return cls(instance_ids=np.zeros(m, np.uint32), state=np.full(m, NONE, np.uint8),
                   hits=np.zeros(m, np.uint32), first_seen_ns=np.zeros(m, np.int64),
                   velocity=np.zeros((m, 2)), velocity_valid=np.zeros(m, bool))

    def spread(self, rows: np.ndarray, m: int) -> TrackedDetections:
        """These values at rows of m detections, the others untracked."""
        out = TrackedDetections.untracked(m)
        for name in ("instance_ids", "state", "hits", "first_seen_ns", "velocity", "velocity_valid"):
            getattr(out, name)[rows] = getattr(self, name)
        return out


class ByteTracker:
    """tracker = "bytetrack". update() for segmentations, step() for any box detector."""

    settings_type = ByteTrackSettings

    def __init__(self, **settings: Any) -> None:
        """Keywords: the fields of ByteTrackSettings."""
        self.settings = s = ByteTrackSettings(**settings)
        # two filters on the same measurements: a steady one predicts where to look (association
        # wants few surprises), a responsive one follows accelerating image motion (the velocity
        # a planner reads); one filter cannot be both
        self._filter = BoxKalman(NoiseModel(measurement=s.measurement_noise, acceleration=s.acceleration_noise))
        self._kinematics = BoxKalman(NoiseModel(measurement=s.measurement_noise,
                                                acceleration=s.velocity_acceleration_noise))
        self._tracks = _Tracks()
        self._next_id = 1
        self._last_stamp_ns: int | None = None
        self.reports = TrackerReports()

    # -- the segments table ------------------------------------------------------------------

    def update(self, segmentation: Segmentation, stamp_ns: int) -> Segmentation:
        """The segmentation with instance ids and track columns filled for its things."""
        seg = segmentation.segments
        detections = thing_detections(segmentation, with_masks=self.settings.match == "mask")
        tracked = self.step(detections, stamp_ns)
        rows = detections.rows
        ids = np.zeros(len(seg), np.uint32)
        columns = TrackColumns.untracked(len(seg))
        ids[rows] = tracked.instance_ids
        columns.state[rows] = tracked.state
        columns.hits[rows] = tracked.hits
        columns.first_seen_ns[rows] = tracked.first_seen_ns
        columns.age_s[rows] = np.where(tracked.instance_ids > 0, (stamp_ns - tracked.first_seen_ns) / 1e9, 0.0)
        columns.velocity[rows] = tracked.velocity
        columns.velocity_valid[rows] = tracked.velocity_valid
        columns.centroid[rows] = detections.centroids
        return Segmentation(segmentation.id_map, seg.with_instance_ids(ids, columns), self.predicted())

    # -- the algorithm ---------------------------------------------------------------------------

    def step(self, given: Detections, stamp_ns: int) -> TrackedDetections:
        """Associate one frame's detections at stamp_ns (source clock, ns); rows the filter cannot
        take (non-finite, empty) or over the cap come back untracked and are reported."""
        cleaned = clean(given, self.settings.max_detections)
        self.reports.dropped(cleaned.dropped_invalid, cleaned.capped, self.settings.max_detections)
        kept = np.flatnonzero(cleaned.kept)
        tracked = self._associate(cleaned.detections, int(stamp_ns))
        return tracked.spread(kept, len(given))

    def _associate(self, detections: Detections, stamp_ns: int) -> TrackedDetections:
        s = self.settings
        self._advance(stamp_ns)
        tracks = self._tracks
        m = len(detections)
        det_track = np.full(m, -1, np.intp)  # track row of each detection
        high = detections.scores >= s.high_threshold
        low = ~high & (detections.scores >= s.low_threshold)
        was_confirmed = tracks.state == CONFIRMED
        stages = (
            (high, was_confirmed | (tracks.state == LOST), s.match_iou),
            (low, was_confirmed, s.low_match_iou),
            (high, tracks.state == TENTATIVE, s.tentative_match_iou),
        )
        track_taken = np.zeros(len(tracks), bool)
        if len(tracks) and m:
            similarity = self._similarity(detections)
            for det_ok, track_ok, minimum in stages:
                t_rows = np.flatnonzero(track_ok & ~track_taken)
                d_rows = np.flatnonzero(det_ok & (det_track < 0))
                if not len(t_rows) or not len(d_rows):
                    continue
                rows, cols = assign(similarity[np.ix_(t_rows, d_rows)], minimum)
                det_track[d_rows[cols]] = t_rows[rows]
                track_taken[t_rows[rows]] = True
        matched = np.flatnonzero(det_track >= 0)
        self._correct(det_track[matched], detections, matched, stamp_ns)
        det_track = self._lose(~track_taken, det_track)
        born = np.flatnonzero((det_track < 0) & (detections.scores >= s.new_track_threshold))
        det_track = self._make_room(len(born), det_track)
        det_track[born] = self._birth(detections, born, stamp_ns)
        return self._describe(det_track)

    def _advance(self, stamp_ns: int) -> None:
        """Predict every track to the new stamp; a stamp earlier than the last one resets them all."""
        last = self._last_stamp_ns
        if last is not None and stamp_ns < last:
            self.reports.reset(last, stamp_ns, len(self._tracks))
            self._tracks = _Tracks()
            self._filter.keep(np.zeros(0, np.intp))
            self._kinematics.keep(np.zeros(0, np.intp))
            last = None
        self._last_stamp_ns = stamp_ns
        if last is None or not len(self._tracks):
            return
        dt = np.full(len(self._tracks), (stamp_ns - last) / 1e9)
        self._filter.predict(dt)
        self._kinematics.predict(dt)
        # removal by the source clock: lost for longer than max_lost_s since last seen
        s = self.settings
        limit = np.where((self._tracks.state == TENTATIVE) & (s.tentative_lost_s > 0), s.tentative_lost_s, s.max_lost_s)
        alive = (stamp_ns - self._tracks.last_seen_ns) <= limit * 1e9
        if not alive.all():
            self._keep(alive)

    def _similarity(self, detections: Detections) -> np.ndarray:
        tracks = self._tracks
        predicted = self._filter.boxes()
        overlap = box_iou(cxcywh_to_xyxy(predicted), detections.boxes)
        if self.settings.match == "mask" and detections.crops is not None:
            shift = np.rint(predicted[:, :2] - tracks.crop_centres).astype(int)
            moved = [None if c is None else c.shifted(int(dx), int(dy))
                     for c, (dx, dy) in zip(tracks.crops, shift.tolist(), strict=True)]
            overlap = mask_iou(moved, detections.crops, overlap)
        # an object that moved further than its own size between frames (low rate, dropped
        # frames, near and fast) overlaps nothing: where the filter expects it is then the cue
        d2 = self._filter.centre_distance2(xyxy_to_cxcywh(detections.boxes)[:, :2])
        motion = MOTION_WEIGHT * np.clip(1.0 - d2 / CENTRE_GATE, 0.0, None)
        same_class = tracks.class_ids[:, None] == detections.class_ids[None, :]
        return np.where(same_class, np.maximum(overlap, motion), -np.inf)

    def _correct(self, rows: np.ndarray, detections: Detections, dets: np.ndarray, stamp_ns: int) -> None:
        tracks = self._tracks
        boxes = xyxy_to_cxcywh(detections.boxes[dets])
        self._filter.update(rows, boxes)
        self._kinematics.update(rows, _at_centroids(boxes, detections, dets))
        tracks.hits[rows] += 1
        tracks.last_seen_ns[rows] = stamp_ns
        tracks.state[rows] = np.where(tracks.hits[rows] >= self.settings.min_hits, CONFIRMED, TENTATIVE)
        if detections.crops is not None:
            for row, det in zip(rows.tolist(), dets.tolist(), strict=True):
                tracks.crops[row] = detections.crops[det]
            tracks.crop_centres[rows] = boxes[:, :2]

    def _lose(self, unmatched: np.ndarray, det_track: np.ndarray) -> np.ndarray:
        tracks = self._tracks
        tracks.state[unmatched & (tracks.state == CONFIRMED)] = LOST
        self._filter.stop_growth(np.flatnonzero(unmatched))
        self._kinematics.stop_growth(np.flatnonzero(unmatched))
        # a tentative track missed once is noise (as in ByteTrack) unless tentative_lost_s keeps it
        gone = unmatched & (tracks.state == TENTATIVE) & (self.settings.tentative_lost_s <= 0)
        return self._keep(~gone, det_track) if gone.any() else det_track

    def _make_room(self, wanted: int, det_track: np.ndarray) -> np.ndarray:
        """At most max_tracks live: lost tracks go first, least recently seen first."""
        excess = len(self._tracks) + min(wanted, self.settings.max_tracks) - self.settings.max_tracks
        if excess <= 0:
            return det_track
        order = np.lexsort((self._tracks.last_seen_ns, self._tracks.state != LOST))
        keep = np.ones(len(self._tracks), bool)
        keep[order[:excess]] = False
        self.reports.evicted += excess
        return self._keep(keep, det_track)

    def _birth(self, detections: Detections, dets: np.ndarray, stamp_ns: int) -> np.ndarray:
        """New tentative tracks for dets; returns their rows (-1 past max_tracks)."""
        rows = np.full(len(dets), -1, np.intp)
        dets = dets[:self.settings.max_tracks]
        n = len(dets)
        if not n:
            return rows
        ids = (self._next_id - 1 + np.arange(n)) % _ID_LIMIT + 1
        self._next_id = int(ids[-1]) % _ID_LIMIT + 1
        boxes = xyxy_to_cxcywh(detections.boxes[dets])
        tracks = self._tracks
        start = len(tracks)
        min_hits = self.settings.min_hits
        tracks.ids = np.concatenate([tracks.ids, ids.astype(np.uint32)])
        tracks.class_ids = np.concatenate([tracks.class_ids, detections.class_ids[dets]])
        tracks.state = np.concatenate([tracks.state, np.full(n, CONFIRMED if min_hits <= 1 else TENTATIVE, np.uint8)])
        tracks.hits = np.concatenate([tracks.hits, np.ones(n, np.uint32)])
        tracks.first_seen_ns = np.concatenate([tracks.first_seen_ns, np.full(n, stamp_ns, np.int64)])
        tracks.last_seen_ns = np.concatenate([tracks.last_seen_ns, np.full(n, stamp_ns, np.int64)])
        crops = detections.crops
        tracks.crops += [None] * n if crops is None else [crops[d] for d in dets.tolist()]
        tracks.crop_centres = np.concatenate([tracks.crop_centres, boxes[:, :2]])
        self._filter.add(boxes)
        self._kinematics.add(_at_centroids(boxes, detections, dets))
        self.reports.created += n
        rows[:n] = start + np.arange(n)
        return rows

    def _keep(self, keep: np.ndarray, det_track: np.ndarray | None = None) -> np.ndarray:
        """Keep the tracks where keep is True; det_track's rows renumbered (-1 where removed)."""
        remap = np.full(len(self._tracks) + 1, -1, np.intp)  # last entry maps -1 to -1
        remap[np.flatnonzero(keep)] = np.arange(int(np.count_nonzero(keep)))
        self._tracks.keep(keep)
        self._filter.keep(keep)
        self._kinematics.keep(keep)
        return np.zeros(0, np.intp) if det_track is None else remap[det_track]

    def _describe(self, det_track: np.ndarray) -> TrackedDetections:
        tracks = self._tracks
        has = det_track >= 0
        t = det_track[has]
        out = TrackedDetections.untracked(len(det_track))
        out.instance_ids[has] = tracks.ids[t]
        out.state[has] = tracks.state[t]
        out.hits[has] = tracks.hits[t]
        out.first_seen_ns[has] = tracks.first_seen_ns[t]
        out.velocity[has] = self._kinematics.velocities()[t]
        out.velocity_valid[has] = (tracks.state[t] == CONFIRMED) & (tracks.hits[t] >= self.settings.velocity_min_hits)
        return out

    # -- introspection -------------------------------------------------------------------------

    def live_tracks(self) -> int:
        return len(self._tracks)

    def predicted(self) -> PredictedTracks:
        """Tracks not seen in the last frame but still predicted to its stamp: where the filters
        expect them. Never part of the id map or the segments table."""
        tracks = self._tracks
        lost = np.flatnonzero(tracks.state == LOST)
        now = self._last_stamp_ns or 0
        return PredictedTracks(
            instance_ids=tracks.ids[lost], class_ids=tracks.class_ids[lost],
            bboxes=cxcywh_to_xyxy(self._filter.boxes()[lost]), centroid=self._kinematics.boxes()[lost, :2],
            velocity=self._kinematics.velocities()[lost], first_seen_ns=tracks.first_seen_ns[lost],
            lost_s=(now - tracks.last_seen_ns[lost]) / 1e9)


def _at_centroids(boxes: np.ndarray, detections: Detections, dets: np.ndarray) -> np.ndarray:
    """cxcywh boxes moved to their masks' centroids: the published velocity is the centroid's
    (what a planner reads beside `centroid`); a box centre moves differently when the shape
    turns, grows unevenly or swings its limbs."""
    out = boxes.copy()
    out[:, :2] = detections.centres()[dets]
    return out
