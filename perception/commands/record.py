"""`perception record --source URI --out OUT.mcap`: record a source's frames (input only, no model).

The same capture thread as the node reads the source (reconnects for live cameras, pacing for
replays), and the same Recorder writes the file, so the result replays with `mcap:OUT.mcap`.
SIGINT/SIGTERM stop the capture and close the file cleanly.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from perception.core.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("record", help="record a source's frames to MCAP (input only)",
                       description="Record the frames of a source (camera, video, images, drive) to an MCAP file "
                                   "that opens in Foxglove and replays with mcap:FILE.")
    p.add_argument("--source", required=True, help="source URI (camera:0, file.mp4, images:DIR, mcap:..., ...)")
    p.add_argument("--out", required=True, type=Path, help="MCAP file to write")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out file (never the source being recorded)")
    p.add_argument("--max-frames", type=int, default=0, help="stop after N frames (0 = until the source ends)")
    p.add_argument("--image-format", choices=("jpeg", "png", "raw"), default="jpeg",
                   help="jpeg (small), png or raw (lossless); default jpeg")
    p.add_argument("--rate", type=float, default=0.0,
                   help="replay sources: 1 = recorded timing, N = N times, 0 = as fast as possible (default)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from perception.capture.counters import FrameCounters
    from perception.capture.inputs import source_files
    from perception.capture.slot import FrameSlot, SlotClosed
    from perception.capture.source import open_source
    from perception.capture.thread import CaptureThread
    from perception.record.output_guard import check_output
    from perception.record.recorder import Recorder

    if args.max_frames < 0 or args.rate < 0:
        raise ConfigError("--max-frames and --rate must be >= 0", "give 0 or a positive number")
    check_output(args.out, inputs=source_files(args.source), overwrite=args.overwrite)
    source = open_source(args.source)
    source.open()
    counters = FrameCounters()
    slot: FrameSlot[None] = FrameSlot(lossless=not source.live)  # nothing prepared: frames go to disk as read
    capture = CaptureThread(source, slot, counters, rate=args.rate, max_frames=args.max_frames)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        capture.stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    written = 0
    try:
        with Recorder(args.out, image_format=args.image_format, live_clock=source.live,
                      metadata={"record": {"source": args.source, "image_format": args.image_format}}) as recorder:
            capture.start()
            while not stop.is_set():
                try:
                    frame = capture.slot.get(timeout=0.2)
                except SlotClosed:
                    break
                if frame is not None:
                    recorder.record_frame(frame)
                    written += 1
    finally:
        capture.stop()
        if capture.is_alive():
            capture.join(timeout=5.0)
        else:
            source.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"perception record: {written} frames from {args.source} -> {args.out}", file=sys.stderr)
    if capture.error is not None:
        raise capture.error
    return 0
