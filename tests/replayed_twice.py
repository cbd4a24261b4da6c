"""A source for node tests whose stamps go back once, as a replay started over does.

Registered by the test through PERCEPTION_SOURCES (a plugin like any site-specific source).
"""

from __future__ import annotations

import numpy as np

from perception.capture.source import SourceUri
from tests.onnx_models import scene

STAMPS_S = (0.0, 0.1, 0.2, 0.3, 0.0, 0.1, 0.2)


class ReplayedTwice:
    live = False

    def __init__(self, uri: SourceUri) -> None:
        self.uri = uri
        self._next = 0

    def open(self) -> None:
        self._next = 0

    def read(self) -> tuple[np.ndarray, int] | None:
        if self._next >= len(STAMPS_S):
            return None
        stamp = 1_700_000_000_000_000_000 + round(STAMPS_S[self._next] * 1e9)
        self._next += 1
        return scene(), stamp

    def close(self) -> None:
        pass
