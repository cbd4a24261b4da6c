"""Replay pacing and drive I/O speed.

1. Pacing at --rate 1: a drive of N frames at F fps replays through the real capture thread
   (mcap: source, latest-wins slot, a consumer that takes every frame). For each frame the
   capture stamp (CLOCK_MONOTONIC, when the capture thread handed it over) is compared with
   the recorded stamp: error_i = (capture_i - capture_0) - (stamp_i - stamp_0).
   Target: p99 |error| < 5 ms, total duration within 1 %.
2. Reading speed: read_drive and the mcap: source at --rate 0 (frames per second, decode included).
3. Recorder cost per frame (JPEG encode + write), the worker-thread cost `--record` adds.

    python bench/replay_bench.py [--frames 300] [--fps 30] [--width 640] [--height 480]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from perception.capture.counters import FrameCounters
from perception.capture.slot import FrameSlot, SlotClosed
from perception.capture.source import open_source
from perception.capture.thread import CaptureThread
from perception.core.frame import Frame, monotonic_ns
from perception.record.drive import DriveWriter, read_drive
from perception.record.recorder import Recorder


def make_drive(path: Path, frames: int, fps: float, width: int, height: int, image_format: str) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    base = np.asarray(np.clip(base.astype(np.int16) // 4 + 100, 0, 255), np.uint8)  # camera-like, compressible
    images = []
    with DriveWriter(path, image_format=image_format) as writer:
        for i in range(frames):
            image = np.roll(base, i * 4, axis=1)
            images.append(image)
            writer.write_frame(1_700_000_000_000_000_000 + round(i * 1e9 / fps), image)
    return images


def pacing(path: Path) -> dict[str, float]:
    source = open_source(f"mcap:{path}")
    source.open()
    slot: FrameSlot[None] = FrameSlot(lossless=False)
    capture = CaptureThread(source, slot, FrameCounters(), rate=1.0)
    seen: list[tuple[int, int]] = []
    capture.start()
    while True:
        try:
            frame = capture.slot.get(timeout=1.0)
        except SlotClosed:
            break
        if frame is not None:
            seen.append((frame.stamp_ns, frame.capture_ns))
    capture.join()
    stamps = np.array([s for s, _ in seen], np.int64)
    captures = np.array([c for _, c in seen], np.int64)
    error = (captures - captures[0]) - (stamps - stamps[0])
    recorded = stamps[-1] - stamps[0]
    return {
        "frames": len(seen),
        "p50_ms": float(np.percentile(np.abs(error), 50) / 1e6),
        "p99_ms": float(np.percentile(np.abs(error), 99) / 1e6),
        "max_ms": float(np.abs(error).max() / 1e6),
        "duration_error_pct": float(((captures[-1] - captures[0]) / recorded - 1) * 100),
        "early_frames": int((error < 0).sum()),
    }


def read_speed(path: Path) -> tuple[float, float]:
    start = time.perf_counter()
    n = sum(1 for _ in read_drive(path))
    drive_fps = n / (time.perf_counter() - start)
    source = open_source(f"mcap:{path}")
    source.open()
    start = time.perf_counter()
    n = 0
    while source.read() is not None:
        n += 1
    source.close()
    return drive_fps, n / (time.perf_counter() - start)


def recorder_cost(folder: Path, images: list[np.ndarray], image_format: str) -> float:
    with Recorder(folder / f"rec-{image_format}.mcap", image_format=image_format) as recorder:
        start = time.perf_counter()
        for i, image in enumerate(images):
            recorder.record_frame(Frame(image, i, i, monotonic_ns()))
        elapsed = time.perf_counter() - start
    return elapsed / len(images) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        drive = folder / "drive.mcap"
        images = make_drive(drive, args.frames, args.fps, args.width, args.height, "jpeg")
        result = pacing(drive)
        print(f"pacing at rate 1, {args.frames} frames {args.width}x{args.height} JPEG at {args.fps:g} fps: "
              f"|error| p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, max {result['max_ms']:.2f} ms; "
              f"duration {result['duration_error_pct']:+.3f} %; frames early: {result['early_frames']}; "
              f"delivered {result['frames']}")
        for image_format in ("jpeg", "png", "raw"):
            path = folder / f"drive-{image_format}.mcap"
            make_drive(path, min(args.frames, 100), args.fps, args.width, args.height, image_format)
            drive_fps, source_fps = read_speed(path)
            cost = recorder_cost(folder, images[:100], image_format)
            print(f"{image_format:>4}: read_drive {drive_fps:7.0f} fps, mcap: source {source_fps:7.0f} fps, "
                  f"recorder {cost:.2f} ms/frame, file {path.stat().st_size / 1e6:.1f} MB / 100 frames")
        ok = result["p99_ms"] < 5.0 and abs(result["duration_error_pct"]) < 1.0
        print("pacing target (p99 < 5 ms, duration within 1 %):", "met" if ok else "NOT met")
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
