"""Every source refuses ?key=value options it does not know and lists the ones it does
(issue 21, item 3): a typo must not run with exit 0 as if the option were unset."""

from __future__ import annotations

from pathlib import Path

import pytest

from perception.cli import main
from perception.record.drive import DriveWriter
from tests.node_helpers import image_folder, video_file
from tests.onnx_models import scene
from tests.test_replay_sources import write_ros1_bag


def _drive(path: Path) -> Path:
    with DriveWriter(path, image_format="png") as writer:
        writer.write_frame(0, scene())
    return path


@pytest.mark.parametrize(("make", "query", "valid"), [
    (lambda d: f"mcap:{_drive(d / 'x.mcap')}", "strat=3", "topic, start, end, loop, stamp, recover"),
    (lambda d: f"rosbag:{write_ros1_bag(d / 'x.bag', {'/c': 'rgb8'})}", "lop=1", "topic, start, end, loop, stamp"),
    (lambda d: f"images:{image_folder(d / 'frames', 1)}", "fp=5", "fps"),
    (lambda d: "camera:0", "widht=640", "width, height, fps, fourcc"),
    (lambda d: "synthetic:", "sed=7", "seed, frames, fps, width, height, camera"),
], ids=["mcap", "rosbag", "images", "camera", "synthetic"])
def test_an_unknown_option_is_refused_with_the_valid_ones(tmp_path: Path, make: object, query: str, valid: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    uri = make(tmp_path)  # type: ignore[operator]
    separator = "&" if "?" in uri else "?"
    assert main(["run", "--source", f"{uri}{separator}{query}", "--quiet",
                 "--endpoint", f"ipc://{tmp_path}/n.sock"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()  # the error alone
    key, value = query.split("=")
    assert f"unknown source option(s) {key}={value!r}" in line and "valid options for" in line
    assert line.endswith(valid)


def test_a_video_file_takes_no_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    video = video_file(tmp_path / "drive.avi", 3)
    assert main(["record", "--source", f"{video}?fp=5", "--out", str(tmp_path / "o.mcap")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()  # the error alone
    assert "unknown source option(s) fp='5'" in line and "file sources take no ?key=value options" in line
    assert not (tmp_path / "o.mcap").exists()


def test_known_options_still_work(tmp_path: Path) -> None:
    frames = image_folder(tmp_path / "frames", 2)
    assert main(["record", "--source", f"images:{frames}?fps=20", "--out", str(tmp_path / "o.mcap")]) == 0
