"""A drive's outputs against its ground truth: PQ/SQ/RQ (evaluation.pq) and, where the truth
carries instance ids, tracking metrics (evaluation.mot), read back from the output recording.

Scored from the recording rather than inside the node, so the node runs unchanged and what is
scored is exactly what was published. Frames pair by stamp (both are in stamp order). Per-class
counts are kept raw (tp, fp, fn, IoU sum) so totals over drives are the PQ of all their frames,
not an average of averages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np

from perception.core.errors import MissingDependencyError
from perception.core.segmentation import Segmentation
from perception.evaluation.mot import TrackingAccumulator, TruthThings
from perception.evaluation.pq import ClassStats, PanopticReport
from perception.evaluation.runner import accumulator_for, add_frame, relabel_truth, truth_class_map
from perception.evaluation.tracking import truth_things
from perception.models.card import ModelCard
from perception.record.drive import GroundTruth, read_ground_truth
from perception.synth.classes import CLASS_NAMES
from perception.tools.compare import PublishedRun

# counts that add up over drives; IDF1 and MOTA are ratios, kept per drive
TRACKING_COUNTS = ("num_switches", "num_fragmentations", "num_false_positives", "num_misses", "num_unique_objects")
_RAW = ("tp", "fp", "fn", "iou_sum")


def score_recording(recording: Path, truth_file: Path, card: ModelCard) -> dict[str, Any] | None:
    """PQ (and tracking) of the recording's frames that have ground truth; None when none has."""
    run = PublishedRun(recording)
    with closing(read_ground_truth(truth_file)) as truths, closing(run):
        camera = next(iter(run.cameras))
        pq = accumulator_for(card)
        mapping = truth_class_map(card, CLASS_NAMES)
        tracking: TrackingAccumulator | None = None
        tracking_note = ""
        truth = next(truths, None)
        for frame in run.frames(camera):
            while truth is not None and truth[0] < frame.stamp_ns:
                truth = next(truths, None)
            if truth is None or truth[0] != frame.stamp_ns:
                continue
            scored = relabel_truth(truth[1], mapping) if mapping is not None else truth[1]
            predicted = Segmentation(frame.id_map, frame.segments)
            add_frame(pq, scored, predicted)
            if tracking is None and not tracking_note and any(s.instance_id for s in truth[1].segments):
                try:
                    tracking = TrackingAccumulator()
                except MissingDependencyError as exc:
                    tracking_note = str(exc)
            if tracking is not None:
                tracking.add(_things(truth[1], mapping), predicted)
    report = pq.report()
    if not report.frames:
        return None
    out = {"frames": report.frames, **_summary(report), "classes": _raw(report)}
    if tracking is not None:
        metrics = tracking.report()
        out["tracking"] = {k: metrics[k] for k in ("idf1", "mota", "hota", *TRACKING_COUNTS) if k in metrics}
    elif tracking_note:
        out["tracking"] = {"skipped": tracking_note}
    return out


def _things(truth: GroundTruth, mapping: Mapping[int, int | None] | None) -> TruthThings:
    """The true things in the card's classes (a class the card lacks is left out, as PQ voids it)."""
    things = truth_things(truth)
    if mapping is None:
        return things
    classes = np.array([-1 if mapping.get(int(c)) is None else mapping[int(c)] for c in things.class_ids.tolist()],
                       np.int64)
    keep = classes >= 0
    return TruthThings(things.id_map, things.segment_ids[keep], classes[keep], things.instance_ids[keep],
                       things.velocity[keep])


def total(scores: Iterable[Mapping[str, Any] | None]) -> dict[str, Any] | None:
    """PQ of all scored drives' frames together, and the summed tracking counts."""
    scored = [s for s in scores if s and "classes" in s]
    if not scored:
        return None
    names = list(scored[0]["classes"])
    things = [scored[0]["classes"][n]["thing"] for n in names]
    per_class = []
    for name in names:
        stats = ClassStats()
        for s in scored:
            row = s["classes"].get(name, {})
            stats.tp += row.get("tp", 0)
            stats.fp += row.get("fp", 0)
            stats.fn += row.get("fn", 0)
            stats.iou_sum += row.get("iou_sum", 0.0)
        per_class.append(stats)
    report = PanopticReport(tuple(names), tuple(things), tuple(per_class), sum(s["frames"] for s in scored))
    out: dict[str, Any] = {"drives": len(scored), "frames": report.frames, **_summary(report)}
    tracked = [s["tracking"] for s in scored if "idf1" in s.get("tracking", {})]
    if tracked:
        out["tracking"] = {k: sum(t[k] for t in tracked) for k in TRACKING_COUNTS}
    return out


def _summary(report: PanopticReport) -> dict[str, Any]:
    d = report.to_dict()
    return {"pq": d["all"]["pq"], "sq": d["all"]["sq"], "rq": d["all"]["rq"], "things": d["things"],
            "stuff": d["stuff"], "miou": d["miou"]}


def _raw(report: PanopticReport) -> dict[str, Any]:
    return {name: {"thing": thing, **{k: getattr(s, k) for k in _RAW}}
            for name, thing, s in zip(report.names, report.things, report.per_class, strict=True)}
