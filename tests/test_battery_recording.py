"""Fault battery, recordings at full length (issue 22, item 8; `make test-long`): many signals
during a recording run, each leaving a complete file that holds exactly the frames published, and
many SIGKILLs, each leaving a file readable up to its last chunk. The fast variants are in
test_replay_node.py (one SIGINT, one SIGKILL) and test_record_command.py (one SIGTERM)."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from perception.record.drive import read_drive
from perception.record.mcap_file import McapRecording
from tests.test_replay_node import _frame_headers, _long_drive, _start_run, _wait_for_frames

TRIALS = int(os.environ.get("PERCEPTION_RECORD_SIGNALS", "30"))


@pytest.mark.long
def test_signals_during_recording_always_leave_complete_files(tmp_path: Path) -> None:
    drive = _long_drive(tmp_path / "drive.mcap", 600, 30.0)
    for trial in range(TRIALS):
        out = tmp_path / f"run{trial}.mcap"
        proc = _start_run(tmp_path / f"t{trial}", drive, out)
        _wait_for_frames(out, proc, frames=3 + trial % 10)  # a different moment of the run each time
        proc.send_signal((signal.SIGINT, signal.SIGTERM)[trial % 2])
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        published = int(re.search(r"published (\d+)", err).group(1))  # type: ignore[union-attr]
        with McapRecording(out) as recording:
            assert recording.finished, trial
            assert len(_frame_headers(recording)) == published > 0


@pytest.mark.long
def test_sigkilled_recordings_are_always_readable(tmp_path: Path) -> None:
    drive = _long_drive(tmp_path / "drive.mcap", 600, 30.0)
    for trial in range(TRIALS):
        out = tmp_path / f"run{trial}.mcap"
        proc = _start_run(tmp_path / f"t{trial}", drive, out)
        _wait_for_frames(out, proc, frames=3 + trial % 10)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        with McapRecording(out, recover=True) as recording:
            assert not recording.finished and _frame_headers(recording), trial
        stamps = [f.stamp_ns for f in read_drive(out, recover=True)]
        assert stamps and stamps == sorted(set(stamps)), trial
