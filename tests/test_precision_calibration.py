"""Calibration frames: synthetic drives of their own, image folders, through the card's preprocessing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.models.card import load_card
from perception.tools.calibration import CALIBRATION_SEED, calibration_images, calibration_reader
from perception.tools.precision import PrecisionError
from tests.test_trt_build_engine import CARD


def test_synthetic_frames_come_from_their_own_seeds() -> None:
    from perception.synth import Drive

    frames = list(calibration_images("synth", 3))
    assert len(frames) == 3
    np.testing.assert_array_equal(frames[2], Drive(CALIBRATION_SEED, 3, fps=2.0).frame(2).bgr)
    other = next(iter(calibration_images("synth:500", 1)))
    assert not np.array_equal(other, frames[0])
    with pytest.raises(PrecisionError, match="training seeds"):
        list(calibration_images("synth:999999", 16))


def test_image_folder_in_name_order_and_counted(tmp_path: Path) -> None:
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), np.full((10, 12, 3), i * 40, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    frames = list(calibration_images(str(tmp_path), 2))
    assert [int(f[0, 0, 0]) for f in frames] == [0, 40]


@pytest.mark.parametrize(("source", "count", "message"), [
    ("synth:abc", 4, "no integer seed"),
    ("synth", 0, "not positive"),
    ("/no/such/place", 4, "is not 'synth'"),
])
def test_bad_sources_are_typed(source: str, count: int, message: str) -> None:
    with pytest.raises(PrecisionError, match=message):
        list(calibration_images(source, count))


def test_empty_folder_and_unreadable_image(tmp_path: Path) -> None:
    with pytest.raises(PrecisionError, match="holds no images"):
        calibration_images(str(tmp_path), 4)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(PrecisionError, match="cannot be read"):
        list(calibration_images(str(tmp_path), 4))


def test_reader_feeds_preprocessed_tensors(tmp_path: Path) -> None:
    card_path = tmp_path / "seg.toml"
    card_path.write_text(CARD.format(w=24, h=16))
    reader = calibration_reader(load_card(card_path), "synth", 2)
    first = reader.get_next()
    assert first is not None and first["image"].shape == (1, 3, 16, 24) and first["image"].dtype == np.float32
    assert float(first["image"].min()) >= 0.0 and float(first["image"].max()) <= 1.0
    assert reader.get_next() is not None
    assert reader.get_next() is None
    assert reader.count == 2
