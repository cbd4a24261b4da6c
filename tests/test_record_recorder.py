"""The node's recorder: a real Publisher taps into it; the file opens with the mcap reader and in Foxglove."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
from mcap.reader import make_reader

from perception.core.frame import Frame, monotonic_ns
from perception.core.result import FrameResult
from perception.core.segmentation import Segmentation
from perception.record.drive import read_drive
from perception.record.errors import RecordingError, RecordingWriteError, TruncatedRecordingError
from perception.record.mcap_file import McapRecording
from perception.record.recorder import Recorder
from perception.wire.codec import decode_message
from perception.wire.messages import FrameMessage
from perception.wire.publisher import Publisher
from perception.wire.schema import SCHEMA_VERSION

CLASS_NAMES = ["road", "car", "person"]


def _segmentation(shift: int) -> Segmentation:
    id_map = np.zeros((60, 80), np.uint16)
    id_map[40:, :] = 1  # road (stuff)
    id_map[10 + shift : 30 + shift, 10:30] = 2  # a car
    id_map[5:25, 50:70] = 3  # a person
    return Segmentation.from_id_map(id_map, class_ids=np.array([0, 1, 2]), scores=np.array([1.0, 0.9, 0.8]),
                                    is_thing=np.array([False, True, True]))


def _frame(index: int) -> Frame:
    image = np.full((60, 80, 3), 40 + 10 * index, np.uint8)
    return Frame(image=image, index=index, stamp_ns=1_700_000_000_000_000_000 + index * 50_000_000,
                 capture_ns=monotonic_ns())


def test_recording_has_frames_published_messages_overlays_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "run.mcap"
    metadata = {"launch": {"source.uri": "synthetic:", "run.max_frames": "3"}, "model_card": {"name": "tiny"}}
    with Recorder(path, image_format="png", metadata=metadata) as recorder, \
            Publisher(f"ipc://{tmp_path}/pub.sock", "cam0", tap=recorder.record_message) as publisher:
        publisher.publish_metadata({"class_names": dict(enumerate(CLASS_NAMES))})
        for i in range(3):
            frame = _frame(i)
            result = FrameResult("cam0", i, frame.stamp_ns, 80, 60, _segmentation(i))
            publisher.publish_frame(result)
            recorder.record_frame(frame)
            recorder.record_result(result, CLASS_NAMES)
        publisher.publish_status("stopped", {"read": 3}, "end")

    with path.open("rb") as stream:
        reader = make_reader(stream)
        summary = reader.get_summary()
        assert summary is not None
        channels = {c.topic: c for c in summary.channels.values()}
        schema_of = {t: summary.schemas[c.schema_id] for t, c in channels.items() if c.schema_id}
        assert schema_of["/camera/image/compressed"].name == "sensor_msgs/msg/CompressedImage"
        assert schema_of["/camera/annotations"].name == "foxglove.ImageAnnotations"
        assert schema_of["/camera/annotations"].encoding == "jsonschema"
        assert channels["/camera/annotations"].message_encoding == "json"
        frame_channel = channels["perception/cam0/frame/"]
        assert frame_channel.message_encoding == "msgpack"
        assert frame_channel.metadata["wire_schema_version"] == str(SCHEMA_VERSION)
        assert {"perception/cam0/meta/", "perception/cam0/status/"} <= set(channels)
        records = {m.name: m.metadata for m in reader.iter_metadata()}
        assert records["launch"]["source.uri"] == "synthetic:"
        assert records["model_card"] == {"name": "tiny"}
        assert "mcap" in records["perception.recorder"]

        published: list[FrameMessage] = []
        overlays: list[dict] = []
        for _schema, channel, message in reader.iter_messages(topics=["perception/cam0/frame/", "/camera/annotations"]):
            if channel.topic == "/camera/annotations":
                overlays.append(json.loads(message.data))
            else:
                decoded = decode_message(msgpack.unpackb(message.data), receive_ns=0)
                assert isinstance(decoded, FrameMessage)
                published.append(decoded)
    assert [m.frame_index for m in published] == [0, 1, 2]
    for i, msg in enumerate(published):
        np.testing.assert_array_equal(msg.id_map, _segmentation(i).id_map)

    # overlays: one closed outline per thing (car, person), none for the road; labels name the class
    first = overlays[0]
    assert first["timestamp"] == {"sec": 1_700_000_000, "nsec": 0}
    assert len(first["points"]) == 2
    assert all(p["type"] == 2 for p in first["points"])
    car = np.array([[p["x"], p["y"]] for p in first["points"][0]["points"]])
    assert car.min(axis=0).tolist() == [10, 10]
    assert car.max(axis=0).tolist() == [29, 29]
    assert sorted(t["text"].split()[0] for t in first["texts"]) == ["car", "person"]

    # the input frames replay losslessly (PNG) with their recorded stamps
    frames = list(read_drive(path))
    assert [f.stamp_ns for f in frames] == [_frame(i).stamp_ns for i in range(3)]
    np.testing.assert_array_equal(frames[2].bgr, _frame(2).image)


def test_closed_recorder_refuses_more(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "r.mcap")
    recorder.close()
    recorder.close()
    with pytest.raises(RecordingWriteError, match="already closed"):
        recorder.record_frame(_frame(0))


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_full_disk_is_a_typed_error() -> None:
    with pytest.raises(RecordingWriteError, match=r"cannot write recording '/dev/full'.*free disk space"):
        Recorder("/dev/full")


def test_unwritable_path_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="check that the folder exists"):
        Recorder(tmp_path / "no" / "such" / "dir" / "r.mcap")
    with pytest.raises(RecordingError, match="it is a folder"):
        Recorder(tmp_path)


_CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    from perception.core.frame import Frame
    from perception.record.recorder import Recorder
    path, mode = sys.argv[1], sys.argv[2]
    recorder = Recorder(path, image_format="raw", flush_interval_s=0.1, chunk_size=1 << 20)
    i = 0
    while True:
        image = np.full((48, 64, 3), i % 256, np.uint8)
        recorder.record_frame(Frame(image=image, index=i, stamp_ns=1_000 + i, capture_ns=0))
        recorder.record_message(b"perception/cam0/status/", [b"perception/cam0/status/", b"x" * 100])
        i += 1
        if mode == "idle" and i == 20:
            time.sleep(0.2)
            recorder.record_frame(Frame(image=image, index=i, stamp_ns=1_000 + i, capture_ns=0))  # flushes all
            print("flushed", i + 1, flush=True)
            time.sleep(60)
        print(i, flush=True)
        time.sleep(0.002)
""")


