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
from perception.core.errors import ConfigError, FrameError
from perception.runtime.config import load_launch, override
from perception.runtime.node import Node
from tests.node_helpers import image_folder, run_listened, write_launch


def test_a_stalled_camera_is_reported_lost_reopened_then_ready_again(tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/stall.sock"
    config = load_launch(write_launch(tmp_path, "fake:?fps=50&pause_after=10&pause_s=1.5&total=30", endpoint))
    config = override(config, "source", stall_timeout_s=0.5)
    run = run_listened(config, topics=("status",), backoff=Backoff(first_s=0.01, max_s=0.05))
    states = run.states()
    lost = states.index("source_lost")
    assert "ready" in states[lost:]  # frames flowed again, and the node said so
    assert "no frame for 0.5 s" in run.statuses()[lost].detail
    # 10 frames, then the stuck read is abandoned (its frame never counts) and the reopened camera gives 30
    assert run.report is not None and run.report.counters["read"] == 40


def test_a_replay_failing_mid_stream_publishes_the_reason_then_stops(tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/fail.sock"
    config = load_launch(write_launch(tmp_path, "fake:?live=0&fps=100&lose_after=5", endpoint))
    config = override(config, "source", rate=0.0)
    run = run_listened(config, topics=("status",))
    assert run.error is not None and "failed mid-stream" in str(run.error)
    assert run.states()[-2:] == ["error", "stopped"]
    assert "failed mid-stream" in run.statuses()[-2].detail


def test_lossless_replay_never_drops_for_age(tmp_path: Path) -> None:
    frames = image_folder(tmp_path / "frames", 25)
    config = load_launch(write_launch(tmp_path, f"images:{frames}", f"ipc://{tmp_path}/age.sock"))
    config = override(config, "source", rate=0.0, max_age_ms=0.001)
    report = Node.from_config(config).run()
    assert report.counters["read"] == report.counters["processed"] == 25


def test_sigint_while_waiting_for_subscribers_ends_at_once(tmp_path: Path) -> None:
    frames = image_folder(tmp_path / "frames", 3)
    config = load_launch(write_launch(tmp_path, f"images:{frames}", f"ipc://{tmp_path}/wait.sock"))
    node = Node.from_config(override(config, "publish", wait_subscribers=1, wait_timeout_s=60.0))
    threading.Timer(1.0, node.stop).start()
    started = time.monotonic()
    node.run()
    assert time.monotonic() - started < 10.0


def test_a_frame_that_cannot_be_preprocessed_is_dropped_not_fatal() -> None:
    source = open_source("fake:?fps=500&total=5")
    source.open()
    slot: FrameSlot[float] = FrameSlot(lossless=True)

    def prepare(image: np.ndarray) -> float:
        if int(image[0, 0, 0]) == 2:
            raise ValueError("odd frame")
        return float(image.mean())

    thread = CaptureThread(source, slot, FrameCounters(), rate=0, prepare=prepare)
    thread.start()
    frames = []
    while True:
        try:
            frame = slot.get(timeout=1.0)
        except SlotClosed:
            break
        if frame is not None:
            frames.append(frame)
    assert len(frames) == 5
    error = frames[2].preprocess_error
    assert isinstance(error, FrameError) and "odd frame" in str(error) and frames[2].prepared is None
    assert all(f.preprocess_error is None and isinstance(f.prepared, float) for i, f in enumerate(frames) if i != 2)
    assert thread.error is None


def test_backoff_stays_finite_for_a_camera_gone_for_hours() -> None:
    assert Backoff().delay(5000) == 10.0


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        ("run", {"latency_window": 0}, "latency_window = 0 must be at least 1"),
        ("source", {"max_age_ms": -1.0}, "max_age_ms = -1 is negative"),
        ("run", {"max_frames": -1}, "max_frames = -1 is negative"),
        ("tracking", {"tracker": "iou", "settings": {"iou_threshold": 0.0}}, "iou_threshold = 0 must be above 0"),
        ("tracking", {"settings": {"max_lost_s": 0.0}}, "max_lost_s = 0 must be above 0"),
        ("source", {"rate": float("nan")}, "rate = nan"),
    ],
)
def test_out_of_range_settings_are_config_errors(tmp_path: Path, section: str, values: dict[str, float],
                                                 message: str) -> None:
    config = load_launch(write_launch(tmp_path, "images:x", f"ipc://{tmp_path}/c.sock"))
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        override(config, section, **values)
