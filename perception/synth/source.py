"""`synthetic:?seed=7&frames=300&fps=10[&width=320&height=192][&camera=static]`: a rendered drive, replayed.

camera=forward (default) is a drive along the street; camera=static a fixed pole-mounted camera
watching traffic pass (640x360 unless width/height say otherwise), for the motion method.

Rendering costs tens of milliseconds a frame, so the source never renders beside the engine:
open() renders the whole drive once into the drive cache ($XDG_CACHE_HOME/perception/drives,
keyed by the parameters and the generator version) and replays that file: raw pixels in zstd
chunks (~0.3 ms a 320x192 frame to read, against ~1.5 ms for PNG images and their PNG ground
truth), the ground truth left undecoded. Stamps are
START_NS + i * 1e9 / fps, the same for every seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from perception.capture.errors import SourceError
from perception.capture.source import SourceUri
from perception.record.drive import DriveFrame, read_drive
from perception.synth.drivefile import cached_drive
from perception.synth.static_scene import CAMERAS, DEFAULT_SIZES

OPTIONS = ("seed", "frames", "fps", "width", "height", "camera")


class SyntheticSource:
    live = False
    synthetic = True  # what a synthetic-domain model is meant for (no domain warning)

    def __init__(self, uri: SourceUri) -> None:
        uri.check_options(OPTIONS)
        if uri.target:
            raise SourceError(f"synthetic source {uri.raw!r} has a path part {uri.target!r}",
                              "write synthetic:?seed=7&frames=300&fps=10")
        self.uri = uri
        self.seed = uri.int_option("seed", 0)
        self.frames = uri.int_option("frames", 300)
        self.fps = uri.float_option("fps", 10.0)
        self.camera = uri.options.get("camera", "forward")
        if self.camera not in CAMERAS:
            raise SourceError(f"synthetic source {uri.raw!r}: camera={self.camera!r} is not known",
                              f"use camera={' or camera='.join(CAMERAS)}")
        width, height = DEFAULT_SIZES[self.camera]
        self.width = uri.int_option("width", width)
        self.height = uri.int_option("height", height)
        self.path: Path | None = None
        self._frames: Iterator[DriveFrame] | None = None

    @property
    def length(self) -> int:
        """Frames this replay holds (for progress)."""
        return self.frames

    def open(self) -> None:
        self.close()
        self.path = cached_drive(self.seed, self.frames, self.fps, self.width, self.height, self.camera)
        self._frames = read_drive(self.path, ground_truth=False)

    def read(self) -> tuple[np.ndarray, int] | None:
        if self._frames is None:
            raise SourceError(f"synthetic source {self.uri.raw!r} is not open", "call open() before read()")
        frame = next(self._frames, None)
        if frame is None:
            return None
        return frame.bgr, frame.stamp_ns

    def close(self) -> None:
        if self._frames is not None:
            close = getattr(self._frames, "close", None)
            if close is not None:
                close()
            self._frames = None
