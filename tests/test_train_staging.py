"""The training render pool: worker processes writing shared staging slots (no torch needed)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from perception.synth.scene import training_sample
from perception.train.staging import RenderPool, Scenes

H, W = 192, 320


def _drain(pool: RenderPool, count: int, timeout_s: float = 120.0) -> list[Scenes]:
    got: list[Scenes] = []
    deadline = time.monotonic() + timeout_s
    while sum(len(s.rgb) for s in got) < count:
        assert time.monotonic() < deadline, "render pool stalled"
        assert pool.error is None, pool.error
        scenes = pool.poll()
        if scenes is None:
            time.sleep(0.02)
        else:
            got.append(scenes)
    return got


def _fingerprints(batches: list[Scenes]) -> set[bytes]:
    return {s.rgb[i].tobytes()[:4096] + s.instances[i].tobytes() for s in batches for i in range(len(s.rgb))}


def test_worker_processes_render_every_seed_through_recycled_slots(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    seeds = [1_000_000 + i for i in range(5)]
    # a temp folder of this test's own: other runs on the machine stage scenes in /tmp too
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    staging_before = set(tmp_path.glob("perception-scenes-*"))
    pool = RenderPool(seeds, workers=2, height=H, width=W, slots=2).start()  # 5 scenes through 2 slots
    try:
        batches = _drain(pool, len(seeds))
    finally:
        pool.stop()
    assert set(tmp_path.glob("perception-scenes-*")) == staging_before  # staging removed
    assert sum(len(s.rgb) for s in batches) == len(seeds)
    expected = [training_sample(seed) for seed in seeds]
    want = {rgb.tobytes()[:4096] + inst.tobytes() for rgb, _, inst in expected}
    assert _fingerprints(batches) == want  # every scene exactly once, none torn by a recycled slot
    first = batches[0]
    assert first.rgb.dtype == np.uint8 and first.rgb.shape[1:] == (H, W, 3)
    assert first.semantic.shape[1:] == (H, W) and first.instances.dtype == np.uint16


def test_thread_renderer_delivers_in_seed_order() -> None:
    seeds = [1_000_010, 1_000_011]
    pool = RenderPool(seeds, workers=1, height=H, width=W).start()
    try:
        batches = _drain(pool, len(seeds))
    finally:
        pool.stop()
    rgb = np.concatenate([s.rgb for s in batches])
    for got, seed in zip(rgb, seeds, strict=True):
        assert np.array_equal(got, training_sample(seed)[0])


def test_a_failing_worker_is_reported_not_waited_for() -> None:
    pool = RenderPool([-1], workers=2, height=H, width=W).start()  # a negative seed: the generator refuses it
    try:
        deadline = time.monotonic() + 60
        while pool.error is None and time.monotonic() < deadline:
            assert pool.poll() is None
            time.sleep(0.05)
    finally:
        pool.stop()
    assert isinstance(pool.error, RuntimeError)
    assert "exited with code" in str(pool.error)
