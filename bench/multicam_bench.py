"""Several cameras: one multi-camera node vs one single-camera process per camera vs the bare engine.

Every camera replays the bundled synthetic drive at recorded timing (10 fps, looped, latest-wins
like a camera). Contenders run one after another, alternating, within one run, so load from
other processes on the machine hits them alike; compare ratios, not absolute figures. A
subscriber in this process hears every frame and takes capture -> publish from the frame's
own CLOCK_MONOTONIC stamps. CPU is the node processes' user + system time over the window
divided by the frames published in it; memory is RSS and PSS (shared pages split between
the processes that map them, so N processes are not charged N times for one library).

    python bench/multicam_bench.py [--cameras 4] [--seconds 20] [--rounds 2] [--scaling 1,2,4,8]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import msgpack
import numpy as np
import zmq

from perception.inference.engine import EngineOptions, open_engine
from perception.models.card import load_card
from perception.runtime.config import DEFAULT_CARD
from perception.synth.drivefile import cached_drive

WARMUP_S = 4.0


@dataclass
class Result:
    name: str
    fps: float
    p50_ms: dict[str, float]
    p99_ms: dict[str, float]
    cpu_ms_per_frame: float
    rss_mib: float
    pss_mib: float

    def row(self) -> str:
        p50 = max(self.p50_ms.values(), default=0.0)
        p99 = max(self.p99_ms.values(), default=0.0)
        return (f"{self.name:<28} {self.fps:7.1f} fps  worst-camera p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  "
                f"CPU {self.cpu_ms_per_frame:6.1f} ms/frame  RSS {self.rss_mib:6.0f} MiB  PSS {self.pss_mib:6.0f} MiB")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _memory_mib(pid: int) -> tuple[float, float]:
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        values[key] = int(value.split()[0])
    return values["Rss"] / 1024, values["Pss"] / 1024


class Listener:
    """One SUB on every camera of every process: counts frames and their capture -> publish."""

    def __init__(self, endpoints: list[str]) -> None:
        self._context = zmq.Context()
        self._sub = self._context.socket(zmq.SUB)
        self._sub.rcvhwm = 100_000
        for endpoint in endpoints:
            self._sub.connect(endpoint)
        self._sub.subscribe(b"perception/")
        self.counting = False
        self.frames: dict[str, int] = defaultdict(int)
        self.seen: set[str] = set()
        self.latency: dict[str, list[int]] = defaultdict(list)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._done.is_set():
            if not self._sub.poll(100):
                continue
            parts = self._sub.recv_multipart()
            if not parts[0].endswith(b"/frame/"):
                continue
            header = msgpack.unpackb(parts[1])
            camera = f"{parts[0].decode()}"
            self.seen.add(camera)
            if self.counting:
                self.frames[camera] += 1
                stamps = header["stamps"]
                self.latency[camera].append(stamps["publish"] - stamps["capture"])

    def close(self) -> None:
        self._done.set()
        self._thread.join(5)
        self._sub.close(linger=0)
        self._context.term()


def _drive() -> str:
    return f"mcap:{cached_drive(seed=7, frames=300, fps=10.0)}?loop=1"


def measure(name: str, commands: list[list[str]], endpoints: list[str], cameras: int, seconds: float) -> Result:
    listener = Listener(endpoints)
    processes = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for c in commands]
    try:
        deadline = time.monotonic() + 120
        while len(listener.seen) < cameras:  # every camera is publishing
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                errors = b"".join(p.stderr.read() if p.stderr and p.poll() is not None else b"" for p in processes)
                raise SystemExit(f"{name}: not every camera started ({sorted(listener.seen)}): {errors.decode()}")
            time.sleep(0.1)
        time.sleep(WARMUP_S)
        cpu0 = sum(_cpu_s(p.pid) for p in processes)
        listener.counting = True
        start = time.monotonic()
        time.sleep(seconds)
        listener.counting = False
        elapsed = time.monotonic() - start
        cpu = sum(_cpu_s(p.pid) for p in processes) - cpu0
        memory = [_memory_mib(p.pid) for p in processes]
    finally:
        for p in processes:
            p.send_signal(signal.SIGINT)
        for p in processes:
            p.wait(30)
        listener.close()
    total = sum(listener.frames.values())
    p50 = {c: float(np.percentile(v, 50)) / 1e6 for c, v in listener.latency.items()}
    p99 = {c: float(np.percentile(v, 99)) / 1e6 for c, v in listener.latency.items()}
    return Result(name, total / elapsed, p50, p99, 1000 * cpu / max(total, 1), sum(m[0] for m in memory),
                  sum(m[1] for m in memory))


def _node(sources: list[tuple[str, str]], endpoint: str, threads: int, batch: int = 0) -> list[str]:
    command = [sys.executable, "-m", "perception", "run", "--endpoint", endpoint, "--rate", "1", "--quiet",
               "--threads", str(threads), "--batch", str(batch)]
    for name, uri in sources:
        command += ["--source", f"{name}={uri}" if len(sources) > 1 else uri]
        if len(sources) == 1:
            command += ["--camera", name]
    return command


def multi_node(cameras: int, seconds: float, threads: int, folder: str, batch: int = 0) -> Result:
    endpoint = f"ipc://{folder}/multi.sock"
    sources = [(f"cam{i}", _drive()) for i in range(cameras)]
    name = f"1 node, {cameras} cameras" + (f", batch {batch}" if batch else "")
    return measure(name, [_node(sources, endpoint, threads, batch)], [endpoint], cameras, seconds)


def separate_processes(cameras: int, seconds: float, threads: int, folder: str) -> Result:
    endpoints = [f"ipc://{folder}/single{i}.sock" for i in range(cameras)]
    commands = [_node([(f"cam{i}", _drive())], endpoints[i], threads) for i in range(cameras)]
    return measure(f"{cameras} processes, 1 camera each", commands, endpoints, cameras, seconds)


def bare_engine(batch: int, threads: int, seconds: float) -> float:
    card = load_card(DEFAULT_CARD)
    engine = open_engine("onnxruntime", card.model_file, EngineOptions(threads=threads))
    spec = card.input
    x = np.random.default_rng(0).random((batch, 3, spec.height, spec.width), dtype=np.float32)
    for _ in range(3):
        engine.infer({spec.name: x})
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        engine.infer({spec.name: x})
        n += batch
    elapsed = time.perf_counter() - start
    engine.close()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads of every node process")
    parser.add_argument("--scaling", default="1,2,4,8", help="camera counts of the multi-camera node ('' = skip)")
    args = parser.parse_args()
    folder = tempfile.mkdtemp()
    _drive()  # rendered once, before any timing
    offered = args.cameras * 10.0
    print(f"{args.cameras} cameras x 10 fps = {offered:.0f} fps offered; {args.seconds:g} s windows; "
          f"ORT threads {args.threads}; {os.cpu_count()} CPUs")
    for round_ in range(args.rounds):
        multi = multi_node(args.cameras, args.seconds, args.threads, folder)
        procs = separate_processes(args.cameras, args.seconds, args.threads, folder)
        batched = multi_node(args.cameras, args.seconds, args.threads, folder, batch=args.cameras)
        bare = bare_engine(args.cameras, args.threads, min(args.seconds, 10.0))
        bare_one = bare_engine(1, args.threads, min(args.seconds, 10.0))
        print(f"round {round_ + 1}")
        print("  " + multi.row())
        print("  " + procs.row())
        print("  " + batched.row())
        print(f"  {'bare engine, batches of ' + str(args.cameras):<28} {bare:7.1f} fps")
        print(f"  {'bare engine, batches of 1':<28} {bare_one:7.1f} fps")
        for camera in sorted(multi.p99_ms):
            print(f"    {camera}: node p50 {multi.p50_ms[camera]:6.1f} p99 {multi.p99_ms[camera]:6.1f} ms | "
                  f"process p50 {procs.p50_ms.get(camera, 0):6.1f} p99 {procs.p99_ms.get(camera, 0):6.1f} ms")
        p99 = max(multi.p99_ms.values()) / max(procs.p99_ms.values())
        cpu = multi.cpu_ms_per_frame / procs.cpu_ms_per_frame
        print(f"  ratios node/processes: fps {multi.fps / procs.fps:.2f}, worst p99 {p99:.2f}, "
              f"PSS {multi.pss_mib / procs.pss_mib:.2f}, RSS {multi.rss_mib / procs.rss_mib:.2f}, CPU/frame {cpu:.2f}")
    if args.scaling:
        print("scaling of one node")
        for n in (int(c) for c in args.scaling.split(",")):
            result = multi_node(n, args.seconds / 2, args.threads, folder)
            print(f"  {n} cameras ({n * 10} fps offered): {result.row()}")


if __name__ == "__main__":
    main()
