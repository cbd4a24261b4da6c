"""A drive that kills the worker process replaying it, as the OOM killer or a native crash would.

`dies:MARKER` ends its process at open() the first time (it leaves MARKER behind), then replays
three frames like any drive; `dies:MARKER?always=1` ends every process that opens it. Registered
through PERCEPTION_SOURCES, which worker processes inherit.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from perception.capture.source import SourceUri
from tests.onnx_models import scene

PLUGIN = "dies=tests.fleet_support:DiesOnce"
EXIT_CODE = 70
FRAMES = 3


class DiesOnce:
    live = False

    def __init__(self, uri: SourceUri) -> None:
        uri.check_options(["always"])
        self.uri = uri
        self.marker = Path(uri.target)
        self.always = uri.option("always", "0") == "1"
        self._next = 0

    def open(self) -> None:
        if self.always or not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os._exit(EXIT_CODE)
        self._next = 0

    def read(self) -> tuple[np.ndarray, int] | None:
        if self._next >= FRAMES:
            return None
        self._next += 1
        return scene(), 1_700_000_000_000_000_000 + self._next * 100_000_000

    def close(self) -> None:
        pass
