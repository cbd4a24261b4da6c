"""The static-camera synthetic scene: a fixed view, only moving things, exact truth, as a source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from perception.capture.errors import SourceError
from perception.capture.source import open_source
from perception.synth.static_scene import StaticScene


def test_static_scene_is_deterministic_and_its_background_never_moves() -> None:
    a, b = StaticScene(41, 12, width=320, height=180), StaticScene(41, 12, width=320, height=180)
    first, again, later = a.frame(0), b.frame(0), a.frame(11)
    assert np.array_equal(first.bgr, again.bgr) and np.array_equal(first.truth.id_map, again.truth.id_map)
    # where neither frame has a thing, only sensor noise and JPEG differ
    still = (first.truth.instances() == 0) & (later.truth.instances() == 0)
    diff = np.abs(first.bgr.astype(np.int16) - later.bgr.astype(np.int16)).max(axis=2)[still]
    assert np.median(diff) <= 12
    assert still.mean() > 0.5


def test_every_thing_in_the_truth_moves() -> None:
    scene = StaticScene(42, 11, width=320, height=180)
    first, later = scene.frame(0), scene.frame(10)
    moved = 0
    for seg in (s for s in first.truth.segments if s.is_thing):
        then = np.argwhere(first.truth.id_map == seg.id).mean(axis=0)
        now = np.argwhere(later.truth.id_map == seg.id)
        if len(now):
            moved += int(np.abs(now.mean(axis=0) - then).max() > 0.5)
        else:
            moved += 1  # left the view
    assert moved == sum(1 for s in first.truth.segments if s.is_thing) > 0


def test_synthetic_source_camera_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    source = open_source("synthetic:?seed=41&frames=3&camera=static")
    source.open()
    frames = []
    while (item := source.read()) is not None:
        frames.append(item[0])
    source.close()
    assert len(frames) == 3 and frames[0].shape == (360, 640, 3)  # the classic benchmark's size by default
    assert np.array_equal(frames[2], StaticScene(41, 3).frame(2).bgr)  # png in the cache: lossless
    with pytest.raises(SourceError, match="camera='orbit' is not known") as caught:
        open_source("synthetic:?seed=41&camera=orbit")
    assert "camera=forward or camera=static" in str(caught.value)
