"""Wire cost per frame: encode (id map compression + header) and publish_frame, zstd vs lz4 vs raw.

Scene: a street-like panoptic id map (road, sidewalk, sky, buildings as stuff; 25 cars and
people as ellipses and boxes) at 640x384 and 1280x720, uint16. One subscriber on tcp
loopback drains in a thread so publish_frame measures the real send path; its decode cost
(header + id map) is timed too. Timings are CLOCK_MONOTONIC, per call, on this machine.

    python bench/wire_bench.py [--frames N]
"""

from __future__ import annotations

import argparse
import platform
import threading
import time

import cv2
import numpy as np

from perception.core.result import FrameResult
from perception.core.segmentation import Segmentation
from perception.wire.codec import FrameEncoder, decode_message
from perception.wire.messages import FrameMessage
from perception.wire.payload import IdMapDecoder
from perception.wire.publisher import Publisher
from perception.wire.subscriber import Subscriber

SIZES = ((640, 384), (1280, 720))
COMPRESSIONS = ("zstd", "lz4", "raw")


def street(width: int, height: int, seed: int = 7) -> Segmentation:
    rng = np.random.default_rng(seed)
    id_map = np.zeros((height, width), np.uint16)
    id_map[: height // 3] = 1  # sky
    id_map[height // 3 : height // 2] = 2  # buildings
    id_map[height // 2 :] = 3  # road
    cv2.fillPoly(id_map, [np.array([[0, height], [0, height * 3 // 5], [width // 5, height // 2]])], 4)  # sidewalk
    classes, things = [10, 11, 0, 12], [False, False, False, False]
    for k in range(25):
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


def percentile(values: list[int], q: float) -> float:
    return float(np.percentile(np.array(values), q)) / 1000.0


def bench_one(seg: Segmentation, compression: str, frames: int) -> dict[str, float]:
    h, w = seg.shape
    encoder = FrameEncoder("cam0", compression)
    encode_ns: list[int] = []
    size = 0
    for i in range(frames):
        res = FrameResult("cam0", i, i, w, h, seg, {"capture": time.monotonic_ns()})
        t0 = time.monotonic_ns()
        parts, _, _ = encoder.encode(res, epoch=1, seq=i, clock=time.monotonic_ns)
        encode_ns.append(time.monotonic_ns() - t0)
        size = len(parts[1]) + len(parts[2])
    decoder = IdMapDecoder()
    decode_ns: list[int] = []
    wire = [bytes(p) for p in parts]
    for _ in range(frames):
        t0 = time.monotonic_ns()
        msg = decode_message(wire, receive_ns=0, decoder=decoder)
        assert isinstance(msg, FrameMessage)
        _ = msg.id_map
        decode_ns.append(time.monotonic_ns() - t0)

    publish_ns: list[int] = []
    with Publisher("tcp://127.0.0.1:*", compression=compression, sndhwm=16) as pub:
        stop = threading.Event()
        received = [0]

        def drain() -> None:
            with Subscriber(pub.endpoint, topics=("frame",), eager=False, rcvhwm=16) as sub:
                while not stop.is_set():
                    if sub.recv(timeout=0.05) is not None:
                        received[0] += 1

        thread = threading.Thread(target=drain)
        thread.start()
        pub.wait_for_subscription("frame", timeout_s=10)
        for i in range(frames):
            res = FrameResult("cam0", i, i, w, h, seg, {"capture": time.monotonic_ns()})
            t0 = time.monotonic_ns()
            pub.publish_frame(res)
            publish_ns.append(time.monotonic_ns() - t0)
            time.sleep(0.002)  # a frame period of sorts: the node does not publish in bursts
        time.sleep(0.2)
        stop.set()
        thread.join()
    return {
        "encode_p50_us": percentile(encode_ns, 50),
        "encode_p90_us": percentile(encode_ns, 90),
        "publish_p50_us": percentile(publish_ns, 50),
        "publish_p90_us": percentile(publish_ns, 90),
        "decode_p50_us": percentile(decode_ns, 50),
        "bytes": float(size),
        "received": float(received[0]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {platform.system()} {platform.release()}, "
        f"python {platform.python_version()}, {args.frames} frames per row"
    )
    print(
        "| size | compression | bytes/frame | encode p50 / p90 µs | publish_frame p50 / p90 µs | "
        "decode p50 µs | received |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for width, height in SIZES:
        seg = street(width, height)
        for compression in COMPRESSIONS:
            r = bench_one(seg, compression, args.frames)
            print(
                f"| {width}x{height} ({len(seg.segments)} segs) | {compression} | {int(r['bytes']):,} | "
                f"{r['encode_p50_us']:.0f} / {r['encode_p90_us']:.0f} | "
                f"{r['publish_p50_us']:.0f} / {r['publish_p90_us']:.0f} | {r['decode_p50_us']:.0f} | "
                f"{int(r['received'])}/{args.frames} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
