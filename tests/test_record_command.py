"""`perception record`: a source's frames into an MCAP that replays with mcap:."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.capture.source import open_source
from perception.cli import main
from perception.record.drive import DriveWriter, read_drive
from perception.record.errors import RecordingError
from perception.record.mcap_file import McapRecording
from tests.waiting import wait_until


def _image(index: int) -> np.ndarray:
    return np.random.default_rng(index).integers(0, 256, (24, 32, 3), dtype=np.uint8)


def test_record_a_drive_losslessly_and_replay_it(tmp_path: Path) -> None:
    drive = tmp_path / "drive.mcap"
    with DriveWriter(drive, image_format="png") as writer:
        for i in range(8):
            writer.write_frame(5_000_000_000 + i * 40_000_000, _image(i))
    out = tmp_path / "out.mcap"
    assert main(["record", "--source", f"mcap:{drive}", "--out", str(out), "--image-format", "png",
                 "--max-frames", "5"]) == 0
    frames = list(read_drive(out))
    assert [f.stamp_ns for f in frames] == [5_000_000_000 + i * 40_000_000 for i in range(5)]
    for i, frame in enumerate(frames):
        np.testing.assert_array_equal(frame.bgr, _image(i))
    with McapRecording(out) as recording:
        assert recording.finished
        assert recording.metadata()["record"]["source"] == f"mcap:{drive}"


def test_record_an_image_folder(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i:03d}.png"), _image(i))
    out = tmp_path / "out.mcap"
    assert main(["record", "--source", f"images:{folder}?fps=20", "--out", str(out), "--image-format", "raw"]) == 0
    source = open_source(str(out))
    source.open()
    stamps = []
    while (item := source.read()) is not None:
        stamps.append(item[1])
    source.close()
    assert stamps == [0, 50_000_000, 100_000_000]


def test_bad_source_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["record", "--source", f"mcap:{tmp_path}/none.mcap", "--out", str(tmp_path / "o.mcap")]) == 2
    assert "does not exist" in capsys.readouterr().err


def _holds_frames(path: Path) -> bool:
    """A recording being written has flushed at least one frame to disk."""
    try:
        with McapRecording(path, recover=True) as recording:
            return any(True for _ in recording.messages())
    except RecordingError:  # not there yet, or not yet past its header
        return False


def test_sigterm_closes_the_file_cleanly(tmp_path: Path) -> None:
    drive = tmp_path / "long.mcap"
    with DriveWriter(drive, image_format="raw") as writer:
        for i in range(400):
            writer.write_frame(i * 10_000_000, _image(i % 5))
    out = tmp_path / "out.mcap"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    # rate 1: 4 s of recorded time, stopped well before the end
    child = subprocess.Popen([sys.executable, "-m", "perception", "record", "--source", f"mcap:{drive}",
                              "--out", str(out), "--rate", "1"], env=env, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: _holds_frames(out), timeout=60.0, what="recorded frames")
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=20)
    assert child.returncode == 0, err
    with McapRecording(out) as recording:
        assert recording.finished  # summary written: closed cleanly, not cut off
    stamps = [f.stamp_ns for f in read_drive(out)]
    assert 0 < len(stamps) < 400
    assert stamps == [i * 10_000_000 for i in range(len(stamps))]
