"""Synthetic drives on disk: render once into the record/replay drive format, then replay.

This module (unlike the rest of perception.synth) needs the node's recording stack (MCAP,
msgpack), so training code never imports it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from perception.capture.errors import SourceError
from perception.record.drive import DriveWriter, GroundTruth, GtSegment
from perception.synth.scene import GENERATOR_VERSION, SceneTruth
from perception.synth.static_scene import CAMERAS, open_scene


def to_ground_truth(truth: SceneTruth) -> GroundTruth:
    """Generator truth -> the drive format's (16-bit id map: ids stay below 65536 for any sane drive)."""
    if truth.id_map.size and int(truth.id_map.max()) > np.iinfo(np.uint16).max:
        raise SourceError("this synthetic drive has more thing instances than a 16-bit id map holds",
                          "render fewer frames per drive")
    segments = tuple(GtSegment(s.id, s.class_id, s.instance_id, s.is_thing) for s in truth.segments)
    return GroundTruth(truth.id_map.astype(np.uint16), segments)


def check_drive_args(seed: int, frames: int, fps: float, width: int, height: int, camera: str = "forward") -> None:
    if camera not in CAMERAS:
        raise SourceError(f"synthetic camera {camera!r} is not known", f"use camera={' or camera='.join(CAMERAS)}")
    if frames <= 0:
        raise SourceError(f"a synthetic drive needs frames > 0 (got {frames})", "pass frames=N with N >= 1")
    if not fps > 0:
        raise SourceError(f"a synthetic drive needs fps > 0 (got {fps})", "pass fps=10 or another positive rate")
    if width < 32 or height < 32:
        raise SourceError(f"synthetic frame size {width}x{height} is too small", "use at least 32x32 (default 320x192)")
    if seed < 0:
        raise SourceError(f"seed {seed} is negative", "use a seed >= 0")


def write_drive(path: Path, seed: int, frames: int, fps: float = 10.0, width: int = 320, height: int = 192,
                image_format: str = "png", progress: Callable[[int], None] | None = None,
                camera: str = "forward") -> Path:
    """Render a drive (or a static-camera scene) with ground truth into an MCAP drive file
    (written atomically by DriveWriter)."""
    check_drive_args(seed, frames, fps, width, height, camera)
    drive = open_scene(camera, seed, frames, fps, width, height)
    synth = {"seed": str(seed), "frames": str(frames), "fps": repr(fps), "width": str(width),
             "height": str(height), "generator_version": str(GENERATOR_VERSION)}
    if camera != "forward":  # forward drives' files stay as they were
        synth["camera"] = camera
    metadata = {"perception.synth": synth}
    path.parent.mkdir(parents=True, exist_ok=True)
    with DriveWriter(path, image_format=image_format, metadata=metadata) as writer:
        for frame in drive:
            writer.write_frame(drive.stamp_ns(frame.index), frame.bgr, to_ground_truth(frame.truth))
            if progress is not None:
                progress(frame.index + 1)
    return path


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "perception" / "drives"


def cached_drive(seed: int, frames: int, fps: float = 10.0, width: int = 320, height: int = 192,
                 camera: str = "forward") -> Path:
    """Path of the cached drive for these parameters, rendering it first if it is not there yet.

    Raw frames (lossless, zstd chunks): the node replaying it reads them ~5x faster than PNG, and
    a replay's reading is capture cost on the node's critical path."""
    check_drive_args(seed, frames, fps, width, height, camera)
    kind = "" if camera == "forward" else f"-{camera}"
    name = f"synthetic-v{GENERATOR_VERSION}{kind}-seed{seed}-n{frames}-fps{fps:g}-{width}x{height}-raw.mcap"
    path = cache_dir() / name
    if not path.is_file():
        # first start only: tell the user why nothing is published for a few seconds
        print(f"perception: rendering synthetic {camera} scene seed {seed} ({frames} frames) once into {path}",
              file=sys.stderr)
        write_drive(path, seed, frames, fps, width, height, image_format="raw", camera=camera)
    return path
