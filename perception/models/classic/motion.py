"""`motion`: things are what moves in front of a fixed camera.

Background model (OpenCV MOG2 or KNN) -> shadows dropped -> opening and closing -> connected
components -> touching blobs split by a distance-transform + watershed -> each piece a thing
whose class follows size/aspect rules; everything else is the "static background" stuff.

Warm-up: the first `warmup_frames` frames are only collected; their per-pixel median (objects
passing through are a minority at each pixel) seeds the model, so whatever stood in the first
frame leaves no ghost. When most of the frame changes at once the camera moved: the frame is
refused with CameraMovingError (the node reports it on the status topic) and the background is
learnt again from the next frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from perception.models.card import ModelCard
from perception.models.classic.base import CameraMovingError, ClassicMethod, Labels
from perception.models.classic.params import Params
from perception.models.errors import ModelCardError

SHADOW = 127  # the value MOG2/KNN give shadow pixels in the mask


@dataclass(frozen=True)
class ClassRule:
    """A blob whose box matches every bound gets this class; the first matching rule wins."""

    class_id: int
    min_aspect: float  # box height / width
    max_aspect: float
    min_area: int  # pixels at working resolution
    max_area: int

    def matches(self, aspect: float, area: int) -> bool:
        return self.min_aspect <= aspect <= self.max_aspect and self.min_area <= area <= self.max_area


class MotionSegmenter(ClassicMethod):
    stateful = True  # one background model: the frames of one fixed camera
    def __init__(self, card: ModelCard) -> None:
        super().__init__(card)
        p = Params(card)
        self.model = p.choice("model", "mog2", ("mog2", "knn"))
        self.history = p.integer("history", 300, 2, 100_000)
        self.var_threshold = p.number("var_threshold", 16.0, 1.0, 10_000.0)  # MOG2
        self.dist2_threshold = p.number("dist2_threshold", 400.0, 1.0, 100_000.0)  # KNN
        self.detect_shadows = p.flag("detect_shadows", True)
        self.shadow_threshold = p.number("shadow_threshold", 0.5, 0.0, 1.0)
        # -1: 1 / history (OpenCV's own rate would restart at 1/2 after seeding and swallow objects)
        self.learning_rate = p.number("learning_rate", -1.0, -1.0, 1.0)
        if -1.0 < self.learning_rate < 0.0:
            raise ModelCardError(f"{p.where} learning_rate = {self.learning_rate:g} is out of range",
                                 "use -1 (1 / history) or 0..1")
        self._rate = 1.0 / self.history if self.learning_rate < 0 else self.learning_rate
        self.warmup_frames = p.integer("warmup_frames", 20, 1, 1000)
        self.blur = p.odd_kernel("blur", 3)
        self.open_kernel = p.odd_kernel("open_kernel", 3)
        self.close_kernel = p.odd_kernel("close_kernel", 5)
        self.min_area = p.integer("min_area", 30, 1, self.width * self.height)
        self.split_touching = p.flag("split_touching", True)
        self.split_ratio = p.number("split_ratio", 0.5, 0.05, 0.95)
        self.min_core_area = p.integer("min_core_area", 4, 1, self.width * self.height)
        self.moving_camera_fraction = p.number("moving_camera_fraction", 0.5, 0.05, 1.0)
        self.background = p.class_named("background_class", "static background", thing=False).id
        self.default_class = p.class_named("default_class", "moving", thing=True).id
        self.rules = tuple(self._rule(raw, i) for i, raw in enumerate(p.tables("rules")))
        p.finish()
        self._opening = _kernel(self.open_kernel)
        self._closing = _kernel(self.close_kernel)
        self.reset()

    def _rule(self, raw: dict[str, object], index: int) -> ClassRule:
        r = Params(self.card, raw, f"[[params.rules]] #{index + 1}")
        rule = ClassRule(r.class_named("class", None, thing=True).id,
                         r.number("min_aspect", 0.0, 0.0, 1000.0), r.number("max_aspect", 1000.0, 0.0, 1000.0),
                         r.integer("min_area", 0, 0, 1 << 31), r.integer("max_area", 1 << 31, 0, 1 << 31))
        r.finish()
        return rule

    def reset(self) -> None:
        if self.model == "mog2":
            mog = cv2.createBackgroundSubtractorMOG2(self.history, self.var_threshold, self.detect_shadows)
            mog.setShadowThreshold(self.shadow_threshold)
            self._subtractor: cv2.BackgroundSubtractorMOG2 | cv2.BackgroundSubtractorKNN = mog
        else:
            knn = cv2.createBackgroundSubtractorKNN(self.history, self.dist2_threshold, self.detect_shadows)
            knn.setShadowThreshold(self.shadow_threshold)
            self._subtractor = knn
        self._warmup: list[np.ndarray] = []
        self._seeded = False

    @property
    def warming_up(self) -> bool:
        return not self._seeded

    def _seed(self, frames: np.ndarray) -> None:
        """Median image as the background, the scene's typical pixel noise as the initial variance."""
        median = np.median(frames, axis=0).astype(np.uint8)
        sub = self._subtractor
        if isinstance(sub, cv2.BackgroundSubtractorMOG2):
            if len(frames) > 1:
                noise = float(np.median(frames.astype(np.float32).var(axis=0)))
                sub.setVarInit(min(max(noise, 4.0), 75.0))
            sub.apply(median, learningRate=1.0)  # rate 1: the model restarts from this image
        else:  # KNN keeps samples per pixel (and refuses rate 1): fill them at the fresh model's own rate
            for _ in range(2 * sub.getNSamples()):
                sub.apply(median, learningRate=-1.0)
        self._warmup = []
        self._seeded = True

    def segment(self, bgr: np.ndarray) -> Labels:
        if self.blur:
            bgr = cv2.GaussianBlur(bgr, (self.blur, self.blur), 0)
        if self.warming_up:
            self._warmup.append(bgr.copy())
            if len(self._warmup) == self.warmup_frames:
                self._seed(np.stack(self._warmup))
            return Labels(np.zeros((self.height, self.width), np.uint16), np.zeros(0, np.int32))
        mask = self._subtractor.apply(bgr, learningRate=self._rate)
        _, mask = cv2.threshold(mask, SHADOW, 255, cv2.THRESH_BINARY)  # shadows (127) become background
        changed = cv2.countNonZero(mask) / mask.size
        if changed > self.moving_camera_fraction:
            self.reset()
            raise CameraMovingError(
                f"the camera is moving: {changed:.0%} of the frame changed at once (moving_camera_fraction = "
                f"{self.moving_camera_fraction:g}); no objects published, background relearnt over the next "
                f"{self.warmup_frames} frames", "the motion method needs a fixed camera; use a network's card for a "
                "moving one")
        if self._opening is not None:
            mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._opening)
        if self._closing is not None:
            mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self._closing)
        return self._instances(mask, bgr)

    def _instances(self, mask: np.ndarray, bgr: np.ndarray) -> Labels:
        count, blobs, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        labels = np.zeros(mask.shape, np.uint16)
        classes: list[int] = []
        for k in range(1, count):
            x, y, w, h, area = (int(v) for v in stats[k])
            if area < self.min_area:
                continue
            roi = blobs[y:y + h, x:x + w] == k
            pieces = self._split(roi, bgr[y:y + h, x:x + w]) if self.split_touching else [roi]
            for piece in pieces:
                piece_area = int(np.count_nonzero(piece))
                if piece_area < self.min_area:
                    continue
                ys, xs = np.nonzero(piece)
                aspect = (int(ys.max()) - int(ys.min()) + 1) / (int(xs.max()) - int(xs.min()) + 1)
                classes.append(self._classify(aspect, piece_area))
                labels[y:y + h, x:x + w][piece] = len(classes)
        # everything not moving is one stuff segment
        labels[labels == 0] = len(classes) + 1
        classes.append(self.background)
        return Labels(labels, np.asarray(classes, np.int32))

    def _split(self, blob: np.ndarray, bgr: np.ndarray) -> list[np.ndarray]:
        """Touching objects: one core per object where the blob is thickest, grown back by watershed."""
        blob8 = blob.astype(np.uint8)
        dist = cv2.distanceTransform(blob8, cv2.DIST_L2, 3)
        cores = (dist >= self.split_ratio * float(dist.max())).astype(np.uint8)
        n, core_labels, core_stats, _ = cv2.connectedComponentsWithStats(cores, connectivity=8)
        big = [c for c in range(1, n) if core_stats[c, cv2.CC_STAT_AREA] >= self.min_core_area]
        if len(big) < 2:
            return [blob]
        markers = np.zeros(blob.shape, np.int32)
        for i, c in enumerate(big, start=1):
            markers[core_labels == c] = i
        outside = len(big) + 1
        markers[~blob] = outside  # the watershed may not spill into the background
        cv2.watershed(np.ascontiguousarray(bgr), markers)
        return [markers == i for i in range(1, outside)]

    def _classify(self, aspect: float, area: int) -> int:
        for rule in self.rules:
            if rule.matches(aspect, area):
                return rule.class_id
        return self.default_class


def _kernel(size: int) -> np.ndarray | None:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)) if size > 1 else None
