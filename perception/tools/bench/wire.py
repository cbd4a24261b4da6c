"""`perception bench wire`: a 1280x720 id map with 50 objects, encode + send + receive + decode, process to process.

Scene: a street-like panoptic id map (road, sidewalk, sky, buildings as stuff; 50 cars and
people as ellipses and boxes), uint16. The publisher stamps each frame just before
`publish_frame` (encode + send); a subscriber in its own process receives, decodes the header
and the id map, and takes CLOCK_MONOTONIC (shared by processes on a host) again. Over ipc and
tcp loopback, zstd / lz4 / raw side by side, alternating per repetition. References: COCO RLE
(pycocotools, when installed) of the 50 masks and a 16-bit PNG of the id map.
Targets: p50 <= 3 ms and bytes <= 5% of the raw id map.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

from perception.core.result import FrameResult
from perception.core.segmentation import Segmentation
from perception.tools.bench.contenders import BenchError
from perception.tools.bench.report import Outcome, spread
from perception.wire.publisher import Publisher

COMPRESSIONS = ("zstd", "lz4", "raw")
TRANSPORTS = ("ipc", "tcp")

_RECEIVER = """
import sys, time
from perception.core.frame import monotonic_ns
from perception.wire.subscriber import Subscriber
frames = int(sys.argv[2])
lat = []
with Subscriber(sys.argv[1], "cam0", topics=("frame",), rcvhwm=1000, eager=False) as sub:
    print("ready", flush=True)
    deadline = time.monotonic() + 120
    while len(lat) < frames and time.monotonic() < deadline:
        msg = sub.recv(timeout=0.5)
        if msg is not None and hasattr(msg, "id_map"):
            msg.id_map
            lat.append(monotonic_ns() - msg.stamps["capture"])
print(" ".join(map(str, lat)), flush=True)
"""


def street(width: int, height: int, objects: int = 50, seed: int = 7) -> Segmentation:
    rng = np.random.default_rng(seed)
    id_map = np.zeros((height, width), np.uint16)
    id_map[: height // 3] = 1  # sky
    id_map[height // 3 : height // 2] = 2  # buildings
    id_map[height // 2 :] = 3  # road
    cv2.fillPoly(id_map, [np.array([[0, height], [0, height * 3 // 5], [width // 5, height // 2]])], 4)  # sidewalk
    classes, things = [10, 11, 0, 12], [False, False, False, False]
    for k in range(objects):
        sid = 5 + k
        x, y = int(rng.integers(0, width)), int(rng.integers(height // 2, height))
        w, h = int(rng.integers(width // 40, width // 8)), int(rng.integers(height // 30, height // 8))
        if k % 3:
            cv2.ellipse(id_map, (x, y), (w, h), 0, 0, 360, sid, -1)
            classes.append(2)
        else:
            cv2.rectangle(id_map, (x, y - 2 * h), (x + w // 2, y), sid, -1)
            classes.append(1)
        things.append(True)
    n = len(classes)
    return Segmentation.from_id_map(id_map, np.array(classes), rng.uniform(0.5, 1.0, n), np.array(things))




def one_run(seg: Segmentation, transport: str, compression: str, frames: int, where: str) -> list[float]:
    """Latencies (ms) of `frames` frames from publish_frame to the id map decoded in another process."""
    h, w = seg.shape
    endpoint = f"ipc://{where}/wire-{compression}.sock" if transport == "ipc" else "tcp://127.0.0.1:*"
    with Publisher(endpoint, compression=compression, sndhwm=1000) as pub:
        receiver = subprocess.Popen([sys.executable, "-c", _RECEIVER, pub.endpoint, str(frames)],
                                    stdout=subprocess.PIPE, text=True)
        assert receiver.stdout is not None
        if receiver.stdout.readline().strip() != "ready":
            raise BenchError("the wire bench's receiver process did not start", "check that perception imports")
        pub.wait_for_subscription("frame", timeout_s=30)
        for i in range(frames):
            res = FrameResult("cam0", i, i, w, h, seg, {"capture": time.monotonic_ns()})
            pub.publish_frame(res)
            time.sleep(0.005)  # a frame period of sorts: the node does not publish in bursts
        out = receiver.communicate(timeout=120)[0].split()
    return [int(v) / 1e6 for v in out][2:]  # the first frames warm up both ends


def encoded_bytes(seg: Segmentation, compression: str) -> int:
    from perception.wire.codec import FrameEncoder

    h, w = seg.shape
    res = FrameResult("cam0", 0, 0, w, h, seg, {"capture": 0})
    parts, _, _ = FrameEncoder("cam0", compression).encode(res, epoch=1, seq=0, clock=time.monotonic_ns)
    return sum(len(p) for p in parts)


def references(seg: Segmentation) -> list[dict[str, object]]:
    id_map = np.ascontiguousarray(seg.id_map)
    rows: list[dict[str, object]] = []
    ok, png = cv2.imencode(".png", id_map)
    rows.append({"reference": "16-bit PNG of the id map", "bytes": len(png) if ok else 0})
    try:
        from pycocotools import mask as coco_mask
    except ImportError:
        rows.append({"reference": "COCO RLE of the masks", "bytes": "pycocotools not installed ([bench] extra)"})
        return rows
    start = time.perf_counter()
    ids = [int(i) for i in seg.segments.ids]
    masks = np.asfortranarray(np.stack([(id_map == i) for i in ids], axis=2).astype(np.uint8))
    rles = coco_mask.encode(masks)
    ms = (time.perf_counter() - start) * 1e3
    rows.append({"reference": f"COCO RLE of the {len(ids)} masks (pycocotools)",
                 "bytes": sum(len(r["counts"]) for r in rles), "encode ms": ms})
    return rows


def run(quick: bool) -> Outcome:
    frames, repetitions, objects = (6, 1, 50) if quick else (200, 3, 50)
    seg = street(1280, 720, objects)
    raw_bytes = seg.id_map.size * seg.id_map.itemsize
    where = tempfile.mkdtemp()
    samples: dict[tuple[str, str], list[float]] = {(t, c): [] for t in TRANSPORTS for c in COMPRESSIONS}
    for _ in range(repetitions):  # alternate the contenders within the run
        for key in samples:
            samples[key] += one_run(seg, key[0], key[1], frames, where)
    rows = []
    for (transport, compression), lat in samples.items():
        size = encoded_bytes(seg, compression)
        s = spread(lat or [float("nan")])
        rows.append({"transport": transport, "compression": compression, "bytes": size,
                     "% of raw": 100 * size / raw_bytes, "p50 ms": s["median"], "p90 ms": s["p90"],
                     "timed": f"{len(lat)}/{(frames - 2) * repetitions}"})
    best = next(r for r in rows if r["transport"] == "tcp" and r["compression"] == "zstd")
    rows += references(seg)
    return Outcome({"p50_ms": best["p50 ms"], "percent_of_raw": best["% of raw"], "target_ms": 3.0,
                    "target_percent": 5.0, "segments": len(seg.segments)}, rows,
                   {"size": "1280x720", "objects": objects, "frames": frames, "repetitions": repetitions},
                   ["headline: tcp loopback with zstd (the default); latency = publish_frame start -> id map "
                    "decoded in the subscriber process"])
