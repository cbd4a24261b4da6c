"""Compare the published outputs of two recorded runs: B judged against A, frame by frame.

Frames are paired by camera and frame index (both runs replayed the same drive). Segments are
matched the panoptic-quality way: same class and IoU > 0.5, which makes a match unique. A is a
run, not a hand-labelled ground truth, so its void means "nothing found here", not "unknown":
B segments on A's void count in the union and as added objects (no COCO void exemption).
PQ = sum(IoU of matches) / (TP + FP/2 + FN/2), reported per
frame and, over the whole drive, averaged over classes (as in Kirillov et al., Panoptic
Segmentation). Both recordings are streamed; memory holds one frame of each at a time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from perception.core.segmentation import Segments
from perception.evaluation.pq import panoptic_quality
from perception.record.errors import CorruptRecordingError, EmptyRecordingError, RecordingError
from perception.record.mcap_file import McapRecording
from perception.record.recorder import MESSAGE_ENCODING
from perception.wire.codec import decode_message
from perception.wire.errors import DecodeError
from perception.wire.messages import FrameMessage, MetadataMessage, class_names_of

_FRAME_TOPIC = re.compile(r"^perception/([^/]+)/frame/$")
_META_TOPIC = "perception/{camera}/meta/"


@dataclass(frozen=True)
class SegmentRef:
    id: int
    class_id: int
    class_name: str


@dataclass(frozen=True)
class FrameDiff:
    camera: str
    frame_index: int
    stamp_ns: int
    count_a: int
    count_b: int
    identical: bool  # same id map and same segments table (ids, classes, instances, scores)
    matched_ious: tuple[float, ...]
    added: tuple[SegmentRef, ...]  # in B, not matched in A (false positives)
    removed: tuple[SegmentRef, ...]  # in A, not matched in B (false negatives)
    pixels_changed: int = 0  # pixels whose segment id differs
    classes_changed: int = 0  # segment ids (present in both) whose class differs
    instances_changed: int = 0  # segment ids (present in both) whose tracker instance id differs
    score_drift: float = 0.0  # largest |score B - score A| over segment ids present in both

    def differences(self, score_tolerance: float = 0.0) -> tuple[str, ...]:
        """What differs, each under its own name; score drift at or below the tolerance is not listed."""
        out = []
        if self.pixels_changed:
            out.append(f"pixels {self.pixels_changed}")
        if self.classes_changed:
            out.append(f"classes {self.classes_changed}")
        if self.instances_changed:
            out.append(f"instance ids {self.instances_changed}")
        if self.score_drift > score_tolerance:
            out.append(f"scores {self.score_drift:.2g}")
        return tuple(out)

    def same_within(self, score_tolerance: float) -> bool:
        return self.identical or not (self.added or self.removed or self.differences(score_tolerance))

    @property
    def mean_iou(self) -> float | None:
        return float(np.mean(self.matched_ious)) if self.matched_ious else None

    @property
    def pq(self) -> float:
        # both empty: nothing to disagree about
        return panoptic_quality(len(self.matched_ious), len(self.added), len(self.removed),
                                sum(self.matched_ious), empty=1.0)[0]


@dataclass
class ClassTally:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    iou_sum: float = 0.0

    @property
    def pq(self) -> float:
        return panoptic_quality(self.tp, self.fp, self.fn, self.iou_sum, empty=1.0)[0]

    @property
    def sq(self) -> float:
        return panoptic_quality(self.tp, self.fp, self.fn, self.iou_sum, empty=1.0)[1]

    @property
    def rq(self) -> float:
        return panoptic_quality(self.tp, self.fp, self.fn, self.iou_sum, empty=1.0)[2]


@dataclass
class Comparison:
    path_a: str
    path_b: str
    frames: list[FrameDiff] = field(default_factory=list)
    only_in_a: list[tuple[str, int]] = field(default_factory=list)
    only_in_b: list[tuple[str, int]] = field(default_factory=list)
    classes: dict[int, ClassTally] = field(default_factory=dict)
    class_names: dict[int, str] = field(default_factory=dict)

    @property
    def identical(self) -> bool:
        return not self.only_in_a and not self.only_in_b and all(f.identical for f in self.frames)

    def _averaged(self, attribute: str) -> float:
        tallies = [t for t in self.classes.values() if t.tp + t.fp + t.fn]
        return float(np.mean([getattr(t, attribute) for t in tallies])) if tallies else 1.0

    @property
    def pq(self) -> float:
        return self._averaged("pq")

    @property
    def sq(self) -> float:
        return self._averaged("sq")

    @property
    def rq(self) -> float:
        return self._averaged("rq")

    def to_dict(self) -> dict[str, Any]:
        def refs(items: tuple[SegmentRef, ...]) -> list[dict[str, Any]]:
            return [{"id": r.id, "class_id": r.class_id, "class": r.class_name} for r in items]

        return {
            "a": self.path_a, "b": self.path_b, "identical": self.identical,
            "pq": self.pq, "sq": self.sq, "rq": self.rq,
            "frames_compared": len(self.frames), "frames_identical": sum(f.identical for f in self.frames),
            "only_in_a": [list(k) for k in self.only_in_a], "only_in_b": [list(k) for k in self.only_in_b],
            "classes": {self.class_names.get(c, f"class{c}"): {"pq": t.pq, "sq": t.sq, "rq": t.rq, "tp": t.tp,
                                                               "fp": t.fp, "fn": t.fn}
                        for c, t in sorted(self.classes.items())},
            "frames": [{"camera": f.camera, "frame_index": f.frame_index, "stamp_ns": f.stamp_ns,
                        "identical": f.identical, "count_a": f.count_a, "count_b": f.count_b,
                        "pixels_changed": f.pixels_changed, "classes_changed": f.classes_changed,
                        "instances_changed": f.instances_changed, "score_drift": f.score_drift,
                        "mean_iou": f.mean_iou, "pq": f.pq, "added": refs(f.added), "removed": refs(f.removed)}
                       for f in self.frames],
        }


def _segments_equal(a: Segments, b: Segments) -> bool:
    return all(np.array_equal(x, y) for x, y in ((a.ids, b.ids), (a.class_ids, b.class_ids),
                                                  (a.instance_ids, b.instance_ids), (a.scores, b.scores)))


@dataclass(frozen=True)
class Matching:
    """Segments of B matched to A the panoptic way (same class, IoU > threshold: unique)."""

    pairs: tuple[tuple[int, int, int, float], ...]  # (id in A, id in B, class id, IoU)
    unmatched_a: tuple[tuple[int, int], ...]  # (id, class id) in A, not in B
    unmatched_b: tuple[tuple[int, int], ...]  # (id, class id) in B, not in A


def match_segments(map_a: np.ndarray, seg_a: Segments, map_b: np.ndarray, seg_b: Segments,
                   iou_threshold: float = 0.5) -> Matching:
    """A is the reference run (its void means "nothing here", so B on A's void counts in the union)."""
    size_a = int(max(int(map_a.max(initial=0)), int(seg_a.ids.max(initial=0)))) + 1
    size_b = int(max(int(map_b.max(initial=0)), int(seg_b.ids.max(initial=0)))) + 1
    joint = map_a.astype(np.int64).ravel() * size_b + map_b.astype(np.int64).ravel()
    if size_a * size_b <= 1 << 24:
        keys = np.flatnonzero(counts := np.bincount(joint, minlength=size_a * size_b))
        inter = counts[keys]
    else:  # huge ids: sparse pairs only
        keys, inter = np.unique(joint, return_counts=True)
    ia, ib = keys // size_b, keys % size_b
    area_a = np.bincount(map_a.ravel(), minlength=size_a)
    area_b = np.bincount(map_b.ravel(), minlength=size_b)

    class_a = dict(zip(seg_a.ids.tolist(), seg_a.class_ids.tolist(), strict=True))
    class_b = dict(zip(seg_b.ids.tolist(), seg_b.class_ids.tolist(), strict=True))
    pairs: list[tuple[int, int, int, float]] = []
    for x, y, n in zip(ia.tolist(), ib.tolist(), inter.tolist(), strict=True):
        if x == 0 or y == 0 or x not in class_a or y not in class_b or class_a[x] != class_b[y]:
            continue
        union = int(area_a[x]) + int(area_b[y]) - n
        iou = n / union if union else 0.0
        if iou > iou_threshold:  # > 0.5 makes the match unique
            pairs.append((x, y, class_a[x], iou))
    matched_a = {p[0] for p in pairs}
    matched_b = {p[1] for p in pairs}
    return Matching(tuple(pairs), tuple((i, c) for i, c in class_a.items() if i not in matched_a),
                    tuple((i, c) for i, c in class_b.items() if i not in matched_b))


def tally(matching: Matching, classes: dict[int, ClassTally]) -> None:
    """Add one frame's matches to per-class TP/FP/FN tallies (B judged against A)."""
    for _a, _b, class_id, iou in matching.pairs:
        entry = classes.setdefault(class_id, ClassTally())
        entry.tp += 1
        entry.iou_sum += iou
    for _i, class_id in matching.unmatched_a:
        classes.setdefault(class_id, ClassTally()).fn += 1
    for _i, class_id in matching.unmatched_b:
        classes.setdefault(class_id, ClassTally()).fp += 1


def class_averaged_pq(classes: dict[int, ClassTally]) -> float:
    """PQ averaged over the classes that occur (1.0 when none does)."""
    tallies = [t for t in classes.values() if t.tp + t.fp + t.fn]
    return float(np.mean([t.pq for t in tallies])) if tallies else 1.0


def diff_frame(a: FrameMessage, b: FrameMessage, class_names: dict[int, str], classes: dict[int, ClassTally],
               iou_threshold: float = 0.5) -> FrameDiff:
    """Match the segments of one frame of B against A and add the outcome to the per-class tallies."""
    map_a, map_b = a.id_map, b.id_map
    if map_a.shape != map_b.shape:
        raise RecordingError(f"frame {a.frame_index} of camera {a.camera} is {map_a.shape[1]}x{map_a.shape[0]} in A "
                             f"but {map_b.shape[1]}x{map_b.shape[0]} in B",
                             "compare runs of the same drive at the same resolution")
    identical = np.array_equal(map_a, map_b) and _segments_equal(a.segments, b.segments)
    seg_a, seg_b = a.segments, b.segments
    matching = match_segments(map_a, seg_a, map_b, seg_b, iou_threshold)
    tally(matching, classes)

    def ref(segment_id: int, class_id: int) -> SegmentRef:
        return SegmentRef(segment_id, class_id, class_names.get(class_id, f"class{class_id}"))

    removed = tuple(ref(i, c) for i, c in matching.unmatched_a)
    added = tuple(ref(i, c) for i, c in matching.unmatched_b)
    return FrameDiff(a.camera, a.frame_index, a.stamp_ns, len(seg_a), len(seg_b), identical,
                     tuple(p[3] for p in matching.pairs), added, removed,
                     *_table_changes(map_a, map_b, seg_a, seg_b))


def _table_changes(map_a: np.ndarray, map_b: np.ndarray, seg_a: Segments,
                   seg_b: Segments) -> tuple[int, int, int, float]:
    """(pixels, classes, instance ids changed; largest score drift) between two frames' outputs."""
    pixels = int(np.count_nonzero(map_a != map_b))
    rows_a = {int(i): n for n, i in enumerate(seg_a.ids.tolist())}
    shared = [(rows_a[int(i)], n) for n, i in enumerate(seg_b.ids.tolist()) if int(i) in rows_a]
    if not shared:
        return pixels, 0, 0, 0.0
    ra, rb = (np.array(r) for r in zip(*shared, strict=True))
    classes = int(np.count_nonzero(seg_a.class_ids[ra] != seg_b.class_ids[rb]))
    instances = int(np.count_nonzero(seg_a.instance_ids[ra] != seg_b.instance_ids[rb]))
    drift = float(np.max(np.abs(seg_a.scores[ra].astype(np.float64) - seg_b.scores[rb].astype(np.float64))))
    return pixels, classes, instances, drift


def _decode(data: bytes, what: str, class_names: dict[int, str] | None = None) -> Any:
    try:
        parts = msgpack.unpackb(data)
        if not isinstance(parts, list):
            raise DecodeError("not a list of frames", "corrupt message")
        return decode_message(parts, receive_ns=0, class_names=class_names)
    except (DecodeError, ValueError, msgpack.UnpackException) as exc:
        raise CorruptRecordingError(f"{what} is not a valid published message ({exc})",
                                    "the recording is damaged or from another tool") from exc


class PublishedRun:
    """The published frames of one recording (`perception run --record`), per camera, in order."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.recording = McapRecording(path)
        self.path = str(path)
        self.cameras: dict[str, str] = {}
        for topic, _kind in self.recording.topics().items():
            match = _FRAME_TOPIC.match(topic)
            if match:
                self.cameras[match.group(1)] = topic
        if not self.cameras:
            self.recording.close()
            raise EmptyRecordingError(f"recording {self.path!r} holds no published frames (topics: "
                                      f"{', '.join(sorted(self.recording.topics())) or 'none'})",
                                      "record a run with `perception run --record FILE` (perception record keeps "
                                      "input only)")

    def class_names(self, camera: str) -> dict[int, str]:
        for _schema, channel, message in self.recording.messages([_META_TOPIC.format(camera=camera)]):
            decoded = _decode(message.data, f"{self.path} {channel.topic}")
            if isinstance(decoded, MetadataMessage):
                return class_names_of(decoded.metadata)
        return {}

    def frames(self, camera: str) -> Iterator[FrameMessage]:
        topic = self.cameras.get(camera)
        if topic is None:
            return
        for _schema, channel, message in self.recording.messages([topic]):
            if channel.message_encoding != MESSAGE_ENCODING:
                continue
            decoded = _decode(message.data, f"{self.path} {topic} at log time {message.log_time}")
            if isinstance(decoded, FrameMessage):
                yield decoded

    def close(self) -> None:
        self.recording.close()


def compare_runs(path_a: str | os.PathLike[str], path_b: str | os.PathLike[str],
                 iou_threshold: float = 0.5) -> Comparison:
    """Pair frames by (camera, frame index) with a streaming merge; both runs must be in frame order."""
    run_a = PublishedRun(path_a)
    try:
        run_b = PublishedRun(path_b)
    except BaseException:
        run_a.close()
        raise
    result = Comparison(str(path_a), str(path_b))
    try:
        for camera in sorted(set(run_a.cameras) | set(run_b.cameras)):
            names = run_a.class_names(camera) or run_b.class_names(camera)
            result.class_names.update(names)
            frames_a, frames_b = run_a.frames(camera), run_b.frames(camera)
            a, b = next(frames_a, None), next(frames_b, None)
            while a is not None or b is not None:
                if a is not None and (b is None or a.frame_index < b.frame_index):
                    result.only_in_a.append((camera, a.frame_index))
                    a = next(frames_a, None)
                elif b is not None and (a is None or b.frame_index < a.frame_index):
                    result.only_in_b.append((camera, b.frame_index))
                    b = next(frames_b, None)
                elif a is not None and b is not None:
                    result.frames.append(diff_frame(a, b, names, result.classes, iou_threshold))
                    a, b = next(frames_a, None), next(frames_b, None)
    finally:
        run_a.close()
        run_b.close()
    return result
