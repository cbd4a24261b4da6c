"""Tracking metrics of published segmentations against true instance ids, frame by frame.

IDF1, MOTA, ID switches and fragmentations come from py-motmetrics (a maintained
implementation of the CLEAR MOT and identity metrics), HOTA from hota.py. A tracked thing
matches a true thing of its class when their masks overlap with IoU >= 0.5. Velocity error
is the relative error |v - v_true| / |v_true| of each valid published velocity of a track at
least min_track_s old, against the true image-plane velocity of the matched object's centroid
(given by the caller per frame), where the object moves at least min_speed px/s: once against
the whole (amodal) object's centroid, the object's own motion, and once against the visible
centroid's, which jumps as the object goes behind something or out of the picture.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from perception.core.errors import require
from perception.core.segmentation import Segmentation
from perception.evaluation.hota import HotaAccumulator
from perception.evaluation.pq import EvaluationError

MOTMETRICS = ("idf1", "mota", "num_switches", "num_fragmentations", "num_unique_objects", "num_frames",
              "num_false_positives", "num_misses", "idp", "idr")


@dataclass(frozen=True)
class TruthThings:
    """The true things of one frame: id map plus, per thing, its id-map value, class and true id."""

    id_map: np.ndarray
    segment_ids: np.ndarray  # (G,) values in id_map
    class_ids: np.ndarray  # (G,)
    instance_ids: np.ndarray  # (G,) stable across the drive
    velocity: np.ndarray  # (G, 2) px/s motion of the visible centroid, NaN where unknown
    # (G, 2) px/s motion of the whole (amodal) object's centroid, (G,) visible / amodal pixels;
    # NaN where unknown, None where the drive cannot say (not rendered from a known world)
    amodal_velocity: np.ndarray | None = None
    visibility: np.ndarray | None = None

    def subset(self, keep: np.ndarray) -> TruthThings:
        """These things at keep (a boolean or index array), the id map unchanged."""
        return TruthThings(self.id_map, self.segment_ids[keep], self.class_ids[keep], self.instance_ids[keep],
                           self.velocity[keep], None if self.amodal_velocity is None else self.amodal_velocity[keep],
                           None if self.visibility is None else self.visibility[keep])


def _motmetrics() -> Any:
    return require("motmetrics", "perception eval --tracking", 'pip install -e ".[eval]"')


def mask_ious(truth: TruthThings, pred: Segmentation, pred_rows: np.ndarray) -> np.ndarray:
    """IoU (G, P) of true things and the predicted rows, 0 across classes."""
    seg = pred.segments
    g, p = len(truth.segment_ids), len(pred_rows)
    if g == 0 or p == 0:
        return np.zeros((g, p))
    gt_lut = np.zeros(int(truth.id_map.max(initial=0)) + 1, np.intp)
    gt_lut[truth.segment_ids] = np.arange(1, g + 1)
    pr_lut = np.zeros(int(pred.id_map.max(initial=0)) + 1, np.intp)
    pr_lut[seg.ids[pred_rows]] = np.arange(1, p + 1)
    gi, pi = gt_lut[truth.id_map].ravel(), pr_lut[pred.id_map].ravel()
    joint = np.bincount(gi * (p + 1) + pi, minlength=(g + 1) * (p + 1)).reshape(g + 1, p + 1)
    inter = joint[1:, 1:].astype(np.float64)
    union = joint[1:, :].sum(1)[:, None] + joint[:, 1:].sum(0)[None, :] - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    return np.where(truth.class_ids[:, None] == seg.class_ids[pred_rows][None, :], iou, 0.0)


@dataclass
class TrackingAccumulator:
    min_area: int = 0  # true things smaller than this (pixels) are ignored, as are tracks on them
    # true things showing less than this fraction of their whole (amodal) pixels are ignored the
    # same way (KITTI's and MOTChallenge's rule for heavily occluded or truncated objects); 0: none
    min_visibility: float = 0.0
    iou_threshold: float = 0.5
    min_track_s: float = 1.0
    min_speed: float = 5.0
    velocity_errors: list[float] = field(default_factory=list)  # against the whole object's motion
    visible_velocity_errors: list[float] = field(default_factory=list)  # against the visible centroid's
    _acc: Any = None
    _hota: HotaAccumulator = field(default_factory=HotaAccumulator)
    _sequence: int = 0

    def __post_init__(self) -> None:
        self._acc = _motmetrics().MOTAccumulator(auto_id=True)

    def new_sequence(self) -> None:
        """Ids of different drives are different objects: offset them apart."""
        self._sequence += 1

    def add(self, truth: TruthThings, pred: Segmentation) -> None:
        seg = pred.segments
        rows = np.flatnonzero(seg.is_thing & (seg.instance_ids > 0))
        iou = mask_ious(truth, pred, rows)
        ignored = self._ignored(truth)
        if ignored.any():
            # like MOTChallenge's distractors: an ignored true thing is neither missed nor
            # matched, and a track on it is no false positive
            on_ignored = (iou[ignored] >= self.iou_threshold).any(axis=0)
            truth = truth.subset(~ignored)
            rows, iou = rows[~on_ignored], iou[~ignored][:, ~on_ignored]
        offset = self._sequence << 32
        gt_ids = [offset + int(i) for i in truth.instance_ids.tolist()]
        hyp_ids = [offset + int(i) for i in seg.instance_ids[rows].tolist()]
        self._acc.update(gt_ids, hyp_ids, np.where(iou >= self.iou_threshold, 1.0 - iou, np.nan))
        self._hota.add(gt_ids, hyp_ids, iou)
        self._add_velocity(truth, seg, rows, iou)

    def _ignored(self, truth: TruthThings) -> np.ndarray:
        ignored = np.zeros(len(truth.segment_ids), bool)
        if self.min_area > 0:
            ignored |= np.bincount(truth.id_map.ravel(), minlength=int(truth.segment_ids.max(initial=0)) + 1)[
                truth.segment_ids] < self.min_area
        if self.min_visibility > 0:
            if truth.visibility is None:
                raise EvaluationError("this drive's truth has no visibility (it was not rendered from a known "
                                      "synthetic world)", "evaluate on rendered drives (--seed)")
            with np.errstate(invalid="ignore"):
                ignored |= ~(truth.visibility >= self.min_visibility)  # unknown: ignored too
        return ignored

    def _add_velocity(self, truth: TruthThings, seg: Any, rows: np.ndarray, iou: np.ndarray) -> None:
        tracks = seg.tracks
        if tracks is None or not iou.size:
            return
        g, p = linear_sum_assignment(-iou)
        for gi, pi in zip(g.tolist(), p.tolist(), strict=True):
            row = rows[pi]
            if not (iou[gi, pi] >= self.iou_threshold and tracks.velocity_valid[row]
                    and tracks.age_s[row] >= self.min_track_s):
                continue
            for true_v, errors in ((truth.velocity[gi], self.visible_velocity_errors),
                                   (None if truth.amodal_velocity is None else truth.amodal_velocity[gi],
                                    self.velocity_errors)):
                speed = float(np.hypot(*true_v)) if true_v is not None and np.isfinite(true_v).all() else 0.0
                if speed >= self.min_speed:
                    errors.append(float(np.hypot(*(tracks.velocity[row] - true_v))) / speed)

    def report(self) -> dict[str, Any]:
        mm = _motmetrics()
        summary = mm.metrics.create().compute(self._acc, metrics=list(MOTMETRICS), name="all")
        row: Mapping[str, Any] = summary.iloc[0]
        out: dict[str, Any] = {k: float(row[k]) if k in ("idf1", "mota", "idp", "idr") else int(row[k])
                               for k in MOTMETRICS}
        out.update(self._hota.compute())
        truths = max(out["num_unique_objects"], 1)
        out["switches_per_100_tracks"] = 100.0 * out["num_switches"] / truths
        out["velocity"] = _errors(self.velocity_errors, self.min_track_s, self.min_speed, "amodal centroid")
        out["velocity_visible"] = _errors(self.visible_velocity_errors, self.min_track_s, self.min_speed,
                                          "visible centroid")
        out["min_visibility"] = self.min_visibility
        return out


def _errors(values: list[float], min_track_s: float, min_speed: float, truth: str) -> dict[str, Any]:
    errors = np.array(values)
    return {
        "truth": truth,
        "samples": len(errors),
        "median_relative_error": float(np.median(errors)) if len(errors) else None,
        "p90_relative_error": float(np.percentile(errors, 90)) if len(errors) else None,
        "min_track_s": min_track_s,
        "min_speed_px_s": min_speed,
    }

