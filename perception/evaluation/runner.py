"""Run the node's own Pipeline (preprocess -> engine -> decoder) over frames with ground truth."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import numpy as np

from perception.evaluation.pq import PanopticAccumulator, PanopticReport
from perception.models.card import ModelCard
from perception.models.segmentation import Segmentation


class TruthSegmentLike(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def class_id(self) -> int: ...


class TruthLike(Protocol):
    """Ground truth as the synthetic generator and the drive reader both give it."""

    @property
    def id_map(self) -> np.ndarray: ...

    @property
    def segments(self) -> Sequence[TruthSegmentLike]: ...


def accumulator_for(card: ModelCard) -> PanopticAccumulator:
    num = max(c.id for c in card.classes) + 1
    names = [f"class_{i}" for i in range(num)]
    things = [False] * num
    for c in card.classes:
        names[c.id], things[c.id] = c.name, c.thing
    return PanopticAccumulator(names, things)


def add_frame(acc: PanopticAccumulator, truth: TruthLike, seg: Segmentation) -> None:
    gt_classes = {int(s.id): int(s.class_id) for s in truth.segments}
    pred_classes = dict(zip(seg.segments.ids.tolist(), seg.segments.class_ids.tolist(), strict=True))
    acc.add(truth.id_map, gt_classes, seg.id_map, pred_classes)


def evaluate(card: ModelCard, predict: Callable[[np.ndarray], Segmentation],
             frames: Iterable[tuple[np.ndarray, TruthLike]],
             progress: Callable[[int], None] | None = None) -> PanopticReport:
    """predict: BGR frame -> Segmentation at the frame's resolution (e.g. Pipeline.process)."""
    acc = accumulator_for(card)
    for i, (bgr, truth) in enumerate(frames):
        add_frame(acc, truth, predict(bgr))
        if progress is not None:
            progress(i + 1)
    return acc.report()
