"""Run the node's own Pipeline (preprocess -> engine -> decoder) over frames with ground truth."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from perception.core.segmentation import Segmentation
from perception.evaluation.pq import PanopticAccumulator, PanopticReport
from perception.models.card import ModelCard


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


@dataclass(frozen=True)
class _Truth:
    id_map: np.ndarray
    segments: tuple[TruthSegmentLike, ...]


def void_small_things(truth: TruthLike, min_area: int, thing_classes: set[int]) -> TruthLike:
    """Ground truth with thing segments under min_area pixels turned to void (an analysis knob:
    how the model does on objects a given size and up; small predictions there are then ignored)."""
    ids, counts = np.unique(truth.id_map, return_counts=True)
    area = dict(zip(ids.tolist(), counts.tolist(), strict=True))
    small = [s for s in truth.segments if s.class_id in thing_classes and area.get(int(s.id), 0) < min_area]
    if not small:
        return truth
    id_map = truth.id_map.copy()
    id_map[np.isin(id_map, [int(s.id) for s in small])] = 0
    keep = tuple(s for s in truth.segments if s not in small)
    return _Truth(id_map, keep)


def truth_class_map(card: ModelCard, truth_names: Sequence[str]) -> dict[int, int | None] | None:
    """Ground-truth class id -> the card's class id of the same name (None: the card has no such class,
    its pixels are void). None when the ids already agree, as for a network trained on these classes."""
    by_name = {c.name: c.id for c in card.classes}
    mapping = {i: by_name.get(name) for i, name in enumerate(truth_names)}
    if all(mapping[i] == i for i in mapping):
        return None
    return mapping


def relabel_truth(truth: TruthLike, mapping: Mapping[int, int | None]) -> TruthLike:
    """Ground truth in the card's classes; segments of classes the card lacks become void."""
    keep: list[TruthSegmentLike] = []
    dropped: list[int] = []
    for s in truth.segments:
        target = mapping.get(int(s.class_id))
        if target is None:
            dropped.append(int(s.id))
        else:
            keep.append(_Segment(int(s.id), target))
    id_map = truth.id_map
    if dropped:
        id_map = id_map.copy()
        id_map[np.isin(id_map, dropped)] = 0
    return _Truth(id_map, tuple(keep))


@dataclass(frozen=True)
class _Segment:
    id: int
    class_id: int


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
             progress: Callable[[int], None] | None = None, min_thing_area: int = 0) -> PanopticReport:
    """predict: BGR frame -> Segmentation at the frame's resolution (e.g. Pipeline.process).

    min_thing_area > 0 scores only ground-truth things of that many pixels and up (smaller ones void).
    """
    return evaluate_scenes(card, predict, [frames], progress=progress, min_thing_area=min_thing_area)


def evaluate_scenes(card: ModelCard, predict: Callable[[np.ndarray], Segmentation],
                    scenes: Iterable[Iterable[tuple[np.ndarray, TruthLike]]], *,
                    reset: Callable[[], None] | None = None, unscored: int = 0,
                    truth_names: Sequence[str] | None = None,
                    progress: Callable[[int], None] | None = None, min_thing_area: int = 0) -> PanopticReport:
    """Scenes one after another: `reset` starts each (a background model must not carry over) and
    the first `unscored` frames of each are predicted but not scored (a method's declared warm-up).
    truth_names: the ground truth's class names, matched to the card's by name."""
    acc = accumulator_for(card)
    things = {c.id for c in card.classes if c.thing}
    mapping = truth_class_map(card, truth_names) if truth_names is not None else None
    done = 0
    for frames in scenes:
        if reset is not None:
            reset()
        for i, (bgr, truth) in enumerate(frames):
            seg = predict(bgr)
            done += 1
            if progress is not None:
                progress(done)
            if i < unscored:
                continue
            scored = relabel_truth(truth, mapping) if mapping is not None else truth
            if min_thing_area > 0:
                scored = void_small_things(scored, min_thing_area, things)
            add_frame(acc, scored, seg)
    return acc.report()
