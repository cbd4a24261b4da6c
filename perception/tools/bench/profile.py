"""Where the node's time goes: py-spy samples of `perception run --rate 0`, bucketed by pipeline stage.

py-spy (the [bench] extra) samples every thread of the node from outside, so nothing in the node
is instrumented. Samples of start-up (imports, model load) and of threads waiting on a queue or
condition are counted apart; the rest are attributed to the first stage function found on the
stack, and each bucket is reported as a share of the node's busy samples.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

# (bucket, function names that put a sample in it), first match from the top of the list wins
BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("inference (ONNX Runtime)", ("Session.run",)),
    ("decode", ("Pipeline.decode",)),
    ("tracking", ("ByteTracker.update", "IouTracker.update")),
    ("encode + publish", ("Publisher.publish_frame",)),
    ("capture: preprocess", ("Pipeline.prepare",)),
    ("capture: read + decode the frame", ("CaptureThread._loop",)),
    ("output loop: status, stats, bookkeeping", ("Node._work",)),
)
IDLE = ("Condition.wait", "Event.wait", "Queue.get", "FrameSlot.put", "Doorbell.wait")
RUNNING = ("Node._work", "CaptureThread.run", "InferenceThread.run")


def function_names(stack: str) -> list[str]:
    """py-spy raw frames "func (file.py:line)" -> ["func", ...], outermost first."""
    return [frame.split(" (", 1)[0] for frame in stack.split(";")]


def bucket_of(names: list[str]) -> str:
    if not any(n in RUNNING for n in names):
        return "start-up and shutdown"
    for bucket, functions in BUCKETS:
        for i, name in enumerate(names):
            if name in functions:
                return "waiting" if any(n in IDLE for n in names[i + 1:]) else bucket
    return "waiting" if any(n in IDLE for n in names) else "other"


def summarize(raw: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            counts[bucket_of(function_names(stack))] += int(n)
    return counts


def where_time_goes(source: str, frames: int, rate_hz: int = 200) -> list[dict[str, object]]:
    """Rows: bucket, samples and share of the node's busy samples (start-up and waits excluded)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).is_file():
        return [{"stage": "py-spy not installed ([bench] extra): no profile"}]
    with tempfile.TemporaryDirectory() as where:
        out = Path(where) / "samples.txt"
        node = [sys.executable, "-m", "perception", "run", "--source", source, "--rate", "0",
                "--max-frames", str(frames), "--endpoint", f"ipc://{where}/profile.sock", "--quiet"]
        done = subprocess.run([spy, "record", "--threads", "-r", str(rate_hz), "-f", "raw", "-o", str(out), "--",
                               *node], check=False, capture_output=True, text=True, timeout=600)
        if done.returncode != 0 or not out.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return [{"stage": f"py-spy could not sample the node ({tail[0]})"}]
        counts = summarize(out.read_text())
    busy = sum(n for bucket, n in counts.items() if bucket not in ("waiting", "start-up and shutdown"))
    rows: list[dict[str, object]] = []
    for bucket, n in counts.most_common():
        share = f"{100 * n / busy:.1f}%" if busy and bucket not in ("waiting", "start-up and shutdown") else ""
        rows.append({"stage": bucket, "samples": n, "share of busy": share})
    return rows
