"""`region`: Felzenszwalb-Huttenlocher graph segmentation (scikit-image) into stuff regions.

Each region the graph method finds becomes its own segment of the card's `region_class`: the
family of methods that say where the boundaries are but not what lies inside them (the start
of a floor or cliff detector, a bin-picking table, a segmentation to label by hand). `scale`
favours larger regions, `sigma` smooths first, `min_size` merges smaller regions into their
neighbours (all in working pixels); `max_regions` caps the table, the smallest regions beyond it
going void. scikit-image is the optional [classic] extra, imported when a region card opens.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from perception.core.errors import require
from perception.models.card import ModelCard
from perception.models.classic.base import ClassicMethod, Labels
from perception.models.classic.params import Params

INSTALL = 'pip install "perception-node[classic]"'


class RegionSegmenter(ClassicMethod):
    def __init__(self, card: ModelCard) -> None:
        super().__init__(card)
        p = Params(card)
        self.scale = p.number("scale", 200.0, 1.0, 100_000.0)
        self.sigma = p.number("sigma", 0.8, 0.0, 10.0)
        self.min_size = p.integer("min_size", 80, 1, self.width * self.height)
        self.max_regions = p.integer("max_regions", 255, 1, 65_534)
        self.region_class = p.class_named("region_class", "region", thing=False).id
        p.finish()
        self._segmentation: Any = require("skimage.segmentation", "the region method", INSTALL)

    def segment(self, bgr: np.ndarray) -> Labels:
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        regions = self._segmentation.felzenszwalb(rgb, scale=self.scale, sigma=self.sigma, min_size=self.min_size)
        areas = np.bincount(regions.ravel())
        order = np.argsort(-areas, kind="stable")[: self.max_regions]
        order = order[areas[order] > 0]
        lut = np.zeros(len(areas), np.uint16)  # largest region -> label 1; beyond max_regions -> void
        lut[order] = np.arange(1, len(order) + 1, dtype=np.uint16)
        return Labels(lut[regions], np.full(len(order), self.region_class, np.int32))
