"""Panoptic quality, following the COCO panopticapi rules (pq_compute.py), plus semantic mIoU.

Per frame: a predicted and a ground-truth segment of the same class match when their IoU
> 0.5 (unique by construction); void ground-truth pixels are left out of the union; an
unmatched prediction counts as a false positive unless more than half of it lies on void.
Totals add up over frames; PQ = sum(IoU of matches) / (TP + FP/2 + FN/2) per class, then
averaged over classes that occur (in ground truth or prediction).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from perception.core.errors import PerceptionError

VOID_ID = 0


class EvaluationError(PerceptionError):
    """Prediction and ground truth that cannot be compared."""


def panoptic_quality(tp: int, fp: int, fn: int, iou_sum: float, empty: float = 0.0) -> tuple[float, float, float]:
    """(PQ, SQ, RQ) from matched-segment counts; `empty` is PQ and RQ when there is nothing at all."""
    denominator = tp + 0.5 * fp + 0.5 * fn
    if not denominator:
        return empty, 0.0, empty
    return iou_sum / denominator, (iou_sum / tp if tp else 0.0), tp / denominator


@dataclass
class ClassStats:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    iou_sum: float = 0.0
    # semantic confusion for mIoU, in pixels (void ground truth excluded)
    intersection: int = 0
    union: int = 0

    @property
    def present(self) -> bool:
        return self.tp + self.fp + self.fn > 0

    @property
    def pq(self) -> float:
        return panoptic_quality(self.tp, self.fp, self.fn, self.iou_sum)[0]

    @property
    def sq(self) -> float:
        return panoptic_quality(self.tp, self.fp, self.fn, self.iou_sum)[1]

    @property
    def rq(self) -> float:
        return panoptic_quality(self.tp, self.fp, self.fn, self.iou_sum)[2]

    @property
    def iou(self) -> float:
        return self.intersection / self.union if self.union else 0.0


@dataclass(frozen=True)
class Summary:
    pq: float
    sq: float
    rq: float
    classes: int


@dataclass(frozen=True)
class PanopticReport:
    names: tuple[str, ...]
    things: tuple[bool, ...]
    per_class: tuple[ClassStats, ...]
    frames: int

    def summary(self, which: str = "all") -> Summary:
        picked = [s for s, thing in zip(self.per_class, self.things, strict=True)
                  if s.present and (which == "all" or (which == "things") == thing)]
        if not picked:
            return Summary(0.0, 0.0, 0.0, 0)
        n = len(picked)
        return Summary(sum(s.pq for s in picked) / n, sum(s.sq for s in picked) / n,
                       sum(s.rq for s in picked) / n, n)

    @property
    def miou(self) -> float:
        ious = [s.iou for s in self.per_class if s.union > 0]
        return sum(ious) / len(ious) if ious else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain data, percentages rounded to 0.01, for --json and reports."""
        def pct(x: float) -> float:
            return round(100 * x, 2)

        out: dict[str, Any] = {"frames": self.frames}
        for which in ("all", "things", "stuff"):
            s = self.summary(which)
            out[which] = {"pq": pct(s.pq), "sq": pct(s.sq), "rq": pct(s.rq), "classes": s.classes}
        out["miou"] = pct(self.miou)
        out["per_class"] = {
            name: {"thing": thing, "pq": pct(s.pq), "sq": pct(s.sq), "rq": pct(s.rq), "tp": s.tp, "fp": s.fp,
                   "fn": s.fn, "iou": pct(s.iou)}
            for name, thing, s in zip(self.names, self.things, self.per_class, strict=True)}
        return out


