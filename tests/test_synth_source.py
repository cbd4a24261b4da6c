"""synthetic: source and `perception synth`: rendered once into the drive cache, replayed from it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from perception.capture.errors import SourceError
from perception.capture.source import open_source
from perception.cli import main
from perception.record.drive import DRIVE_FORMAT, read_drive
from perception.record.mcap_file import McapRecording
from perception.synth import Drive
from perception.synth.scene import START_NS


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "perception" / "drives"


def _read_all(uri: str) -> list[tuple[np.ndarray, int]]:
    source = open_source(uri)
    source.open()
    try:
        out = []
        while (item := source.read()) is not None:
            out.append(item)
        return out
    finally:
        source.close()


def test_source_renders_into_cache_and_replays_exact_frames(cache: Path) -> None:
    frames = _read_all("synthetic:?seed=3&frames=6&fps=5")
    files = list(cache.glob("*.mcap"))
    assert len(files) == 1 and "seed3" in files[0].name
    with McapRecording(files[0]) as recording:  # raw frames: the fastest lossless format to replay
        assert recording.metadata()[DRIVE_FORMAT]["image_format"] == "raw"
    assert [stamp for _, stamp in frames] == [START_NS + i * 200_000_000 for i in range(6)]
    drive = Drive(3, 6, fps=5.0)
    for i, (bgr, _) in enumerate(frames):
        assert np.array_equal(bgr, drive.frame(i).bgr)  # lossless cache
    assert not source_is_live()


def source_is_live() -> bool:
    return bool(open_source("synthetic:?seed=1&frames=1").live)


def test_second_open_replays_the_cached_file_without_rendering(cache: Path) -> None:
    _read_all("synthetic:?seed=4&frames=3")
    (path,) = cache.glob("*.mcap")
    before = path.stat().st_mtime_ns
    again = _read_all("synthetic:?seed=4&frames=3")
    assert len(again) == 3 and path.stat().st_mtime_ns == before
    _read_all("synthetic:?seed=4&frames=4")  # other parameters, other cache entry
    assert len(list(cache.glob("*.mcap"))) == 2
    assert not list(cache.glob(".*tmp*"))  # nothing half-written left behind


@pytest.mark.parametrize("uri", ["synthetic:?seed=1&frames=0", "synthetic:?seed=1&fps=0",
                                 "synthetic:?seed=x", "synthetic:?speed=3", "synthetic:somewhere"])
def test_bad_options_are_source_errors(uri: str, cache: Path) -> None:
    with pytest.raises(SourceError):
        open_source(uri).open()


def test_synth_command_writes_a_drive_with_ground_truth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "drive.mcap"
    assert main(["synth", "--out", str(out), "--seed", "8", "--frames", "4", "--fps", "10"]) == 0
    assert "wrote" in capsys.readouterr().out
    drive = Drive(8, 4, fps=10.0)
    frames = list(read_drive(out))
    assert len(frames) == 4
    for i, frame in enumerate(frames):
        expected = drive.frame(i)
        assert frame.stamp_ns == drive.stamp_ns(i)
        assert frame.ground_truth is not None
        assert np.array_equal(frame.ground_truth.id_map, expected.truth.id_map)
        assert [(s.id, s.class_id, s.instance_id, s.is_thing) for s in frame.ground_truth.segments] == \
            [(s.id, s.class_id, s.instance_id, s.is_thing) for s in expected.truth.segments]
        assert np.array_equal(frame.bgr, expected.bgr)


def test_synth_command_rejects_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", "--out", str(tmp_path / "d.mcap"), "--frames", "0"]) == 2
    assert "frames" in capsys.readouterr().err
