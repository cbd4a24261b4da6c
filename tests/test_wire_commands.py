"""`perception echo` and `perception stats` against a live Publisher on loopback."""

from __future__ import annotations

import dataclasses
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from perception.cli import main
from perception.commands.echo import Printer, predicted_summary
from perception.commands.stats import format_stats
from perception.core.frame import monotonic_ns
from perception.tracking.bytetrack import ByteTracker
from perception.wire.codec import control_message, decode_message
from perception.wire.messages import FrameMessage, MetadataMessage, StatsMessage
from perception.wire.publisher import Publisher
from perception.wire.schema import Kind
from perception.wire.sequence import GapEvent, RestartEvent
from tests.wire_support import METADATA, ipc_endpoint, result

STATS = {
    "clock": "CLOCK_MONOTONIC",
    "window_frames": 120,
    "fps": 29.7,
    "stages": {
        "capture": {"p50_ns": 1_000_000, "p90_ns": 1_500_000, "p99_ns": 2_000_000, "max_ns": 3_000_000, "count": 120},
        "inference": {
            "p50_ns": 20_000_000,
            "p90_ns": 25_000_000,
            "p99_ns": 30_000_000,
            "max_ns": 41_000_000,
            "count": 120,
        },
    },
    "end_to_end": {
        "p50_ns": 30_000_000,
        "p90_ns": 35_000_000,
        "p99_ns": 40_000_000,
        "max_ns": 52_000_000,
        "count": 120,
    },
    "counters": {"read": 125, "processed": 120, "dropped": {"stale": 5}},
}


@pytest.fixture
def node(tmp_path: Path) -> Iterator[str]:
    """A stand-in for the node's publishing loop: service, frame, status and stats every 20 ms."""
    endpoint = ipc_endpoint(tmp_path)
    ready, stop = threading.Event(), threading.Event()

    def loop() -> None:
        tracker = ByteTracker()
        with Publisher(endpoint) as pub:
            pub.publish_metadata(METADATA)
            ready.set()
            index = 0
            while not stop.wait(0.02):
                pub.service()
                frame = result(index)
                tracked = tracker.update(frame.segmentation, frame.stamp_ns)
                pub.publish_frame(dataclasses.replace(frame, segmentation=tracked))
                pub.publish_status("ready", {"read": index + 1, "processed": index + 1})
                pub.publish_stats(STATS)
                index += 1

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield endpoint
    stop.set()
    thread.join(10)


def test_echo_prints_one_line_per_frame_with_objects_and_latency(node: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["echo", "--endpoint", node, "--count", "5", "--timeout", "10"]) == 0
    out, err = capsys.readouterr()
    frame_lines = [line for line in out.splitlines() if line.startswith("#")]
    assert len(frame_lines) == 5
    assert all("4 obj:" in line and "capture->recv" in line and " ms" in line for line in frame_lines)
    # Metadata is answered on subscription, so names resolve from the first frames on.
    assert "car×2 road person" in frame_lines[-1]
    # track ids and speeds (the scene stands still; ? until the velocity is valid)
    assert frame_lines[-1].endswith("  tracks: car#1 0px/s, car#2 0px/s")  # the person scores under new_track_threshold
    assert any(line.startswith("status ready") for line in out.splitlines())
    assert "5 frames shown" in err


def test_echo_names_the_tracks_that_are_only_predicted() -> None:
    golden = Path(__file__).parent / "golden"
    meta = decode_message([p.read_bytes() for p in sorted((golden / "meta").glob("part*.bin"))], receive_ns=0)
    parts = [p.read_bytes() for p in sorted((golden / "frame_predicted").glob("part*.bin"))]
    assert isinstance(meta, MetadataMessage)
    msg = decode_message(parts, receive_ns=0, class_names=meta.class_names)
    assert isinstance(msg, FrameMessage)
    assert predicted_summary(msg.predicted) == "  predicted: car#9 lost 0.25s"
    assert predicted_summary([]) == ""


def test_echo_json_lines_parse_and_carry_objects(node: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["echo", "--endpoint", node, "--count", "3", "--timeout", "10", "--json", "--latest"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    frames = [r for r in records if r.get("kind") == "frame"]
    assert len(frames) == 3
    assert [f["seq"] for f in frames] == sorted(f["seq"] for f in frames)
    last = frames[-1]
    assert {o["class_name"] for o in last["objects"]} == {"road", "car", "person"}
    cars = [o for o in last["objects"] if o["class_name"] == "car"]
    assert all(c["track_state"] == "confirmed" and c["velocity"] == [0.0, 0.0] and c["velocity_valid"] for c in cars)
    assert all(c["track_age_s"] > 0 and c["first_seen_ns"] > 0 and c["track_hits"] >= 3 for c in cars)
    assert last["capture_to_receive_ms"] > 0 and last["width"] == 64
    assert last["predicted"] == []  # nothing hidden in this scene


def test_stats_prints_percentile_tables(node: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--endpoint", node, "--count", "2", "--timeout", "10"]) == 0
    out = capsys.readouterr().out
    assert out.count("fps 29.7") == 2
    assert "inference         20.00    25.00    30.00    41.00      120" in out
    assert "end_to_end" in out and "counters read=125 processed=120 dropped.stale=5" in out


@pytest.mark.parametrize("command", ["echo", "stats"])
def test_no_node_is_one_line_error_exit_2(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main([command, "--endpoint", ipc_endpoint(tmp_path, "nobody"), "--timeout", "0.3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith(f"perception {command}: error: no ") and "start the node" in err[-1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["echo", "--count", "0"], "--count 0 is not positive"),
        (["stats", "--timeout", "-1"], "--timeout -1.0 is not positive"),
        (["echo", "--endpoint", "udp://x:1"], "uses transport 'udp'"),
        (["echo", "--camera", "a/b"], "camera name 'a/b'"),
    ],
)
def test_bad_arguments_are_one_line_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_printer_reports_gaps_restarts_and_bad_messages() -> None:
    out = io.StringIO()
    printer = Printer(out, as_json=False)
    printer.gap(GapEvent("cam0", Kind.FRAME, 9, expected_seq=11, seq=14))
    printer.restart(RestartEvent("cam0", 1, 255))
    lines = out.getvalue().splitlines()
    assert lines == [
        "! gap on frame: 3 missed (seq 10 -> 14)",
        "! publisher restarted: epoch 0000000000000001 -> 00000000000000ff (epoch changed)",
    ]
    as_json = io.StringIO()
    Printer(as_json, as_json=True).gap(GapEvent("cam0", Kind.FRAME, 9, expected_seq=11, seq=14))
    assert json.loads(as_json.getvalue()) == {"event": "gap", "topic": "frame", "missed": 3, "seq": 14}


def test_format_stats_tolerates_missing_fields() -> None:
    parts = control_message(Kind.STATS, "cam0", epoch=3, seq=0, publish_ns=1, body={"stats": {"stages": {"x": {}}}})
    msg = decode_message(parts, receive_ns=monotonic_ns())
    assert isinstance(msg, StatsMessage)
    table = format_stats(msg)
    assert "fps -" in table and "x                     -        -        -        -        -" in table
