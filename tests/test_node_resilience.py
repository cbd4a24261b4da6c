"""The node under awkward conditions: stalls, failures mid-stream, odd frames, signals."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from perception.capture.counters import FrameCounters
from perception.capture.slot import FrameSlot, SlotClosed
from perception.capture.source import open_source
from perception.capture.thread import Backoff, CaptureThread
from perception.core.errors import ConfigError, FrameError, PerceptionError
from perception.runtime.config import load_launch, override
from perception.runtime.node import Node
from perception.wire.messages import StatusMessage
from perception.wire.subscriber import Subscriber
from tests.node_helpers import image_folder, write_launch


def _statuses(endpoint: str, stop: threading.Event, into: list[StatusMessage]) -> None:
    with Subscriber(endpoint, "cam0", topics=("status", "frame")) as sub:
        while not stop.is_set():
            msg = sub.recv(timeout=0.1)
            if isinstance(msg, StatusMessage):
                into.append(msg)


def _run(config):  # type: ignore[no-untyped-def]
    """Run a node with a status listener; returns (report or None, statuses, the user error if any)."""
    statuses: list[StatusMessage] = []
    stop = threading.Event()
    listener = threading.Thread(target=_statuses, args=(config.publish.endpoint, stop, statuses))
    listener.start()
    time.sleep(0.5)
    node = Node(override(config, "publish", wait_subscribers=1, sndhwm=1000))
    report, error = None, None
    try:
        report = node.run()
    except PerceptionError as exc:
        error = exc
    finally:
        time.sleep(0.3)
        stop.set()
        listener.join()
    return report, statuses, error


def test_a_stalled_camera_is_reported_lost_then_ready_again(tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/stall.sock"
    config = load_launch(write_launch(tmp_path, "fake:?fps=50&pause_after=10&pause_s=1.5&total=30", endpoint))
    config = override(config, "source", stall_timeout_s=0.5)
    report, statuses, _ = _run(config)
    states = [m.state for m in statuses]
    lost = states.index("source_lost")
    assert "ready" in states[lost:]  # frames flowed again, and the node said so
    assert "no frame for 0.5 s" in statuses[lost].detail
    assert report is not None and report.counters["read"] == 30


def test_a_replay_failing_mid_stream_publishes_the_reason_then_stops(tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/fail.sock"
    config = load_launch(write_launch(tmp_path, "fake:?live=0&fps=100&lose_after=5", endpoint))
    config = override(config, "source", rate=0.0)
    _, statuses, error = _run(config)
    assert error is not None and "failed mid-stream" in str(error)
    states = [m.state for m in statuses]
    assert states[-2:] == ["error", "stopped"]
    assert "failed mid-stream" in statuses[-2].detail


def test_lossless_replay_never_drops_for_age(tmp_path: Path) -> None:
    frames = image_folder(tmp_path / "frames", 25)
    config = load_launch(write_launch(tmp_path, f"images:{frames}", f"ipc://{tmp_path}/age.sock"))
    config = override(config, "source", rate=0.0, max_age_ms=0.001)
    report = Node(config).run()
    assert report.counters["read"] == report.counters["processed"] == 25


def test_sigint_while_waiting_for_subscribers_ends_at_once(tmp_path: Path) -> None:
    frames = image_folder(tmp_path / "frames", 3)
    config = load_launch(write_launch(tmp_path, f"images:{frames}", f"ipc://{tmp_path}/wait.sock"))
    node = Node(override(config, "publish", wait_subscribers=1, wait_timeout_s=60.0))
    threading.Timer(1.0, node.stop).start()
    started = time.monotonic()
    node.run()
    assert time.monotonic() - started < 10.0


def test_a_frame_that_cannot_be_preprocessed_is_dropped_not_fatal() -> None:
    source = open_source("fake:?fps=500&total=5")
    source.open()
    slot = FrameSlot(lossless=True)

    def prepare(image: np.ndarray) -> object:
        if int(image[0, 0, 0]) == 2:
            raise ValueError("odd frame")
        return image.mean()

    thread = CaptureThread(source, slot, FrameCounters(), rate=0, prepare=prepare)
    thread.start()
    prepared = []
    while True:
        try:
            frame = slot.get(timeout=1.0)
        except SlotClosed:
            break
        if frame is not None:
            prepared.append(frame.prepared)
    assert len(prepared) == 5
    assert isinstance(prepared[2], FrameError) and "odd frame" in str(prepared[2])
    assert not any(isinstance(p, FrameError) for i, p in enumerate(prepared) if i != 2)
    assert thread.error is None


def test_backoff_stays_finite_for_a_camera_gone_for_hours() -> None:
    assert Backoff().delay(5000) == 10.0


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        ("run", {"latency_window": 0}, "latency_window = 0 must be at least 1"),
        ("source", {"max_age_ms": -1.0}, "max_age_ms = -1 is negative"),
        ("run", {"max_frames": -1}, "max_frames = -1 is negative"),
        ("tracking", {"iou_threshold": 0.0}, "iou_threshold = 0 must be above 0"),
        ("source", {"rate": float("nan")}, "rate = nan"),
    ],
)
def test_out_of_range_settings_are_config_errors(tmp_path: Path, section: str, values: dict[str, float],
                                                 message: str) -> None:
    config = load_launch(write_launch(tmp_path, "images:x", f"ipc://{tmp_path}/c.sock"))
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        override(config, section, **values)
