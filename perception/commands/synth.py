"""`perception synth --out DRIVE.mcap --seed S --frames N [--fps F]`: write a synthetic drive with ground truth."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "synth", help="render a synthetic street drive with panoptic ground truth to a drive file",
        description="Render a forward-camera street drive (deterministic from --seed) with exact panoptic "
                    "ground truth and stable instance ids into an MCAP drive file that replays with "
                    "mcap:FILE and evaluates with perception eval --drive FILE.")
    parser.add_argument("--out", type=Path, required=True, help="drive file to write (.mcap)")
    parser.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    parser.add_argument("--frames", type=int, default=300, help="number of frames (default 300)")
    parser.add_argument("--fps", type=float, default=10.0, help="frame rate: stamps and motion (default 10)")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--image-format", choices=("png", "jpeg", "raw"), default="png",
                        help="png (lossless, default), jpeg (smaller) or raw")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from perception.core.interrupt import sigterm_raises
    from perception.ops.progress import Progress
    from perception.synth.drivefile import write_drive

    started = time.monotonic()
    # SIGTERM unwinds like Ctrl-C: the drive's temporary file is removed
    with sigterm_raises(), Progress("rendering", args.frames) as progress:
        path = write_drive(args.out, args.seed, args.frames, args.fps, args.width, args.height,
                           image_format=args.image_format, progress=progress.update)
    print(f"wrote {path} ({args.frames} frames, {path.stat().st_size:,} bytes) in "
          f"{time.monotonic() - started:.1f} s")
    return 0
