"""Capture thread, slot and counters with real file sources and the fake camera."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.capture.counters import DROP_OVERWRITTEN, FrameCounters
from perception.capture.errors import SourceError
from perception.capture.slot import FrameSlot, SlotClosed
from perception.capture.source import open_source, parse_uri
from perception.capture.thread import Backoff, CaptureThread, SourceState
from perception.core.frame import Frame
from tests.waiting import wait_until


def _frame(i: int) -> Frame[None]:
    return Frame(np.zeros((4, 4, 3), np.uint8), i, i, i)


def _drain(slot: FrameSlot[None], counters: FrameCounters, delay: float = 0.0) -> list[Frame[None]]:
    got: list[Frame[None]] = []
    while True:
        try:
            frame = slot.get(timeout=0.5)
        except SlotClosed:
            return got
        if frame is not None:
            got.append(frame)
            counters.add_processed()
            time.sleep(delay)


def test_live_slot_keeps_latest_and_returns_displaced() -> None:
    slot: FrameSlot[None] = FrameSlot(lossless=False)
    assert slot.put(_frame(0)) is None
    displaced = slot.put(_frame(1))
    assert displaced is not None and displaced.index == 0
    got = slot.get(timeout=0.1)
    assert got is not None and got.index == 1
    assert slot.get(timeout=0.01) is None


def test_lossless_slot_blocks_instead_of_dropping() -> None:
    slot: FrameSlot[None] = FrameSlot(lossless=True, capacity=2)
    done = threading.Event()

    def produce() -> None:
        for i in range(10):
            assert slot.put(_frame(i)) is None
        slot.close()
        done.set()

    threading.Thread(target=produce, daemon=True).start()
    wait_until(lambda: slot.depth == 2, what="a full slot")
    assert not done.is_set()  # the producer is held back by the bound, not done with its ten frames
    assert slot.depth == 2
    got = _drain(slot, FrameCounters())
    assert [f.index for f in got] == list(range(10))


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    for i in range(12):
        cv2.imwrite(str(tmp_path / f"{i:04d}.png"), np.full((24, 32, 3), i * 10, np.uint8))
    return tmp_path


def test_lossless_replay_delivers_every_frame_in_order(image_folder: Path) -> None:
    source = open_source(f"images:{image_folder}?fps=1000")
    source.open()
    counters = FrameCounters()
    slot: FrameSlot[None] = FrameSlot(lossless=True)
    thread = CaptureThread(source, slot, counters, rate=0)
    thread.start()
    got = _drain(slot, counters, delay=0.005)
    thread.join(2)
    assert [f.index for f in got] == list(range(12))
    assert [int(f.image[0, 0, 0]) for f in got] == [i * 10 for i in range(12)]
    assert counters.read == counters.processed == 12 and counters.balanced
    assert thread.state is SourceState.ENDED


def test_rate_paces_replay_by_recorded_stamps(image_folder: Path) -> None:
    source = open_source(f"images:{image_folder}?fps=50")  # 12 frames over 220 ms of recorded time
    source.open()
    counters = FrameCounters()
    slot: FrameSlot[None] = FrameSlot(lossless=False)
    thread = CaptureThread(source, slot, counters, rate=2.0)
    start = time.monotonic()
    thread.start()
    got = _drain(slot, counters)
    elapsed = time.monotonic() - start
    # paced, not instant: 220 ms recorded at 2x is >= 110 ms
    assert elapsed >= 0.11
    capture_gaps = np.diff([f.capture_ns for f in got])
    assert capture_gaps.min() > 0
    assert counters.balanced


def test_max_frames_ends_the_capture(image_folder: Path) -> None:
    source = open_source(f"images:{image_folder}")
    source.open()
    counters = FrameCounters()
    slot: FrameSlot[None] = FrameSlot(lossless=True)
    thread = CaptureThread(source, slot, counters, rate=0, max_frames=5)
    thread.start()
    got = _drain(slot, counters)
    assert len(got) == 5 and counters.read == 5


def test_slow_worker_on_live_source_drops_overwritten_and_balances() -> None:
    source = open_source("fake:?fps=200&total=60")
    source.open()
    counters = FrameCounters()
    slot: FrameSlot[None] = FrameSlot(lossless=False)
    thread = CaptureThread(source, slot, counters)
    thread.start()
    got = _drain(slot, counters, delay=0.02)
    thread.join(2)
    assert counters.read == 60
    assert counters.dropped[DROP_OVERWRITTEN] > 0
    assert counters.processed == len(got)
    assert counters.balanced
    indices = [f.index for f in got]
    assert indices == sorted(indices)


def test_lost_camera_reconnects_with_backoff_and_reports_states() -> None:
    states: list[tuple[SourceState, str]] = []
    source = open_source("fake:?fps=200&lose_after=10&fail_opens=2&total=30")
    source.open()
    counters = FrameCounters()
    slot: FrameSlot[None] = FrameSlot(lossless=False)
    thread = CaptureThread(source, slot, counters, backoff=Backoff(first_s=0.01, max_s=0.05),
                           on_state=lambda s, d: states.append((s, d)))
    thread.start()
    _drain(slot, counters, delay=0.0)
    thread.join(2)
    kinds = [s for s, _ in states]
    assert kinds[0] is SourceState.STREAMING
    assert SourceState.RECONNECTING in kinds
    assert kinds.count(SourceState.RECONNECTING) == 3  # lost, then two failed reopen attempts
    assert kinds[-2:] == [SourceState.STREAMING, SourceState.ENDED]
    assert thread.reconnects == 1
    assert counters.read == 30 and counters.balanced


def test_stop_interrupts_reconnecting() -> None:
    source = open_source("fake:?fps=500&lose_after=3&fail_opens=1000")
    source.open()
    slot: FrameSlot[None] = FrameSlot(lossless=False)
    attempts = threading.Semaphore(0)
    thread = CaptureThread(source, slot, FrameCounters(), backoff=Backoff(first_s=0.05, max_s=0.05),
                           on_state=lambda state, detail: attempts.release() if "failed" in detail else None)
    thread.start()
    failed_twice = attempts.acquire(timeout=10) and attempts.acquire(timeout=10)  # reopening keeps failing
    assert failed_twice
    assert thread.state is SourceState.RECONNECTING
    thread.stop()
    thread.join(1)
    assert not thread.is_alive()


@pytest.mark.parametrize(
    ("text", "scheme", "target"),
    [
        ("0", "camera", "0"),
        ("/dev/video3", "camera", "/dev/video3"),
        ("camera:1?width=640", "camera", "1"),
        ("drive.mp4", "file", "drive.mp4"),
        ("file:///tmp/a.mp4", "file", "/tmp/a.mp4"),
        ("frames/*.png", "images", "frames/*.png"),
        ("rtsp://10.0.0.2/stream?x=1", "rtsp", "rtsp://10.0.0.2/stream?x=1"),
        ("gst:videotestsrc ! appsink", "gst", "videotestsrc ! appsink"),
        ("/dev/video0?width=1280&fourcc=MJPG", "camera", "/dev/video0"),
        ("0?width=640", "camera", "0"),
        ("drive.mp4?x=1", "file", "drive.mp4"),
        ("frames/img?.png", "images", "frames/img?.png"),
        ("frames/*.png?fps=5", "images", "frames/*.png"),
    ],
)
def test_uri_parsing(text: str, scheme: str, target: str) -> None:
    uri = parse_uri(text)
    assert (uri.scheme, uri.target) == (scheme, target)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nosuch:thing", "unknown source scheme 'nosuch'"),
        ("/nonexistent/drive.mp4", "does not exist"),
        ("camera:97", "is not there"),
        ("images:/nonexistent/dir/*.png", "no images found"),
        ("", "empty"),
    ],
)
def test_bad_sources_give_clear_errors(text: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        open_source(text).open()


def test_video_file_source_reads_frames_with_stamps(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 20.0, (64, 48))
    for i in range(15):
        writer.write(np.full((48, 64, 3), i * 15, np.uint8))
    writer.release()
    source = open_source(str(path))
    source.open()
    frames = []
    while (item := source.read()) is not None:
        frames.append(item)
    assert len(frames) == 15
    stamps = [s for _, s in frames]
    assert stamps == sorted(stamps) and stamps[1] - stamps[0] == pytest.approx(50_000_000, rel=0.01)


def test_undecodable_video_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"\x00not a video" * 100)
    with pytest.raises(SourceError, match="cannot be decoded"):
        open_source(str(path)).open()


def test_malformed_camera_options_and_plugins_are_source_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SourceError, match="not 4 characters"):
        open_source("camera:0?fourcc=MJP").open()
    monkeypatch.setenv("PERCEPTION_SOURCES", "thermal=no_such_module:Thermal")
    with pytest.raises(SourceError, match="cannot be loaded"):
        open_source("thermal:0")


def test_a_folder_of_only_unreadable_images_is_an_error(tmp_path: Path) -> None:
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(b"junk")
    source = open_source(f"images:{tmp_path}")
    source.open()
    with pytest.raises(SourceError, match="none of the 2 image"):
        source.read()
