"""`images:DIR` or a glob: the images in name order, at `fps` (default 10) recorded rate."""

from __future__ import annotations

import glob
import math
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from perception.capture.errors import SourceError
from perception.capture.source import SourceUri

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


class ImageFolderSource:
    live = False

    def __init__(self, uri: SourceUri) -> None:
        uri.check_options(("fps",))
        self.uri = uri
        self.fps = uri.float_option("fps", 10.0)
        if not (math.isfinite(self.fps) and 1e-3 <= self.fps <= 1e6):
            raise SourceError(f"fps={self.fps} in {uri.raw!r} must be positive", "e.g. images:frames/?fps=10")
        self._paths: list[Path] = []
        self._next = 0
        self.unreadable: list[Path] = []
        # set by the capture thread: a skipped file becomes a rate-limited `error` status of the node
        self.on_skip: Callable[[str], None] | None = None

    @property
    def length(self) -> int | None:
        """Frames this replay holds, once open (for progress)."""
        return len(self._paths) or None

    def open(self) -> None:
        target = self.uri.target
        if Path(target).is_dir():
            paths = [p for p in Path(target).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        else:
            paths = [Path(p) for p in glob.glob(target) if Path(p).suffix.lower() in IMAGE_SUFFIXES]
        if not paths:
            raise SourceError(f"no images found at {target!r}",
                              f"give a folder or glob of {'/'.join(sorted(IMAGE_SUFFIXES))} files")
        self._paths = sorted(paths)
        self._next = 0

    def read(self) -> tuple[np.ndarray, int] | None:
        while self._next < len(self._paths):
            path = self._paths[self._next]
            index = self._next
            self._next += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                # one bad file must not end a replay of thousands; it is reported, not counted as read
                self.unreadable.append(path)
                if self.on_skip is not None:
                    self.on_skip(f"image {path.name} cannot be decoded; skipped")
                else:
                    print(f"perception: skipping unreadable image {path}", file=sys.stderr)
                continue
            return image, round(index * 1e9 / self.fps)
        if self.unreadable and len(self.unreadable) == len(self._paths):
            raise SourceError(f"none of the {len(self._paths)} image(s) at {self.uri.target!r} can be read",
                              "check that they are image files OpenCV can decode")
        return None

    def close(self) -> None:
        self._paths = []
