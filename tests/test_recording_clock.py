"""Recordings are timed by the source's clock: MCAP log time = frame stamp, so `?start=`/`?end=`
windows mean drive seconds even for a recording made at --rate 0 (issue 21, item 9)."""

from __future__ import annotations

from pathlib import Path

import msgpack

from perception.capture.source import open_source
from perception.cli import main
from perception.record import ros_images
from perception.record.mcap_file import McapRecording
from tests.node_helpers import image_folder, write_launch

FPS = 10
FRAMES = 30  # 3 s of drive time, recorded in a fraction of that at --rate 0
PERIOD_NS = 1_000_000_000 // FPS


def _stamps(uri: str) -> list[int]:
    source = open_source(uri)
    source.open()
    stamps = []
    while (item := source.read()) is not None:
        stamps.append(item[1])
    source.close()
    return stamps


def _log_and_header_times(path: Path, topic: str) -> list[tuple[int, int]]:
    with McapRecording(path) as recording:
        return [(m.log_time, ros_images.decode_image_message(m.data, s.name if s else "", c.message_encoding,
                                                             "test").stamp_ns)
                for s, c, m in recording.messages([topic])]


def test_a_recording_made_at_rate_0_keeps_drive_time(tmp_path: Path) -> None:
    frames = image_folder(tmp_path / "frames", FRAMES)
    out = tmp_path / "rec.mcap"
    assert main(["record", "--source", f"images:{frames}?fps={FPS}", "--out", str(out), "--rate", "0"]) == 0
    times = _log_and_header_times(out, "/camera/image/compressed")
    assert [log for log, _ in times] == [i * PERIOD_NS for i in range(FRAMES)]
    assert all(log == header for log, header in times)
    # one second of drive time is ten frames, not the whole recording
    assert _stamps(f"mcap:{out}?end=1") == [i * PERIOD_NS for i in range(10)]
    assert _stamps(f"mcap:{out}?start=2.5") == [i * PERIOD_NS for i in range(25, FRAMES)]


def test_a_node_recording_logs_every_message_at_the_source_clock(tmp_path: Path) -> None:
    frames = image_folder(tmp_path / "frames", 8)
    launch = write_launch(tmp_path, f"images:{frames}?fps={FPS}", f"ipc://{tmp_path}/n.sock")
    out = tmp_path / "run.mcap"
    assert main(["run", str(launch), "--quiet", "--rate", "0", "--record", str(out)]) == 0
    stamps = [i * PERIOD_NS for i in range(8)]
    with McapRecording(out) as recording:
        by_topic: dict[str, list[int]] = {}
        frame_headers = []
        for _s, channel, message in recording.messages():
            by_topic.setdefault(channel.topic, []).append(message.log_time)
            if channel.topic == "perception/cam0/frame/":
                header = msgpack.unpackb(msgpack.unpackb(message.data)[1])
                frame_headers.append((message.log_time, header["stamp_ns"]))
    assert by_topic["/camera/image/compressed"] == stamps
    assert by_topic["/camera/annotations"] == stamps
    assert [log for log, _ in frame_headers] == [stamp for _, stamp in frame_headers] == stamps
    for topic in ("perception/cam0/status/", "perception/cam0/meta/", "perception/cam0/stats/"):
        assert all(stamps[0] <= t <= stamps[-1] for t in by_topic[topic]), topic
