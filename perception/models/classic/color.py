"""`color`: stuff by colour alone: per-pixel ranges, or k-means clusters, in a colour space.

ranges: each `[[params.ranges]]` gives a stuff class and low/high bounds per channel in the
card's `space` (OpenCV 8-bit scales: HSV hue 0..179, S and V 0..255; Lab 0..255; BGR); the
first matching range wins, a hue range with low > high wraps through 0 (reds).
kmeans: `k` clusters per frame, ordered from darkest to brightest, become the card's stuff
classes in id order.
Then regions smaller than `min_region` pixels are dropped and holes (unassigned patches up to
`max_hole` pixels, including what was dropped) take the class of the nearest assigned pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from perception.models.card import ModelCard
from perception.models.classic.base import ClassicMethod, Labels
from perception.models.classic.params import Params
from perception.models.errors import ModelCardError

SPACES = {"hsv": cv2.COLOR_BGR2HSV, "lab": cv2.COLOR_BGR2LAB, "bgr": None}
CHANNEL_MAX = {"hsv": (179.0, 255.0, 255.0), "lab": (255.0, 255.0, 255.0), "bgr": (255.0, 255.0, 255.0)}
UNASSIGNED = 255


@dataclass(frozen=True)
class ColorRange:
    slot: int  # index into the method's stuff classes
    low: tuple[float, float, float]
    high: tuple[float, float, float]


class ColorSegmenter(ClassicMethod):
    def __init__(self, card: ModelCard) -> None:
        super().__init__(card)
        p = Params(card)
        self.space = p.choice("space", "hsv", tuple(SPACES))
        self.mode = p.choice("mode", "ranges", ("ranges", "kmeans"))
        self.min_region = p.integer("min_region", 50, 0, self.width * self.height)
        self.fill_holes = p.flag("fill_holes", True)
        self.max_hole = p.integer("max_hole", 400, 0, self.width * self.height)
        self.stuff = [c.id for c in card.classes if not c.thing]
        if not self.stuff or len(self.stuff) > 254:
            raise ModelCardError(f"{p.where}: the color method needs 1..254 stuff classes, the card has "
                                 f"{len(self.stuff)}", "list them in [[classes]] with thing = false")
        # checked in either mode, so switching a card to kmeans and back keeps its ranges valid
        self.ranges = tuple(self._range(raw, i) for i, raw in enumerate(p.tables("ranges")))
        if self.mode == "ranges" and not self.ranges:
            raise ModelCardError(f"{p.where} mode = \"ranges\" has no [[params.ranges]]",
                                 "add class, low and high for each colour range")
        self.attempts = p.integer("attempts", 1, 1, 10)
        self.iterations = p.integer("iterations", 10, 1, 100)
        self.sample_step = p.integer("sample_step", 4, 1, 64)  # k-means fits every Nth pixel
        p.finish()

    def _range(self, raw: dict[str, object], index: int) -> ColorRange:
        r = Params(self.card, raw, f"[[params.ranges]] #{index + 1}")
        info = r.class_named("class", None, thing=False)
        top = max(CHANNEL_MAX[self.space])
        low, high = r.triple("low", 0.0, top), r.triple("high", 0.0, top)
        r.finish()
        for ch, (lo, hi, cap) in enumerate(zip(low, high, CHANNEL_MAX[self.space], strict=True)):
            wraps = self.space == "hsv" and ch == 0
            if hi > cap or (lo > hi and not wraps):
                raise ModelCardError(f"{r.where} channel {ch}: low {lo:g} / high {hi:g} is not a range in "
                                     f"{self.space} (0..{cap:g})", "give low <= high within the channel's scale")
        return ColorRange(self.stuff.index(info.id), low, high)

    def segment(self, bgr: np.ndarray) -> Labels:
        code = SPACES[self.space]
        image = bgr if code is None else cv2.cvtColor(bgr, code)
        slots = self._by_ranges(image) if self.mode == "ranges" else self._by_kmeans(image, bgr)
        if self.min_region > 1:
            self._drop_small(slots)
        if self.fill_holes and self.max_hole > 0:
            self._fill(slots)
        return _labels(slots, self.stuff)

    def _by_ranges(self, image: np.ndarray) -> np.ndarray:
        slots = np.full(image.shape[:2], UNASSIGNED, np.uint8)
        for r in self.ranges:
            if r.low[0] > r.high[0]:  # a hue range through 0
                mask = cv2.bitwise_or(cv2.inRange(image, (0.0, r.low[1], r.low[2]), (r.high[0], r.high[1], r.high[2])),
                                      cv2.inRange(image, r.low, (179.0, r.high[1], r.high[2])))
            else:
                mask = cv2.inRange(image, r.low, r.high)
            free = (slots == UNASSIGNED) & (mask > 0)
            slots[free] = r.slot
        return slots

    def _by_kmeans(self, image: np.ndarray, bgr: np.ndarray) -> np.ndarray:
        k = len(self.stuff)
        pixels = image.reshape(-1, 3).astype(np.float32)
        sample = np.ascontiguousarray(pixels[:: self.sample_step])
        if len(sample) < k:
            return np.full(image.shape[:2], UNASSIGNED, np.uint8)
        cv2.setRNGSeed(0)  # the same frame gives the same clusters
        criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, self.iterations, 0.5)
        unused = np.zeros((len(sample), 1), np.int32)  # initial labels, ignored without KMEANS_USE_INITIAL_LABELS
        _, _, centres = cv2.kmeans(sample, k, unused, criteria, self.attempts, cv2.KMEANS_PP_CENTERS)
        nearest = ((pixels[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
        grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).reshape(-1).astype(np.float64)
        counts = np.bincount(nearest, minlength=k)
        brightness = np.bincount(nearest, grey, minlength=k) / np.maximum(counts, 1)
        order = np.empty(k, np.uint8)
        order[np.argsort(brightness, kind="stable")] = np.arange(k, dtype=np.uint8)
        return order[nearest].reshape(image.shape[:2])

    def _drop_small(self, slots: np.ndarray) -> None:
        for slot in np.unique(slots):
            if slot == UNASSIGNED:
                continue
            _, regions, stats, _ = cv2.connectedComponentsWithStats((slots == slot).astype(np.uint8),
                                                                        connectivity=8)
            small = stats[:, cv2.CC_STAT_AREA] < self.min_region
            small[0] = False
            if small.any():
                slots[small[regions]] = UNASSIGNED

    def _fill(self, slots: np.ndarray) -> None:
        unassigned = (slots == UNASSIGNED).astype(np.uint8)
        if not unassigned.any() or unassigned.all():
            return
        _, holes, stats, _ = cv2.connectedComponentsWithStats(unassigned, connectivity=8)
        fill = stats[:, cv2.CC_STAT_AREA] <= self.max_hole
        fill[0] = False
        if not fill.any():
            return
        # every unassigned pixel learns its nearest assigned pixel; only small holes take its class
        _, nearest = cv2.distanceTransformWithLabels(unassigned, cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL)
        owner = np.zeros(int(nearest.max()) + 1, np.uint8)
        assigned = unassigned == 0
        owner[nearest[assigned]] = slots[assigned]
        target = fill[holes]
        slots[target] = owner[nearest[target]]


def _labels(slots: np.ndarray, stuff: list[int]) -> Labels:
    """One stuff segment per class present (label k + 1 for the k-th present class)."""
    present = [int(s) for s in np.unique(slots) if s != UNASSIGNED]
    lut = np.zeros(256, np.uint16)
    for label, slot in enumerate(present, start=1):
        lut[slot] = label
    return Labels(lut[slots], np.asarray([stuff[s] for s in present], np.int32))
