"""`perception eval --tracking`: trackers over held-out drives with true instance ids.

Detections are either the ground-truth masks themselves (the tracker alone is measured) or a
model's segmentations (the whole node). Each drive is also replayed with 30% of its frames
dropped at random and at half its frame rate: stamps come from the drive, so a tracker that
counts frames instead of seconds shows it there. True velocities come from the full-rate
truth, whatever frames the tracker saw.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from perception.core.segmentation import Segmentation
from perception.evaluation.mot import TrackingAccumulator, TruthThings
from perception.evaluation.runner import TruthSegmentLike

VARIANTS = ("all frames", "30% dropped", "half rate")
DROP_FRACTION = 0.3


class TruthThingLike(TruthSegmentLike, Protocol):
    """A ground-truth segment that also says which true object it is."""

    @property
    def instance_id(self) -> int: ...

    @property
    def is_thing(self) -> bool: ...


class TruthLike(Protocol):
    @property
    def id_map(self) -> np.ndarray: ...

    @property
    def segments(self) -> Sequence[TruthThingLike]: ...


class TrackerLike(Protocol):
    def update(self, segmentation: Segmentation, stamp_ns: int) -> Segmentation: ...


@dataclass(frozen=True)
class DriveFrame:
    stamp_ns: int
    truth: TruthThings
    detections: Segmentation  # what the tracker is given


def truth_things(truth: TruthLike) -> TruthThings:
    things = [s for s in truth.segments if s.is_thing]
    present = set(np.unique(truth.id_map).tolist())
    things = [s for s in things if s.id in present]
    return TruthThings(truth.id_map, np.array([s.id for s in things], np.intp),
                       np.array([s.class_id for s in things], np.int64),
                       np.array([s.instance_id for s in things], np.int64), np.full((len(things), 2), np.nan))


def truth_as_detections(truth: TruthThings) -> Segmentation:
    """The true thing masks as a segmentation with score 1: what a perfect detector would publish."""
    lut = np.zeros(int(truth.id_map.max(initial=0)) + 1, np.uint32)
    lut[truth.segment_ids] = np.arange(1, len(truth.segment_ids) + 1)
    n = len(truth.segment_ids)
    return Segmentation.from_id_map(lut[truth.id_map], truth.class_ids, np.ones(n), np.ones(n, bool))


def _centroids(truth: TruthThings) -> dict[int, tuple[float, float, bool]]:
    """instance id -> (cx, cy, touches the border) of each true thing's visible pixels."""
    h, w = truth.id_map.shape
    out: dict[int, tuple[float, float, bool]] = {}
    for seg_id, inst in zip(truth.segment_ids.tolist(), truth.instance_ids.tolist(), strict=True):
        ys, xs = np.nonzero(truth.id_map == seg_id)
        border = bool(xs.min() == 0 or ys.min() == 0 or xs.max() == w - 1 or ys.max() == h - 1)
        out[inst] = (float(xs.mean()) + 0.5, float(ys.mean()) + 0.5, border)
    return out


def with_true_velocities(stamps: Sequence[int], truths: Sequence[TruthThings]) -> list[TruthThings]:
    """Central differences of the visible centroid over the neighbouring full-rate frames; NaN
    where a neighbour lacks the object or it touches the image border (its centroid then moves
    with what is cut off, not with the object)."""
    cents = [_centroids(t) for t in truths]
    out = []
    for i, truth in enumerate(truths):
        velocity = np.full((len(truth.instance_ids), 2), np.nan)
        lo, hi = max(i - 1, 0), min(i + 1, len(truths) - 1)
        for k, inst in enumerate(truth.instance_ids.tolist()):
            a, b, here = cents[lo].get(inst), cents[hi].get(inst), cents[i][inst]
            if hi > lo and a is not None and b is not None and not (a[2] or b[2] or here[2]):
                dt = (stamps[hi] - stamps[lo]) / 1e9
                velocity[k] = ((b[0] - a[0]) / dt, (b[1] - a[1]) / dt)
        out.append(replace(truth, velocity=velocity))
    return out


class AmodalLike(Protocol):
    @property
    def area(self) -> float: ...

    @property
    def velocity(self) -> tuple[float, float]: ...


# frame index, instance ids -> the whole (amodal) objects the renderer can draw (synth.amodal)
AmodalSource = Callable[[int, list[int]], Mapping[int, AmodalLike]]


def with_amodal(truth: TruthThings, index: int, amodal: AmodalSource) -> TruthThings:
    """The whole objects' velocities and visible fractions (visible / amodal pixels), NaN where
    the renderer cannot draw an object whole (part of it behind the lens)."""
    whole = amodal(index, truth.instance_ids.tolist())
    visible = np.bincount(truth.id_map.ravel(), minlength=int(truth.segment_ids.max(initial=0)) + 1)[
        truth.segment_ids]
    velocity = np.full((len(truth.instance_ids), 2), np.nan)
    visibility = np.full(len(truth.instance_ids), np.nan)
    for k, inst in enumerate(truth.instance_ids.tolist()):
        if (a := whole.get(inst)) is not None and a.area > 0:
            velocity[k] = a.velocity
            visibility[k] = min(1.0, visible[k] / a.area)
    return replace(truth, amodal_velocity=velocity, visibility=visibility)


def variant_frames(frames: Sequence[DriveFrame], variant: str, seed: int) -> list[DriveFrame]:
    if variant == "all frames":
        return list(frames)
    if variant == "half rate":
        return list(frames[::2])
    if variant == "30% dropped":
        keep = np.random.default_rng([seed, 30]).random(len(frames)) >= DROP_FRACTION
        return [f for f, k in zip(frames, keep.tolist(), strict=True) if k]
    raise ValueError(f"unknown variant {variant!r}")


def score(drives: Iterable[Sequence[DriveFrame]], make_tracker: Callable[[], TrackerLike], variant: str,
          seeds: Sequence[int], min_area: int = 0, min_visibility: float = 0.0) -> dict[str, Any]:
    """Metrics of one tracker over the drives, each replayed as `variant`."""
    acc = TrackingAccumulator(min_area=min_area, min_visibility=min_visibility)
    for drive, seed in zip(drives, seeds, strict=True):
        acc.new_sequence()
        tracker = make_tracker()
        for frame in variant_frames(drive, variant, seed):
            acc.add(frame.truth, tracker.update(frame.detections, frame.stamp_ns))
    return acc.report()


def load_drive(frames: Iterable[tuple[int, np.ndarray, TruthLike]],
               detect: Callable[[np.ndarray], Segmentation] | None,
               amodal: AmodalSource | None = None) -> list[DriveFrame]:
    """(stamp_ns, bgr, truth) frames -> DriveFrames; detect None = the truth masks as detections;
    amodal: the whole objects of a rendered drive (without it, velocity is scored against the
    visible centroid only and no visibility is known)."""
    stamps, truths, detections = [], [], []
    for index, (stamp_ns, bgr, truth) in enumerate(frames):
        things = truth_things(truth)
        if amodal is not None:
            things = with_amodal(things, index, amodal)
        stamps.append(stamp_ns)
        truths.append(things)
        detections.append(truth_as_detections(things) if detect is None else detect(bgr))
    truths = with_true_velocities(stamps, truths)
    return [DriveFrame(s, t, d) for s, t, d in zip(stamps, truths, detections, strict=True)]
