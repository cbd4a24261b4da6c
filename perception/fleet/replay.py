"""One worker replaying drives lock-step through the node `perception run --rate 0 --record` starts.

A worker opens the engine once, on its first drive, and lends it to a fresh node per drive
(runtime.parts.build_parts(config, pipeline)): the node's own preprocess, engine, decoder,
tracker and encoder, with everything that belongs to one drive new each time (tracker, publisher
epoch and sequence numbers, counters, recorder); the engine is reset between drives.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perception.core.errors import PerceptionError
from perception.fleet.drives import Drive
from perception.runtime.config import DEFAULT_LAUNCH, NodeConfig, load_launch, override, split_topics, with_cameras

RESULT_SUFFIX = ".json"  # DIR/<drive>.json: the drive's result, written after its recording is complete

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplaySettings:
    out: Path
    card: Path | None = None
    launch: Path | None = None


def drive_config(drive: Drive, settings: ReplaySettings, record: Path, endpoint: str) -> NodeConfig:
    """The config `perception run [LAUNCH] --source URI --rate 0 --card CARD --record OUT --deterministic
    --quiet` builds."""
    config = load_launch(settings.launch or DEFAULT_LAUNCH, source_given=True)
    if "topics=" in drive.uri:  # one camera per recorded topic, as `perception run` makes them
        config = with_cameras(config, split_topics(None, drive.uri))
    elif not config.camera_tables:
        config = override(config, "source", uri=drive.uri)
    config = override(config, "source", rate=0.0)
    config = with_cameras(config, [(c.name, c.uri) for c in config.camera_tables], rate=0.0)
    config = override(config, "model", card=settings.card.resolve() if settings.card else None)
    # each worker its own socket: nobody subscribes, the recording is the output
    config = override(config, "publish", endpoint=endpoint)
    config = override(config, "record", path=record)
    return override(config, "run", summary=False, deterministic=True)


class DriveWorker:
    """What a Ray actor or a worker process holds: the engine, opened on the first drive."""

    def __init__(self, settings: ReplaySettings) -> None:
        self.settings = settings
        self.pipeline: Any = None
        self.engines_opened = 0
        self.drives = 0

    def replay(self, drive: Drive) -> dict[str, Any]:
        """Run the drive; never raises for a bad drive: the result says failed, with the error."""
        from perception.runtime.node import Node
        from perception.runtime.parts import build_parts, open_pipeline

        out = self.settings.out
        final, partial = out / f"{drive.name}.mcap", out / f".{drive.name}.mcap.partial"
        endpoint = (f"ipc:///tmp/perception-fleet-{os.getpid()}-"
                    f"{hashlib.sha256(str(final).encode()).hexdigest()[:12]}.sock")
        started = time.monotonic()
        self.drives += 1
        result: dict[str, Any] = {"drive": drive.name, "uri": drive.uri}
        try:
            partial.unlink(missing_ok=True)
            config = drive_config(drive, self.settings, partial, endpoint)
            if self.pipeline is None:
                self.pipeline = open_pipeline(config)
                self.engines_opened += 1
                log.info("worker %d opened engine %s", os.getpid(), self.pipeline.engine.name)
            node = Node(config, build_parts(config, self.pipeline))
            report = node.run()
            os.replace(partial, final)  # only a finished recording takes the drive's name
            result.update(status="done", frames=int(report.counters.get("processed", 0)),
                          objects=count_objects(final), latency=report.latency, counters=report.counters)
            truth = getattr(node.cameras[0].source, "path", None) if len(node.cameras) == 1 else None
            result["score"] = score(final, truth, self.pipeline.card)
            result["sha256"] = file_sha256(final)
        except PerceptionError as exc:
            result.update(status="failed", error=str(exc))
        except Exception as exc:  # a corrupt file can surface as any library's error: record it, keep the fleet going
            result.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                          traceback=traceback.format_exc(limit=5))
        finally:
            partial.unlink(missing_ok=True)
        result["wall_s"] = round(time.monotonic() - started, 3)
        result["worker"] = {"pid": os.getpid(), "engines_opened": self.engines_opened, "drives": self.drives}
        write_result(out, result)
        return result

    def close(self) -> None:
        if self.pipeline is not None:
            self.pipeline.close()
            self.pipeline = None


def score(recording: Path, truth_file: Any, card: Any) -> dict[str, Any] | None:
    """PQ against the drive's ground truth, for drives that carry one (synthetic drives, perception synth
    files). Ground truth that cannot be scored (another size, unknown classes) is noted; the drive is done."""
    if not isinstance(truth_file, Path) or truth_file.suffix.lower() != ".mcap" or not truth_file.is_file():
        return None
    from perception.fleet.scoring import score_recording

    try:
        return score_recording(recording, truth_file, card)
    except PerceptionError as exc:
        return {"error": f"ground truth not scored: {exc}"}


def failed(drive: Drive, out: Path, error: str) -> dict[str, Any]:
    """The result of a drive that could not finish where no worker could say so (its worker died)."""
    result = {"drive": drive.name, "uri": drive.uri, "status": "failed", "error": error}
    write_result(out, result)
    return result


def write_result(out: Path, result: dict[str, Any]) -> None:
    (out / f"{result['drive']}{RESULT_SUFFIX}").write_text(json.dumps(result, indent=1, default=str))


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
