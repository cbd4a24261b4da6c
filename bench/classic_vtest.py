"""What the motion card finds on OpenCV's vtest.avi: tracked people and cars, per frame and over the clip.

    python bench/classic_vtest.py [--card engines/classic-motion.toml] [--video PATH]

The video comes from Debian's opencv-doc package into the user cache (perception.tools.sample_video). The
node's own pipeline and tracker run on every frame; OpenCV on one thread.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from perception.runtime.config import TrackingConfig
from perception.runtime.pipeline import Pipeline, PipelineSpec
from perception.tools.sample_video import fetch_vtest
from perception.tracking.base import make_tracker

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--card", type=Path, default=ROOT / "engines" / "classic-motion.toml")
    parser.add_argument("--video", type=Path, default=None, help="default: vtest.avi, fetched into the cache")
    args = parser.parse_args()
    video = args.video
    if video is None:
        video, why = fetch_vtest()
        if video is None:
            print(f"no video: {why}")
            return 1
    cv2.setNumThreads(1)
    capture = cv2.VideoCapture(str(video))
    defaults = TrackingConfig()  # the node's tracker with the default [tracking] settings
    tracker = make_tracker(defaults.tracker, defaults.settings)
    fps = capture.get(cv2.CAP_PROP_FPS) or 10.0  # the tracker steps by stamps: the video's own clock
    seen: Counter[int] = Counter()
    track_class: dict[int, int] = {}
    per_frame: list[int] = []
    spent = 0.0
    size = (0, 0)
    with Pipeline.open(PipelineSpec(card=args.card)) as pipeline:
        names = {c.id: c.name for c in pipeline.card.classes}
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            size = (frame.shape[1], frame.shape[0])
            started = time.perf_counter()
            seg = pipeline.process(frame)
            spent += time.perf_counter() - started
            seg = tracker.update(seg, round(len(per_frame) * 1e9 / fps))
            s = seg.segments
            things = [(int(i), int(c)) for i, c, t in zip(s.instance_ids, s.class_ids, s.is_thing, strict=True) if t]
            per_frame.append(len(things))
            for track, cls in things:
                seen[track] += 1
                track_class[track] = cls
    n = len(per_frame)
    print(f"{video.name}: {n} frames {size[0]}x{size[1]}, card {args.card.name}, "
          f"{1000 * spent / max(n, 1):.1f} ms/frame (pipeline, one thread)")
    print(f"things per frame: mean {np.mean(per_frame):.1f}, max {max(per_frame)}")
    for least in (1, 10, 30):
        counts = Counter(names[track_class[t]] for t, k in seen.items() if k >= least)
        print(f"tracks seen in >= {least:>2} frames: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
