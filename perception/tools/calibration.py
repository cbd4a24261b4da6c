"""Frames for INT8 calibration: synthetic scenes, a recorded drive, or a folder of images.

Calibration frames go through the model card's own Preprocessor, so the activation ranges
are those the node will feed. Synthetic calibration renders drives of its own (seeds 100 and
up, frames 0.5 s apart): below the training range (1e6 and up) and away from the held-out
evaluation drives (11-14) and the threshold-tuning drives (21-24), so the gate's frames never
leak into calibration.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import cv2
import numpy as np

from perception.models.card import ModelCard
from perception.models.preprocess import Preprocessor
from perception.tools.precision import FrameReader, PrecisionError

CALIBRATION_SEED = 100
FRAMES_PER_DRIVE = 8
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def calibration_images(source: str, count: int) -> Iterator[np.ndarray]:
    """BGR uint8 frames from "synth", "synth:SEED", a drive (.mcap) or an image folder."""
    if count <= 0:
        raise PrecisionError(f"calibration frame count {count} is not positive", "pass --calib-frames N > 0")
    if source == "synth" or source.startswith("synth:"):
        seed = CALIBRATION_SEED
        if ":" in source:
            try:
                seed = int(source.split(":", 1)[1])
            except ValueError as exc:
                raise PrecisionError(f"calibration source {source!r} has no integer seed", "write synth:SEED") from exc
        return _synthetic(seed, count)
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise PrecisionError(f"calibration folder {path} holds no images", f"use {', '.join(IMAGE_SUFFIXES)}")
        return islice(_images(files), count)
    if path.is_file():
        from perception.record.drive import read_drive

        return islice((frame.bgr for frame in read_drive(path)), count)
    raise PrecisionError(f"calibration source {source!r} is not 'synth', a drive file or an image folder",
                         "pass --calib synth, --calib DRIVE.mcap or --calib FOLDER")


def _synthetic(seed: int, count: int) -> Iterator[np.ndarray]:
    from perception.synth import Drive
    from perception.synth.scene import TRAIN_SEED_BASE

    drives = -(-count // FRAMES_PER_DRIVE)
    if seed + drives > TRAIN_SEED_BASE:
        raise PrecisionError(f"calibration seeds {seed}..{seed + drives - 1} reach the training seeds",
                             f"use seeds below {TRAIN_SEED_BASE}")
    produced = 0
    for k in range(drives):
        for frame in Drive(seed + k, min(FRAMES_PER_DRIVE, count - produced), fps=2.0):
            produced += 1
            yield frame.bgr


def _images(files: list[Path]) -> Iterator[np.ndarray]:
    for f in files:
        image = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if image is None:
            raise PrecisionError(f"calibration image {f} cannot be read", "remove it or convert it to PNG/JPEG")
        yield image


def calibration_reader(card: ModelCard, source: str, count: int) -> FrameReader:
    """A CalibrationDataReader feeding the card's input tensor, preprocessed as the node does."""
    preprocess = Preprocessor(card.input)
    return FrameReader(card.input.name, (preprocess(bgr)[0] for bgr in calibration_images(source, count)))
