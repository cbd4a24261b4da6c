"""Several cameras: one multi-camera node vs one single-camera process per camera vs the bare engine.

Every camera replays the bundled synthetic drive at recorded timing (10 fps, looped, latest-wins
like a camera). Contenders run one after another, alternating, within one run, so load from
other processes on the machine hits them alike; compare ratios, not absolute figures. A
subscriber in this process hears every frame and takes capture -> publish from the frame's
own CLOCK_MONOTONIC stamps. CPU is the node processes' user + system time over the window
divided by the frames published in it; memory is RSS and PSS (shared pages split between
the processes that map them, so N processes are not charged N times for one library).

    python bench/multicam_bench.py [--cameras 4] [--seconds 20] [--rounds 2] [--scaling 1,2,4,8]
    python bench/multicam_bench.py --profile 20     # where the node's time goes (py-spy, the [dev] extra)
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
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
    name = f"1 node, {cameras} cameras, {threads} thread(s)" + (f", batch {batch}" if batch else "")
    return measure(name, [_node(sources, endpoint, threads, batch)], [endpoint], cameras, seconds)


def separate_processes(cameras: int, seconds: float, threads: int, folder: str) -> Result:
    endpoints = [f"ipc://{folder}/single{i}.sock" for i in range(cameras)]
    commands = [_node([(f"cam{i}", _drive())], endpoints[i], threads) for i in range(cameras)]
    return measure(f"{cameras} processes, {threads} thread(s)", commands, endpoints, cameras, seconds)


def bare_engine(batch: int, threads: int, seconds: float) -> tuple[float, float]:
    """Frames per second and CPU ms per frame (process CPU: every ONNX Runtime thread) of session.run in a loop.

    CPU per frame does not depend on how much of a shared host the process got, so it is the
    figure that says whether a batch is cheaper per frame than single frames."""
    card = load_card(DEFAULT_CARD)
    engine = open_engine("onnxruntime", card.model_file, EngineOptions(threads=threads))
    spec = card.input
    x = np.random.default_rng(0).random((batch, 3, spec.height, spec.width), dtype=np.float32)
    for _ in range(3):
        engine.infer({spec.name: x})
    n, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        engine.infer({spec.name: x})
        n += batch
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    engine.close()
    return n / elapsed, 1000 * cpu / n


# what a sampled thread is doing when its innermost frame is one of these: waiting, not working
_WAITING = ("wait", "poll", "sleep", "select", "get (queue.py")
# the first of these on a stack names what the thread works on
_WORK = ("Session.run", "Pipeline.decode", "ByteTracker.update", "Publisher.publish_frame", "Publisher.service",
         "Pipeline.prepare", "compressed_to_bgr", "ImagePreview.encode", "Publisher.publish_stats")


def profile(cameras: int, seconds: float, threads: int, folder: str, extra: tuple[str, ...] = (),
            batch: int = 0) -> None:
    """py-spy samples every Python thread of a multi-camera node at 100 Hz; per thread: the share of
    the wall time it worked (not waited) and on what. ONNX Runtime's own threads are native: their
    work shows as the inference thread's Session.run."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("py-spy is not installed: pip install -e '.[dev]'")
    out = Path(folder) / "profile.txt"
    endpoint = f"ipc://{folder}/profiled.sock"
    listener = Listener([endpoint])
    node = subprocess.Popen(_node([(f"cam{i}", _drive()) for i in range(cameras)], endpoint, threads, batch),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while len(listener.seen) < cameras and node.poll() is None:  # sampled once every camera publishes
            time.sleep(0.1)
        time.sleep(WARMUP_S)
        subprocess.run([spy, "record", "-r", "100", "--threads", *extra, "-f", "raw", "-o", str(out), "-d",
                        str(int(seconds)), "--pid", str(node.pid)], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    finally:
        node.send_signal(signal.SIGINT)
        node.wait(30)
        listener.close()
    work: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in out.read_text().splitlines():
        stack, count = line.rsplit(" ", 1)
        frames = stack.split(";")
        thread = frames[0].rsplit(": ", 1)[-1] if ": " in frames[0] else "other"
        names = [f.split(" (")[0] for f in frames[1:]]
        waiting = any(w in frames[-1].lower() for w in _WAITING)
        work[thread]["(waiting)" if waiting else next((n for n in names if n in _WORK), "other")] += int(count)
    wall = 100 * seconds
    what = "held the GIL" if "--gil" in extra else "worked (held or waited for the GIL, or ran native code)"
    print(f"profile of one node, {cameras} cameras, {threads} ONNX Runtime thread(s), batch {batch}, {seconds:g} s "
          f"(load average {os.getloadavg()[0]:.1f}); % of wall time each thread {what}, and on what:")
    for thread in sorted(work, key=lambda t: -sum(work[t].values())):
        busy = {k: v for k, v in work[thread].items() if k != "(waiting)"}
        top = ", ".join(f"{k} {100 * v / wall:.0f}%" for k, v in sorted(busy.items(), key=lambda kv: -kv[1])[:5])
        print(f"  {thread:<14} {100 * sum(busy.values()) / wall:5.1f}%  {top}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads of every node process")
    parser.add_argument("--scaling", default="1,2,4,8", help="camera counts of the multi-camera node ('' = skip)")
    parser.add_argument("--profile", type=float, default=0.0, metavar="SECONDS",
                        help="only profile the multi-camera node for this long (py-spy)")
    parser.add_argument("--batch", type=int, default=0, help="--profile: the node's --batch (0 = its default)")
    args = parser.parse_args()
    folder = tempfile.mkdtemp()
    _drive()  # rendered once, before any timing
    if args.profile:
        profile(args.cameras, args.profile, args.threads, folder, batch=args.batch)
        profile(args.cameras, args.profile, args.threads, folder, ("--gil",), args.batch)  # who holds the GIL
        return
    offered = args.cameras * 10.0
    print(f"{args.cameras} cameras x 10 fps = {offered:.0f} fps offered; {args.seconds:g} s windows; "
          f"ORT threads {args.threads}; {os.cpu_count()} CPUs")
    for round_ in range(args.rounds):
        print(f"round {round_ + 1} (load average {os.getloadavg()[0]:.1f})")
        multi = multi_node(args.cameras, args.seconds, args.threads, folder)
        print("  " + multi.row(), flush=True)
        procs = separate_processes(args.cameras, args.seconds, args.threads, folder)
        print("  " + procs.row(), flush=True)
        batched = multi_node(args.cameras, args.seconds, args.threads, folder, batch=args.cameras)
        print("  " + batched.row(), flush=True)
        if args.threads != 1:  # one ONNX Runtime thread: no intra-op synchronisation, per-frame CPU is lowest
            print("  " + multi_node(args.cameras, args.seconds, 1, folder).row(), flush=True)
            print("  " + separate_processes(args.cameras, args.seconds, 1, folder).row(), flush=True)
        for threads in sorted({args.threads, 1}, reverse=True):
            for batch in (args.cameras, 1):
                fps, cpu = bare_engine(batch, threads, min(args.seconds, 8.0))
                print(f"  {f'bare engine, {threads} thread(s), batches of {batch}':<40} {fps:7.1f} fps  "
                      f"CPU {cpu:6.1f} ms/frame", flush=True)
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
            print(f"  {n} cameras ({n * 10} fps offered, load {os.getloadavg()[0]:.1f}): {result.row()}", flush=True)


if __name__ == "__main__":
    main()