@dataclass
class PanopticAccumulator:
    """Feed frames (id maps + per-segment class ids) one at a time; read a PanopticReport at the end."""

    names: Sequence[str]
    things: Sequence[bool]
    stats: list[ClassStats] = field(init=False)
    frames: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if len(self.names) != len(self.things):
            raise EvaluationError("class names and thing flags differ in length", "pass one flag per class")
        self.stats = [ClassStats() for _ in self.names]

    def add(self, gt_map: np.ndarray, gt_classes: dict[int, int], pred_map: np.ndarray,
            pred_classes: dict[int, int]) -> None:
        """One frame. *_map: id maps (0 = void); *_classes: segment id -> class id."""
        if gt_map.shape != pred_map.shape:
            raise EvaluationError(f"prediction {pred_map.shape} and ground truth {gt_map.shape} differ in size",
                                  "evaluate predictions mapped back to the source resolution")
        num_classes = len(self.names)
        for cls in list(gt_classes.values()) + list(pred_classes.values()):
            if not 0 <= cls < num_classes:
                raise EvaluationError(f"class id {cls} is outside the {num_classes} evaluated classes",
                                      "evaluate with a class list that covers the model's classes")
        self.frames += 1
        gt = gt_map.astype(np.int64).ravel()
        pred = pred_map.astype(np.int64).ravel()
        gt_ids, gt_inv = np.unique(gt, return_inverse=True)
        pr_ids, pr_inv = np.unique(pred, return_inverse=True)
        joint = np.bincount(gt_inv * len(pr_ids) + pr_inv, minlength=len(gt_ids) * len(pr_ids))
        joint = joint.reshape(len(gt_ids), len(pr_ids))
        gt_area = joint.sum(axis=1)
        pr_area = joint.sum(axis=0)
        gt_void_row = np.nonzero(gt_ids == VOID_ID)[0]
        void_overlap = joint[gt_void_row[0]] if len(gt_void_row) else np.zeros(len(pr_ids), np.int64)
        gt_cls = np.array([gt_classes.get(int(i), -1) for i in gt_ids])
        pr_cls = np.array([pred_classes.get(int(i), -1) for i in pr_ids])
        for gi, gid in enumerate(gt_ids):
            if gid != VOID_ID and gt_cls[gi] < 0:
                raise EvaluationError(f"ground-truth segment {gid} has no class", "list every segment of the id map")
        for pj, pid in enumerate(pr_ids):
            if pid != VOID_ID and pr_cls[pj] < 0:
                raise EvaluationError(f"predicted segment {pid} has no class", "list every segment of the id map")
        matched_gt = np.zeros(len(gt_ids), bool)
        matched_pr = np.zeros(len(pr_ids), bool)
        rows, cols = np.nonzero(joint)
        for gi, pj in zip(rows.tolist(), cols.tolist(), strict=True):
            if gt_ids[gi] == VOID_ID or pr_ids[pj] == VOID_ID or gt_cls[gi] != pr_cls[pj]:
                continue
            inter = joint[gi, pj]
            union = pr_area[pj] + gt_area[gi] - inter - void_overlap[pj]
            iou = inter / union
            if iou > 0.5:
                stats = self.stats[gt_cls[gi]]
                stats.tp += 1
                stats.iou_sum += float(iou)
                matched_gt[gi] = matched_pr[pj] = True
        for gi, gid in enumerate(gt_ids):
            if gid != VOID_ID and not matched_gt[gi]:
                self.stats[gt_cls[gi]].fn += 1
        for pj, pid in enumerate(pr_ids):
            if pid == VOID_ID or matched_pr[pj]:
                continue
            if void_overlap[pj] / pr_area[pj] > 0.5:  # mostly on void: not a false positive
                continue
            self.stats[pr_cls[pj]].fp += 1
        self._add_semantic(gt, gt_inv, gt_cls, pred, pr_inv, pr_cls)

    def _add_semantic(self, gt: np.ndarray, gt_inv: np.ndarray, gt_cls: np.ndarray, pred: np.ndarray,
                      pr_inv: np.ndarray, pr_cls: np.ndarray) -> None:
        num_classes = len(self.names)
        gsem = gt_cls[gt_inv]
        psem = np.where(pred == VOID_ID, -1, pr_cls[pr_inv])
        valid = gt != VOID_ID
        g, p = gsem[valid], psem[valid]
        inter = np.bincount(g[g == p], minlength=num_classes)
        gcount = np.bincount(g, minlength=num_classes)
        pcount = np.bincount(p[p >= 0], minlength=num_classes)
        for c in range(num_classes):
            self.stats[c].intersection += int(inter[c])
            self.stats[c].union += int(gcount[c] + pcount[c] - inter[c])

    def report(self) -> PanopticReport:
        return PanopticReport(tuple(self.names), tuple(bool(t) for t in self.things),
                              tuple(ClassStats(**vars(s)) for s in self.stats), self.frames)
