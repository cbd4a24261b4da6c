"""Memory over a long run: the node must not creep.

Replays the bundled drive in a loop, lock-step, through the whole node (publishing with no
subscriber, so ZeroMQ discards the messages) and samples this process's resident memory every
--every frames. Bounded by construction (fixed-size slot,
hand-off queue, latency window, tracker cap, ZeroMQ high-water marks), so RSS should flatten
after warm-up.

    python bench/soak_bench.py [--frames 6000] [--every 500]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

from perception.commands.run import SWITCH_INTERVAL_S
from perception.runtime.config import load_launch, override
from perception.runtime.node import Node
from perception.synth.drivefile import cached_drive


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=6000)
    parser.add_argument("--every", type=int, default=500)
    args = parser.parse_args()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    drive = cached_drive(seed=7, frames=300, fps=10.0)
    config = load_launch(Path(__file__).resolve().parent.parent / "launch" / "default.toml")
    config = override(config, "source", uri=f"mcap:{drive}?loop=1", rate=0.0)
    config = override(config, "publish", endpoint=f"ipc://{tempfile.mkdtemp()}/soak.sock")
    config = override(config, "run", max_frames=args.frames, summary=False)
    node = Node.from_config(config)
    samples: list[tuple[int, float]] = []
    done = threading.Event()

    def sample() -> None:
        next_at = 0
        while not done.is_set():
            processed = node.processed
            if processed >= next_at:
                samples.append((processed, rss_mib()))
                next_at += args.every
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.monotonic()
    report = node.run()
    done.set()
    sampler.join()
    samples.append((report.counters["processed"], rss_mib()))
    print(f"{report.counters['processed']} frames in {time.monotonic() - start:.0f} s; RSS by frames processed:")
    for frames, mib in samples:
        print(f"  {frames:>7}  {mib:7.1f} MiB")
    warm = [m for f, m in samples if f >= 1000]
    if len(warm) >= 2:
        print(f"growth after 1000 frames: {warm[-1] - warm[0]:+.1f} MiB over {samples[-1][0] - 1000} frames")


if __name__ == "__main__":
    main()
