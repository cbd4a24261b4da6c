"""No output file is overwritten unless asked, and a run's own input never (issue 21, item 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from perception.cli import main
from perception.record.drive import DriveWriter, read_drive
from tests.node_helpers import write_launch
from tests.onnx_models import scene


def _drive(path: Path, frames: int = 3) -> Path:
    with DriveWriter(path, image_format="png") as writer:
        for i in range(frames):
            writer.write_frame(1_000_000_000 + i * 100_000_000, scene(cars=1))
    return path


def _run_args(tmp_path: Path, drive: Path, *extra: str) -> list[str]:
    launch = write_launch(tmp_path / "launch", f"mcap:{drive}", f"ipc://{tmp_path}/node.sock")
    return ["run", str(launch), "--quiet", *extra]


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_run_never_records_over_the_drive_it_replays(tmp_path: Path, overwrite: list[str],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    drive = _drive(tmp_path / "x.mcap")
    before = drive.read_bytes()
    assert main(_run_args(tmp_path, drive, "--record", str(tmp_path / "." / "x.mcap"), *overwrite)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is an input of this run" in err[0] and "another file name" in err[0]
    assert drive.read_bytes() == before


def test_run_refuses_a_symlink_to_its_input_even_with_overwrite(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    drive = _drive(tmp_path / "x.mcap")
    link = tmp_path / "link.mcap"
    link.symlink_to(drive)
    before = drive.read_bytes()
    assert main(_run_args(tmp_path, drive, "--record", str(link), "--overwrite")) == 2
    assert "is an input of this run" in capsys.readouterr().err
    assert drive.read_bytes() == before


def test_run_replaces_an_earlier_recording_only_with_overwrite(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    drive = _drive(tmp_path / "x.mcap")
    out = _drive(tmp_path / "earlier.mcap", frames=1)
    before = out.read_bytes()
    assert main(_run_args(tmp_path, drive, "--record", str(out))) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err
    assert out.read_bytes() == before
    assert main(_run_args(tmp_path, drive, "--record", str(out), "--overwrite")) == 0
    assert len(list(read_drive(out))) == 3


def test_record_never_writes_over_its_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    drive = _drive(tmp_path / "x.mcap")
    before = drive.read_bytes()
    assert main(["record", "--source", f"mcap:{drive}", "--out", str(drive), "--overwrite"]) == 2
    assert "is an input of this run" in capsys.readouterr().err
    assert drive.read_bytes() == before


def test_record_replaces_an_existing_file_only_with_overwrite(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    drive = _drive(tmp_path / "x.mcap")
    out = _drive(tmp_path / "out.mcap", frames=1)
    assert main(["record", "--source", f"mcap:{drive}", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert len(list(read_drive(out))) == 1
    assert main(["record", "--source", f"mcap:{drive}", "--out", str(out), "--overwrite"]) == 0
    assert len(list(read_drive(out))) == 3
