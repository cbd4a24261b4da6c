"""The node's optional `image` topic: the input frame as JPEG, at most `rate_hz` times a second."""

from __future__ import annotations

import cv2
import numpy as np

from perception.core.frame import monotonic_ns
from perception.ops.errors import OpsError


class ImagePreview:
    def __init__(self, rate_hz: float, quality: int = 80) -> None:
        if not 1 <= quality <= 100:
            raise OpsError(f"image quality {quality} is outside 1..100", "use e.g. 80")
        self.period_ns = int(1e9 / rate_hz) if rate_hz > 0 else 0
        self.quality = quality
        self._next_ns = 0

    @property
    def enabled(self) -> bool:
        return self.period_ns > 0

    def due(self) -> bool:
        """True at most once per period (the caller then publishes an image)."""
        if not self.enabled:
            return False
        now = monotonic_ns()
        if now < self._next_ns:
            return False
        self._next_ns = now + self.period_ns
        return True

    def encode(self, image: np.ndarray) -> bytes:
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise OpsError("the frame could not be JPEG-encoded for the image topic", "check the source's images")
        return data.tobytes()
