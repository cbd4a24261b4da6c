"""A TensorRT plan build in its own process, bounded in time and memory.

The node must keep publishing while TensorRT builds for minutes, and a builder that crashes
(a segfault in a plugin, the OOM killer) must not take the node with it. So the build runs
as `python -m perception.inference.plan_builder JOB` with JOB as JSON: the child computes the
plan key itself, builds through the plan cache (lock, atomic write, timing cache) and reports
on stdout as JSON lines: {"event": "progress", "fraction": f}, then "done" or "failed" with
cause and fix. TensorRT's own lines go to a log file next to the plan.

The parent (BuilderProcess) kills the child when it runs past its timeout or its resident
memory passes the limit (read from /proc, so Linux only). An address-space rlimit would be
simpler but breaks CUDA, which reserves far more virtual memory than it uses.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from perception.core.errors import PerceptionError
from perception.core.queues import drain

POLL_S = 0.1


@dataclass(frozen=True)
class BuildJob:
    onnx: str  # the precision variant to build from
    precision: str
    device: int
    cache_dir: str
    key_digest: str  # the parent's key: the child refuses to build anything else
    workspace_mib: int = 1024
    optimization_level: int = 3
    max_batch: int = 1  # the profile's top: one frame per camera the node batches

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> BuildJob:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class BuildOutcome:
    ok: bool
    cause: str = ""
    fix: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class BuildLimits:
    timeout_s: float = 1800.0  # 0 = none
    memory_mib: int = 0  # resident memory of the builder; 0 = none

    def as_record(self) -> dict[str, float]:
        return {"timeout_s": self.timeout_s, "memory_mib": float(self.memory_mib)}


class BuilderProcess:
    """Runs one BuildJob in a child process; run() blocks until it ends, cancel() from any thread."""

    def __init__(self, job: BuildJob, limits: BuildLimits, log_path: Path,
                 on_progress: Callable[[float], None] = lambda fraction: None) -> None:
        self.job, self.limits, self.log_path = job, limits, log_path
        self._on_progress = on_progress
        self._cancelled = threading.Event()
        self._events: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()

    def cancel(self) -> None:
        self._cancelled.set()

    def run(self) -> BuildOutcome:
        started = time.monotonic()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            child = subprocess.Popen([sys.executable, "-m", "perception.inference.plan_builder", self.job.to_json()],
                                     stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                                     start_new_session=True)  # a Ctrl-C for the node is not the builder's
            assert child.stdout is not None
            reader = threading.Thread(target=_read_events, args=(child.stdout, self._events), daemon=True,
                                      name="plan-builder-reader")
            reader.start()
            try:
                outcome = self._supervise(child, started)
            finally:
                if child.poll() is None:
                    _kill(child)
                reader.join(timeout=5.0)
        return outcome

    def _supervise(self, child: subprocess.Popen[bytes], started: float) -> BuildOutcome:
        limits, final = self.limits, None
        while True:
            final = self._drain() or final
            code = child.poll()
            if code is not None:
                with contextlib.suppress(queue.Empty):
                    while (event := self._events.get(timeout=1.0)) is not None:  # stdout's tail
                        final = self._handle(event) or final
                return self._ended(code, final, time.monotonic() - started)
            took = time.monotonic() - started
            if self._cancelled.is_set():
                _kill(child)
                return BuildOutcome(False, "the plan build was cancelled", "", took)
            if limits.timeout_s and took > limits.timeout_s:
                _kill(child)
                return BuildOutcome(False, f"the TensorRT plan build did not finish within {limits.timeout_s:g} s",
                                    "raise [model] build_timeout_s (--build-timeout), or build the plan ahead of "
                                    "time with `perception build-engine`", took)
            rss = resident_mib(child.pid)
            if limits.memory_mib and rss is not None and rss > limits.memory_mib:
                _kill(child)
                return BuildOutcome(False, f"the TensorRT builder used {rss:.0f} MiB of memory, over its limit of "
                                    f"{limits.memory_mib} MiB",
                                    "raise [model] build_memory_mib (--build-memory-mib), or build the plan on a "
                                    "bigger machine with `perception build-engine`", took)
            time.sleep(POLL_S)

    def _drain(self) -> dict[str, Any] | None:
        final = None
        for event in drain(self._events):
            if event is not None:
                final = self._handle(event) or final
        return final

    def _handle(self, event: dict[str, Any]) -> dict[str, Any] | None:
        if event.get("event") == "progress":
            self._on_progress(float(event.get("fraction", 0.0)))
            return None
        return event if event.get("event") in ("done", "failed") else None

    def _ended(self, code: int, final: dict[str, Any] | None, took: float) -> BuildOutcome:
        if final is not None and final["event"] == "done" and code == 0:
            return BuildOutcome(True, seconds=took)
        if final is not None and final["event"] == "failed":
            return BuildOutcome(False, str(final.get("cause")), str(final.get("fix")), took)
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        return BuildOutcome(False, f"the TensorRT builder process {how} (its log: {self.log_path})",
                            "check the log and `perception doctor` (driver, TensorRT), then `perception engines "
                            "prune --failures` to let the node try again", took)


def _read_events(stream: IO[bytes], into: queue.SimpleQueue[dict[str, Any] | None]) -> None:
    try:
        for line in stream:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    into.put(event)
    finally:
        into.put(None)


def _kill(child: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait(timeout=10.0)


def resident_mib(pid: int) -> float | None:
    """Resident memory of a process from /proc (None where there is no /proc)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


# ---------------------------------------------------------------- the child


def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def build_in_child(job: BuildJob) -> None:
    """Build the job's plan into the cache; raises PerceptionError with cause and fix."""
    from perception.inference.cuda import CudaDevice
    from perception.inference.errors import EngineError
    from perception.inference.plan_cache import PlanCache
    from perception.inference.tensorrt import plan_key
    from perception.inference.trt_build import BuildOptions, build_plan, load_tensorrt, timing_cache_path

    trt = load_tensorrt()
    onnx_bytes = Path(job.onnx).read_bytes()
    options = BuildOptions(workspace_mib=job.workspace_mib, optimization_level=job.optimization_level,
                           max_batch=job.max_batch)
    cache = PlanCache(Path(job.cache_dir))
    device = CudaDevice(job.device)
    try:
        key, shapes = plan_key(trt, device.name, device.compute_capability, onnx_bytes, job.precision, options)
        if key.digest() != job.key_digest:
            raise EngineError("the builder process sees another TensorRT or GPU than the node",
                              "run the node and its builder in the same environment (same CUDA_VISIBLE_DEVICES)")
        with device.active():
            cache.get_or_build(key, lambda: build_plan(trt, onnx_bytes, shapes, options,
                                                       timing_cache_path(cache.root, key), progress=sys.stderr,
                                                       on_fraction=lambda f: _emit({"event": "progress",
                                                                                    "fraction": f})),
                               source=job.onnx)
    finally:
        device.close()


def main(argv: list[str]) -> int:
    job = BuildJob.from_json(argv[1])
    try:
        build_in_child(job)
    except PerceptionError as exc:
        _emit({"event": "failed", "cause": exc.problem, "fix": exc.fix})
        return 1
    except MemoryError:
        _emit({"event": "failed", "cause": "the TensorRT builder ran out of host memory",
               "fix": "raise [model] build_memory_mib, or build the plan on a bigger machine with "
                      "`perception build-engine`"})
        return 1
    _emit({"event": "done"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
