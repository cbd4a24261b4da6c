"""The node on recorded drives: lock-step runs are byte-identical (latency fields aside), the
recording holds every published message, and `perception compare` finds no difference."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import msgpack
from mcap.reader import make_reader

from perception.cli import main
from perception.record.drive import DriveWriter, read_drive
from perception.record.errors import RecordingError
from perception.record.mcap_file import McapRecording
from perception.runtime.config import load_launch, override
from perception.runtime.node import Node
from perception.tools.compare import compare_runs
from tests.node_helpers import REPO, published_messages, write_launch
from tests.onnx_models import scene
from tests.waiting import wait_until

N_FRAMES = 12


def _drive(path: Path) -> Path:
    with DriveWriter(path, image_format="png") as writer:
        for i in range(N_FRAMES):
            image = scene(cars=2)
            image[:, (i * 3) % 20 :] = image[:, : 128 - (i * 3) % 20]  # things move between frames
            writer.write_frame(2_000_000_000 + i * 66_666_667, image)
    return path


def _run(tmp_path: Path, drive: Path, name: str) -> Path:
    out = tmp_path / f"{name}.mcap"
    config = load_launch(write_launch(tmp_path / name, f"mcap:{drive}", f"ipc://{tmp_path}/{name}.sock"))
    config = override(config, "record", path=out, image_format="png")
    report = Node.from_config(config).run()
    assert report.counters["read"] == N_FRAMES
    assert report.counters["processed"] == N_FRAMES
    return out


def test_two_lockstep_runs_publish_identical_bytes(tmp_path: Path) -> None:
    drive = _drive(tmp_path / "drive.mcap")
    first, second = _run(tmp_path, drive, "a"), _run(tmp_path, drive, "b")
    frames_a = published_messages(first, "perception/cam0/frame/")
    frames_b = published_messages(second, "perception/cam0/frame/")
    assert len(frames_a) == N_FRAMES
    assert frames_a == frames_b
    assert published_messages(first, "perception/cam0/meta/") == published_messages(second, "perception/cam0/meta/")
    # the recorded stamps travel through: frame i carries the drive's stamp i
    headers = [msgpack.unpackb(parts[1]) for parts in frames_a]
    assert [h["stamp_ns"] for h in headers] == [2_000_000_000 + i * 66_666_667 for i in range(N_FRAMES)]
    assert any(h["segments"]["count"] > 1 for h in headers)

    result = compare_runs(first, second)
    assert result.identical
    assert len(result.frames) == N_FRAMES
    assert result.pq == 1.0
    assert main(["compare", str(first), str(second)]) == 0


def test_recording_of_a_run_replays_its_input_and_carries_metadata(tmp_path: Path) -> None:
    drive = _drive(tmp_path / "drive.mcap")
    out = _run(tmp_path, drive, "run")
    with out.open("rb") as stream:
        reader = make_reader(stream)
        metadata = {m.name: m.metadata for m in reader.iter_metadata()}
        summary = reader.get_summary()
    assert summary is not None
    assert {"launch", "model_card", "versions", "perception.recording"} <= set(metadata)
    assert metadata["launch"]["source.uri"] == f"mcap:{drive}"
    topics = {c.topic for c in summary.channels.values()}
    assert {"/camera/image/compressed", "/camera/annotations", "perception/cam0/frame/",
            "perception/cam0/status/"} <= topics
    # the recorded run can itself be replayed: same frames, same stamps
    again = _run(tmp_path, out, "again")
    assert compare_runs(out, again).identical


def _long_drive(path: Path, frames: int, fps: float) -> Path:
    with DriveWriter(path, image_format="jpeg") as writer:
        for i in range(frames):
            image = scene(cars=2)
            image[0, 0] = (i % 256, 0, 0)
            writer.write_frame(round(i * 1e9 / fps), image)
    return path


def _start_run(tmp_path: Path, drive: Path, out: Path) -> subprocess.Popen[str]:
    launch = write_launch(tmp_path / "cli", f"mcap:{drive}", f"ipc://{tmp_path}/cli.sock")
    return subprocess.Popen([sys.executable, "-m", "perception", "run", str(launch), "--rate", "1",
                             "--record", str(out)], cwd=REPO, stderr=subprocess.PIPE, text=True)


def _wait_for_frames(out: Path, proc: subprocess.Popen[str], frames: int = 3) -> None:
    """Until the recording on disk holds published frames (the node is running and recording)."""

    def flushed() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the node ended: {proc.stderr.read() if proc.stderr else ''}")
        try:
            with McapRecording(out, recover=True) as recording:
                return len(_frame_headers(recording)) >= frames
        except RecordingError:  # not there yet, or not yet past its header
            return False

    wait_until(flushed, timeout=60.0, what=f"{frames} recorded frames")


def _frame_headers(recording: McapRecording) -> list[dict]:
    return [msgpack.unpackb(msgpack.unpackb(m.data)[1])
            for _s, _c, m in recording.messages(["perception/cam0/frame/"])]


def test_sigint_closes_the_recording_with_everythingpublished_messages(tmp_path: Path) -> None:
    out = tmp_path / "run.mcap"
    drive = _long_drive(tmp_path / "drive.mcap", 600, 30.0)  # 20 s at rate 1: stopped long before its end
    proc = _start_run(tmp_path, drive, out)
    _wait_for_frames(out, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    published = int(re.search(r"published (\d+)", err).group(1))  # type: ignore[union-attr]
    with McapRecording(out) as recording:
        assert recording.finished  # index and summary written
        headers = _frame_headers(recording)
    assert len(headers) == published > 0
    # in order, each with the drive's stamp for its frame index; paced, never ahead of recorded time
    indexes = [h["frame_index"] for h in headers]
    assert indexes == sorted(indexes)
    assert all(h["stamp_ns"] == round(h["frame_index"] * 1e9 / 30.0) for h in headers)
    if indexes[0] == 0:  # pacing is anchored at the first frame read
        capture = [h["stamps"]["capture"] for h in headers]
        assert all(c - capture[0] >= h["stamp_ns"] for c, h in zip(capture, headers, strict=True))


def test_sigkill_leaves_a_recording_readable_up_to_its_last_chunk(tmp_path: Path) -> None:
    out = tmp_path / "run.mcap"
    drive = _long_drive(tmp_path / "drive.mcap", 600, 30.0)
    proc = _start_run(tmp_path, drive, out)
    _wait_for_frames(out, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=20)
    with McapRecording(out, recover=True) as recording:
        assert not recording.finished
        headers = _frame_headers(recording)
    assert headers
    stamps = [f.stamp_ns for f in read_drive(out, recover=True)]
    # at recorded timing a loaded machine drops frames (latest-wins), so the recorded input is an
    # ordered subset of the drive's frames, each with its own stamp
    drive_stamps = {round(i * 1e9 / 30.0) for i in range(600)}
    assert stamps and stamps == sorted(set(stamps))
    assert set(stamps) <= drive_stamps