def _run_and_kill(path: Path, mode: str, lines_before_kill: int) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(path), mode], stdout=subprocess.PIPE, text=True,
                             env=env)
    assert child.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 30
    while len(lines) < lines_before_kill and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    return lines


def test_sigkill_while_idle_keeps_every_flushed_frame(tmp_path: Path) -> None:
    path = tmp_path / "killed.mcap"
    lines = _run_and_kill(path, "idle", 20)
    assert lines[-1] == "flushed 21"
    frames = list(read_drive(path))  # ends on a record boundary: no recover needed
    assert [f.stamp_ns for f in frames] == [1_000 + i for i in range(21)]
    assert int(frames[7].bgr[0, 0, 0]) == 7


def test_sigkill_mid_stream_is_readable_up_to_the_last_complete_chunk(tmp_path: Path) -> None:
    path = tmp_path / "killed.mcap"
    lines = _run_and_kill(path, "busy", 150)
    written = int(lines[-1])
    try:
        strict = [f.stamp_ns for f in read_drive(path)]
    except TruncatedRecordingError:
        strict = None
    with McapRecording(path, recover=True) as recording:
        assert not recording.finished
        assert "perception/cam0/status/" in recording.topics()
    frames = [f.stamp_ns for f in read_drive(path, recover=True)]
    # a prefix of what was written, in order, losing at most the chunk in progress (~0.1 s here)
    assert frames == [1_000 + i for i in range(len(frames))]
    assert 0 < len(frames) <= written + 1
    assert strict is None or strict == frames


def test_an_existing_file_that_is_not_a_recording_is_never_overwritten(tmp_path: Path) -> None:
    image = tmp_path / "003.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(RecordingError, match="exists and is not a recording"):
        Recorder(image)
    assert image.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("live", [True, False])
def test_messages_before_the_first_frame_reach_the_disk_at_once_only_on_a_wall_clock(tmp_path: Path,
                                                                                    live: bool) -> None:
    """A camera's stamps are wall clock, so statuses while it is absent are logged (and flushed) as they
    come; a replay's are held for its first frame's stamp, the clock they belong to."""
    path = tmp_path / "run.mcap"
    before = time.time_ns()
    with Recorder(path, flush_interval_s=0.0, live_clock=live) as recorder, \
            Publisher(f"ipc://{tmp_path}/p.sock", "cam0", tap=recorder.record_message) as publisher:
        publisher.publish_status("source_lost", {"read": 0, "processed": 0, "dropped": {}}, "no camera")
        if not live:
            recorder.record_frame(Frame(np.zeros((8, 8, 3), np.uint8), 0, 1_000, 0))
        snapshot = tmp_path / "snapshot.mcap"
        snapshot.write_bytes(path.read_bytes())  # what a SIGKILL would leave now
    with McapRecording(snapshot, recover=True) as recording:
        status = [m.log_time for _s, _c, m in recording.messages(["perception/cam0/status/"])]
    if live:
        assert len(status) == 1 and before <= status[0] <= time.time_ns()
    else:  # held until the first frame, then logged at its stamp
        assert status == [1_000]
