"""Replay one drive lock-step through exactly the node `perception run --rate 0 --record` starts."""

from __future__ import annotations

import hashlib
import json
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perception.core.errors import PerceptionError
from perception.fleet.drives import Drive
from perception.runtime.config import DEFAULT_LAUNCH, NodeConfig, load_launch, override

RESULT_SUFFIX = ".json"  # DIR/<drive>.json: the drive's result, written after its recording is complete


@dataclass(frozen=True)
class ReplaySettings:
    out: Path
    card: Path | None = None
    launch: Path | None = None


def drive_config(drive: Drive, settings: ReplaySettings, record: Path, endpoint: str) -> NodeConfig:
    """The config `perception run [LAUNCH] --source URI --rate 0 --card CARD --record OUT --quiet` builds."""
    config = load_launch(settings.launch or DEFAULT_LAUNCH, source_given=True)
    config = override(config, "source", uri=drive.uri, rate=0.0)
    config = override(config, "model", card=settings.card.resolve() if settings.card else None)
    # each worker its own socket: nobody subscribes, the recording is the output
    config = override(config, "publish", endpoint=endpoint)
    config = override(config, "record", path=record)
    return override(config, "run", summary=False)


def replay(drive: Drive, settings: ReplaySettings) -> dict[str, Any]:
    """Run the drive; never raises for a bad drive: the result says failed, with the error."""
    from perception.runtime.node import Node

    out = settings.out
    final = out / f"{drive.name}.mcap"
    partial = out / f".{drive.name}.mcap.partial"
    endpoint = f"ipc:///tmp/perception-fleet-{os.getpid()}-{hashlib.sha256(str(final).encode()).hexdigest()[:12]}.sock"
    started = time.monotonic()
    result: dict[str, Any] = {"drive": drive.name, "uri": drive.uri}
    try:
        partial.unlink(missing_ok=True)
        node = Node.from_config(drive_config(drive, settings, partial, endpoint))
        report = node.run()
        os.replace(partial, final)  # only a finished recording takes the drive's name
        result.update(status="done", frames=int(report.counters.get("processed", 0)),
                      objects=count_objects(final), latency=report.latency,
                      counters=report.counters, sha256=file_sha256(final))
    except PerceptionError as exc:
        result.update(status="failed", error=str(exc))
    except Exception as exc:  # a corrupt file can surface as any library's error: record it, keep the fleet going
        result.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc(limit=5))
    finally:
        partial.unlink(missing_ok=True)
    result["wall_s"] = round(time.monotonic() - started, 3)
    (out / f"{drive.name}{RESULT_SUFFIX}").write_text(json.dumps(result, indent=1, default=str))
    return result


def count_objects(recording: Path) -> int:
    from perception.tools.compare import PublishedRun

    run = PublishedRun(recording)
    try:
        return sum(len(f.segments.ids) for camera in run.cameras for f in run.frames(camera))
    finally:
        run.close()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def completed(drive: Drive, out: Path) -> dict[str, Any] | None:
    """The earlier result when the drive finished and its recording is still exactly what was written."""
    result_file, recording = out / f"{drive.name}{RESULT_SUFFIX}", out / f"{drive.name}.mcap"
    try:
        result = json.loads(result_file.read_text())
    except (OSError, ValueError):
        return None
    if result.get("status") != "done" or result.get("uri") != drive.uri or not recording.is_file():
        return None
    return result if file_sha256(recording) == result.get("sha256") else None
