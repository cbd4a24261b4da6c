"""The node end to end: real sources, real ONNX Runtime, real ZeroMQ on loopback/ipc."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from perception.capture.thread import Backoff
from perception.runtime.config import load_launch, override
from perception.runtime.node import Node
from perception.wire.messages import FrameMessage, StatusMessage
from perception.wire.subscriber import Subscriber
from tests.node_helpers import REPO, image_folder, run_cli, run_listened, video_file, write_launch


def test_lockstep_replay_publishes_every_frame_with_objects(tmp_path: Path) -> None:
    frames = image_folder(tmp_path / "frames", 20)
    endpoint = f"ipc://{tmp_path}/node.sock"
    config = load_launch(write_launch(tmp_path, f"images:{frames}", endpoint))
    run = run_listened(config)
    report, msgs = run.report, run.frames()
    assert report is not None
    assert [m.frame_index for m in msgs] == list(range(20))
    assert [m.seq for m in msgs] == list(range(msgs[0].seq, msgs[0].seq + 20))
    assert all(m.missed == 0 for m in msgs)
    first = msgs[0]
    assert first.id_map.shape == (96, 128)
    cars = [o for o in first.objects if o.class_name == "car"]
    assert len(cars) == 2
    for car in cars:
        mask = first.mask(car.id)
        assert mask.sum() == car.area == 14 * 14
        assert car.instance_id > 0
    # the tracker keeps ids across frames
    assert {o.instance_id for o in msgs[-1].objects if o.class_name == "car"} == {c.instance_id for c in cars}
    # every stage stamped, in order, on the monotonic clock
    stamps = first.header["stamps"]
    order = ["capture", "preprocess", "dequeue", "inference", "handoff", "postprocess", "encode", "publish"]
    values = [stamps[k] for k in order]
    assert values == sorted(values)
    assert report.counters["read"] == 20 and report.counters["processed"] == 20
    assert report.latency["end_to_end"]["count"] == 20
    states = run.states()
    assert "ready" in states and states[-1] == "stopped"


def test_stale_frames_are_dropped_before_inference_and_counted(tmp_path: Path) -> None:
    frames = image_folder(tmp_path / "frames", 30)
    endpoint = f"ipc://{tmp_path}/node.sock"
    config = load_launch(write_launch(tmp_path, f"images:{frames}?fps=1000", endpoint))
    # replay at recorded rate (latest-wins) with a budget no frame can meet
    config = override(config, "source", rate=1.0, max_age_ms=0.001)
    report = Node.from_config(config).run()
    counters = report.counters
    dropped = counters["dropped"]
    assert counters["read"] == counters["processed"] + sum(dropped.values())
    assert dropped.get("stale", 0) > 0


def test_cli_video_file_max_frames_ends_and_balances(tmp_path: Path) -> None:
    video = video_file(tmp_path / "clip.avi", 120)
    launch = write_launch(tmp_path, str(video), f"ipc://{tmp_path}/cli.sock")
    result = run_cli("run", str(launch), "--source", str(video), "--max-frames", "100", "--rate", "0")
    assert result.returncode == 0, result.stderr
    assert "read 100 = processed 100 + dropped 0" in result.stderr
    assert "end_to_end" in result.stderr


def test_sigterm_stops_quickly_and_cleanly(tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/sig.sock"
    launch = write_launch(tmp_path, "fake:?fps=30", endpoint)
    proc = subprocess.Popen([sys.executable, "-m", "perception", "run", str(launch)], cwd=REPO,
                            stderr=subprocess.PIPE, text=True)
    statuses: list[str] = []
    with Subscriber(endpoint, "cam0", topics=("status", "frame")) as sub:
        assert _wait_frame(sub) is not None  # running: frames leave the node
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        took = time.monotonic() - sent
        while (msg := sub.recv(timeout=0.5)) is not None:
            if isinstance(msg, StatusMessage):
                statuses.append(msg.state)
                if msg.state == "stopped":
                    break
    assert proc.returncode == 0, err
    assert statuses[-1] == "stopped"
    assert "processed" in err
    assert took < 10


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda d, launch: ["run", str(launch), "--source", "nosuch:x"], "unknown source scheme"),
        (lambda d, launch: ["run", str(launch), "--source", str(d / "missing.mp4")], "does not exist"),
        (lambda d, launch: ["run", str(launch), "--source", "camera:93"], "camera /dev/video93 is not there"),
        (lambda d, launch: ["run", str(d / "nope.toml")], "launch file"),
        (lambda d, launch: ["run", str(launch), "--card", str(d / "model" / "nope.toml")], "model card"),
        (lambda d, launch: ["run", str(launch), "--endpoint", "tcp://8.8.8.8:5560"], "loopback"),
        (lambda d, launch: ["run", str(launch), "--engine", "warp-drive"], "unknown engine"),
        (lambda d, launch: ["run", str(launch), "--rate", "-1"], "negative"),
    ],
)
def test_bad_input_one_line_exit_2(tmp_path: Path, make_args, message: str) -> None:
    frames = image_folder(tmp_path / "frames", 2)
    launch = write_launch(tmp_path, f"images:{frames}", f"ipc://{tmp_path}/bad.sock")
    result = run_cli(*make_args(tmp_path, launch))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # no banner or start-up chatter above the error
    assert message in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[bogus]\nx = 1", "unknown sections ['bogus']"),
        ("compresion = \"zstd\"", "unknown keys ['compresion']"),
        ("sndhwm = \"four\"", "expected a int"),
        ("[tracking]\ntracker = \"kalmann\"", "unknown tracker 'kalmann' in [tracking] tracker: choose one of "
                                               "bytetrack, iou, none"),
        ("[tracking]\nmatch = \"polygon\"", "match = 'polygon' is not a known association"),
        ("[tracking]\ntracker = \"iou\"\nmax_lost_s = 2.0", "has unknown keys ['max_lost_s']: valid keys: "
                                                          "['iou_threshold', 'max_missed', 'max_tracks']"),
    ],
)
def test_bad_launch_files(tmp_path: Path, extra: str, message: str) -> None:
    launch = write_launch(tmp_path, "images:x", f"ipc://{tmp_path}/l.sock", extra=extra)
    result = run_cli("run", str(launch))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_model_that_disagrees_with_its_card_is_refused(tmp_path: Path) -> None:
    frames = image_folder(tmp_path / "frames", 2)
    launch = write_launch(tmp_path, f"images:{frames}", f"ipc://{tmp_path}/m.sock")
    card = tmp_path / "model" / "tiny.toml"
    card.write_text(card.read_text().replace("width = 64", "width = 80"))
    result = run_cli("run", str(launch))
    assert result.returncode == 2
    assert "disagree" in result.stderr and "Traceback" not in result.stderr


def test_endpoint_in_use_is_refused_and_first_node_keeps_publishing(tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/busy.sock"
    launch = write_launch(tmp_path, "fake:?fps=30", endpoint)
    first = subprocess.Popen([sys.executable, "-m", "perception", "run", str(launch)], cwd=REPO,
                             stderr=subprocess.PIPE, text=True)
    try:
        with Subscriber(endpoint, "cam0", topics=("frame",)) as sub:
            assert _wait_frame(sub) is not None
            tcp_launch = write_launch(tmp_path / "b", "fake:?fps=30", endpoint)
            second = run_cli("run", str(tcp_launch))
            assert second.returncode == 2
            assert "in use" in second.stderr
            assert _wait_frame(sub) is not None  # nothing lost on the first node
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=10)
    assert first.returncode == 0


def _wait_frame(sub: Subscriber) -> FrameMessage | None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        msg = sub.recv(timeout=0.2)
        if isinstance(msg, FrameMessage):
            return msg
    return None


def test_lost_camera_reports_source_lost_then_recovers(tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/lost.sock"
    config = load_launch(write_launch(tmp_path, "fake:?fps=200&lose_after=15&fail_opens=3&total=40", endpoint))
    run = run_listened(config, topics=("frame", "status"), backoff=Backoff(first_s=0.01, max_s=0.05))
    states = run.states()
    assert "source_lost" in states
    assert states.index("source_lost") < len(states) - 1
    assert np.diff([m.seq for m in run.frames()]).max() == 1  # no frame missing on the wire
    assert run.report is not None and run.report.counters["read"] == 40


def test_nan_outputs_drop_the_frame_report_error_and_keep_running(tmp_path: Path) -> None:
    from tests.onnx_models import tiny_panoptic

    frames = image_folder(tmp_path / "frames", 6)
    endpoint = f"ipc://{tmp_path}/nan.sock"
    config = load_launch(write_launch(tmp_path, f"images:{frames}", endpoint))
    config = override(config, "model", card=tiny_panoptic(tmp_path / "broken", nan_centers=True))
    run = run_listened(config, topics=("frame", "status"))
    assert run.report is not None
    assert run.report.counters["read"] == 6
    assert run.report.counters["dropped"] == {"error": 6}
    errors = [m for m in run.statuses() if m.state == "error"]
    assert sum(m.errors for m in errors) == 6  # rate-limited statuses, each with its count
    assert "NaN" in errors[0].detail
    assert not run.frames()


def test_frame_errors_are_one_status_per_second_with_the_count(tmp_path: Path) -> None:
    """The node's clock stands still: the first error is published at once, the other 11 are
    counted and published together when the run ends, before `stopped`."""
    from tests.onnx_models import tiny_panoptic

    frames = image_folder(tmp_path / "frames", 12)
    config = load_launch(write_launch(tmp_path, f"images:{frames}", f"ipc://{tmp_path}/rate.sock"))
    config = override(config, "model", card=tiny_panoptic(tmp_path / "broken", nan_centers=True))
    run = run_listened(config, topics=("frame", "status"), clock=lambda: 10**12)
    errors = [m for m in run.statuses() if m.state == "error"]
    assert [m.errors for m in errors] == [1, 11]
    assert errors[0].detail.startswith("frame 0: ") and "NaN" in errors[0].detail
    assert errors[1].detail.startswith("frame 11: ") and errors[1].detail.endswith(
        "(and 10 more since the last error status)")
    assert run.states()[-2:] == ["error", "stopped"]
    assert run.report is not None and run.report.counters["dropped"] == {"error": 12}


def test_corrupt_images_in_a_folder_are_reported_as_frame_errors_with_their_count(tmp_path: Path) -> None:
    frames = image_folder(tmp_path / "frames", 6)
    for name in ("0002.png", "0004.png", "0005.png"):
        (frames / name).write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    config = load_launch(write_launch(tmp_path, f"images:{frames}", f"ipc://{tmp_path}/bad.sock"))
    run = run_listened(config, topics=("frame", "status"), clock=lambda: 10**12)
    errors = [m for m in run.statuses() if m.state == "error"]
    assert [(m.errors, m.detail) for m in errors] == [
        (1, "image 0002.png cannot be decoded; skipped"),
        (2, "image 0005.png cannot be decoded; skipped (and 1 more since the last error status)")]
    assert len(run.frames()) == 3
    assert run.report is not None and run.report.counters["read"] == run.report.counters["processed"] == 3


def test_a_replay_that_starts_over_resets_the_tracks_and_says_so(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERCEPTION_SOURCES", "twice=tests.replayed_twice:ReplayedTwice")
    endpoint = f"ipc://{tmp_path}/node.sock"
    config = load_launch(write_launch(tmp_path, "twice:drive", endpoint, extra="[tracking]\nmin_hits = 2"))
    assert config.tracking.tracker == "bytetrack" and config.tracking.settings == {"min_hits": 2}
    run = run_listened(config)
    frames = run.frames()
    assert len(frames) == 7
    cars = [sorted(o.instance_id for o in m.objects if o.class_name == "car") for m in frames]
    assert cars[0] == cars[3] and len(cars[0]) == 2  # the same two cars, tracked
    assert min(cars[4]) > max(cars[3])  # after the reset: new ids, none reused
    assert [o.track_state for o in frames[3].objects if o.class_name == "car"] == ["confirmed"] * 2
    assert all(o.track_state == "tentative" for o in frames[4].objects if o.class_name == "car")
    resets = [m for m in run.statuses() if m.detail.startswith("tracks reset:")]
    assert len(resets) == 1 and resets[0].state == "ready"
    assert "stamp went back 0.300 s" in resets[0].detail
