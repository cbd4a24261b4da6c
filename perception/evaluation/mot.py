"""Tracking metrics of published segmentations against true instance ids, frame by frame.

IDF1, MOTA, ID switches and fragmentations come from py-motmetrics (a maintained
implementation of the CLEAR MOT and identity metrics), HOTA from hota.py. A tracked thing
matches a true thing of its class when their masks overlap with IoU >= 0.5. Velocity error
is the relative error |v - v_true| / |v_true| of each valid published velocity of a track at
least min_track_s old, against the true image-plane velocity of the matched object's centroid
(given by the caller per frame), where the object moves at least min_speed px/s.
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

MOTMETRICS = ("idf1", "mota", "num_switches", "num_fragmentations", "num_unique_objects", "num_frames",
              "num_false_positives", "num_misses", "idp", "idr")


@dataclass(frozen=True)
class TruthThings:
    """The true things of one frame: id map plus, per thing, its id-map value, class and true id."""

    id_map: np.ndarray
    segment_ids: np.ndarray  # (G,) values in id_map
    class_ids: np.ndarray  # (G,)
    instance_ids: np.ndarray  # (G,) stable across the drive
    velocity: np.ndarray  # (G, 2) px/s true centroid motion, NaN where unknown


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
    iou_threshold: float = 0.5
    min_track_s: float = 1.0
    min_speed: float = 5.0
    velocity_errors: list[float] = field(default_factory=list)
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
        if self.min_area > 0:
            # like MOTChallenge's distractors: a small true thing is neither missed nor matched,
            # and a track on it is no false positive
            small = np.bincount(truth.id_map.ravel(), minlength=int(truth.segment_ids.max(initial=0)) + 1)[
                truth.segment_ids] < self.min_area
            on_small = (iou[small] >= self.iou_threshold).any(axis=0)
            truth = TruthThings(truth.id_map, truth.segment_ids[~small], truth.class_ids[~small],
                                truth.instance_ids[~small], truth.velocity[~small])
            rows, iou = rows[~on_small], iou[~small][:, ~on_small]
        offset = self._sequence << 32
        gt_ids = [offset + int(i) for i in truth.instance_ids.tolist()]
        hyp_ids = [offset + int(i) for i in seg.instance_ids[rows].tolist()]
        self._acc.update(gt_ids, hyp_ids, np.where(iou >= self.iou_threshold, 1.0 - iou, np.nan))
        self._hota.add(gt_ids, hyp_ids, iou)
        self._add_velocity(truth, seg, rows, iou)

    def _add_velocity(self, truth: TruthThings, seg: Any, rows: np.ndarray, iou: np.ndarray) -> None:
        tracks = seg.tracks
        if tracks is None or not iou.size:
            return
        g, p = linear_sum_assignment(-iou)
        for gi, pi in zip(g.tolist(), p.tolist(), strict=True):
            row = rows[pi]
            true_v = truth.velocity[gi]
            speed = float(np.hypot(*true_v)) if np.isfinite(true_v).all() else 0.0
            if (iou[gi, pi] >= self.iou_threshold and tracks.velocity_valid[row]
                    and tracks.age_s[row] >= self.min_track_s and speed >= self.min_speed):
                self.velocity_errors.append(float(np.hypot(*(tracks.velocity[row] - true_v))) / speed)

    def report(self) -> dict[str, Any]:
        mm = _motmetrics()
        summary = mm.metrics.create().compute(self._acc, metrics=list(MOTMETRICS), name="all")
        row: Mapping[str, Any] = summary.iloc[0]
        out: dict[str, Any] = {k: float(row[k]) if k in ("idf1", "mota", "idp", "idr") else int(row[k])
                               for k in MOTMETRICS}
        out.update(self._hota.compute())
        truths = max(out["num_unique_objects"], 1)
        out["switches_per_100_tracks"] = 100.0 * out["num_switches"] / truths
        errors = np.array(self.velocity_errors)
        out["velocity"] = {
            "samples": len(errors),
            "median_relative_error": float(np.median(errors)) if len(errors) else None,
            "p90_relative_error": float(np.percentile(errors, 90)) if len(errors) else None,
            "min_track_s": self.min_track_s,
            "min_speed_px_s": self.min_speed,
        }
        return out
