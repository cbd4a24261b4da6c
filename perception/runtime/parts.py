"""What a node is made of, and the factory that makes those parts from a NodeConfig (the CLI's way).

Tests and embedders build their own parts instead: a fake camera, a fast backoff, a pipeline
they already opened. The node takes ownership of the parts it is given and closes them when
its run ends.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from perception import __version__
from perception.capture.source import Source, open_source
from perception.capture.thread import Backoff
from perception.core.errors import ConfigError
from perception.core.frame import monotonic_ns
from perception.models.card import ModelCard, load_card
from perception.ops.operations import Operations, operations_for
from perception.runtime.config import NodeConfig
from perception.runtime.engine_lifecycle import EngineLifecycle, LifecycleSettings
from perception.runtime.pipeline import Pipeline

if TYPE_CHECKING:
    from perception.record.recorder import Recorder
    from perception.wire.publisher import Publisher


@dataclass
class NodeParts:
    # constructed, not yet open: the node opens it, so a failure is published as a status; a
    # multi-camera node takes {camera name: source}
    source: Source | dict[str, Source]
    open_pipeline: Callable[[], Pipeline]  # called once the node has said "starting" (plans may build for minutes)
    publisher: Publisher
    recorder: Recorder | None = None  # when given, already the publisher's tap
    ops: Operations | None = None  # metrics, systemd, the live line (None: report to no one)
    clock: Callable[[], int] = monotonic_ns  # CLOCK_MONOTONIC ns: heartbeats, stats, stalls, waits
    backoff: Backoff = field(default_factory=Backoff)  # between reconnects of a lost camera
    engine_lifecycle: EngineLifecycle | None = None  # when open_pipeline serves a fallback while TensorRT builds
    close_pipeline: bool = True  # False: the pipeline is lent (a fleet worker's) and outlives the run


def build_parts(config: NodeConfig, pipeline: Pipeline | None = None) -> NodeParts:
    """Everything a node needs, from its launch configuration; bad input raises a PerceptionError.

    pipeline: one already open (a fleet worker's, serving drive after drive), which the node
    borrows and leaves open.
    """
    from perception.wire.curve import load_server_keys
    from perception.wire.publisher import Publisher, drive_epoch

    cameras = config.cameras
    sources = {c.name: open_source(c.uri) for c in cameras}
    if config.run.deterministic:
        _check_deterministic(config, sources)
    card = pipeline.card if pipeline is not None else load_card(config.model.card)
    o = config.ops
    ops = operations_for([c.name for c in cameras], o.metrics, allow_public=o.allow_public, notify=o.notify,
                         live_status=o.live_status and config.run.summary,
                         stall_s=max(c.stall_timeout_s for c in cameras), foxglove=o.foxglove)
    with ExitStack() as stack:  # closed again on any error, a signal included, until the node has them
        recorder = _open_recorder(config, card, live=all(s.live for s in sources.values()))
        if recorder is not None:
            stack.callback(recorder.close)
        p = config.publish
        publisher = Publisher(p.endpoint, [c.name for c in cameras], compression=p.compression, sndhwm=p.sndhwm,
                              allow_public=p.allow_public, tap=recorder.record_message if recorder else None,
                              curve=load_server_keys(p.curve_keys) if p.curve_keys is not None else None,
                              lossless_timeout_s=p.lossless_timeout_s if p.lossless else None,
                              epoch=drive_epoch(",".join(c.uri for c in cameras)) if config.run.deterministic
                              else None)
        stack.callback(publisher.close)
        m, lifecycle = config.model, None
        source = sources if len(cameras) > 1 else sources[cameras[0].name]
        if pipeline is not None:
            parts = NodeParts(source=source, open_pipeline=lambda: pipeline, publisher=publisher, recorder=recorder,
                              ops=ops, close_pipeline=False)
        else:
            options = m.engine_options(len(cameras))
            if m.fallback:
                lifecycle = EngineLifecycle(card, LifecycleSettings(m.engine, m.fallback, options, m.build_limits()))
                open_pipeline = lifecycle.open_pipeline
            else:
                open_pipeline = functools.partial(Pipeline.from_card, card, m.engine, options)
            parts = NodeParts(source=source, open_pipeline=open_pipeline, publisher=publisher, recorder=recorder,
                              ops=ops, engine_lifecycle=lifecycle)
        stack.pop_all()  # from here the node owns them
    return parts


def open_pipeline(config: NodeConfig) -> Pipeline:
    """The node's pipeline of this configuration, opened now (a fleet worker opens it once)."""
    m = config.model
    return Pipeline.from_card(load_card(m.card), m.engine, m.engine_options(len(config.cameras)))


# where this run's outputs go and how it reports: not part of what a deterministic run computes,
# so left out of its recording (a fleet run and `perception run` then write the same bytes)
_RUN_LOCAL = ("publish.endpoint", "record.path", "run.summary", "ops.")


def _check_deterministic(config: NodeConfig, sources: dict[str, Source]) -> None:
    if any(c.rate != 0 for c in config.cameras):
        raise ConfigError("a deterministic run replays lock-step, but the source rate is not 0",
                          "pass --rate 0 (or [source] rate = 0)")
    live = [name for name, source in sources.items() if source.live]
    if live:
        raise ConfigError(f"a deterministic run needs replays, and camera {live[0]} is live",
                          "replay a recording (mcap:, rosbag:, synthetic:, a video file), or drop --deterministic")
    if config.model.fallback:
        raise ConfigError("a deterministic run cannot switch engines mid-run ([model] fallback)",
                          "build the TensorRT plan first (perception build-engine), or drop the fallback")


def _open_recorder(config: NodeConfig, card: ModelCard, live: bool) -> Recorder | None:
    rec = config.record
    if rec.path is None:
        return None
    from perception.record.recorder import Recorder

    launch = _flatten(config.to_dict())
    if config.run.deterministic:
        launch = {k: v for k, v in launch.items() if not k.startswith(_RUN_LOCAL)}
    metadata = {"launch": launch, "versions": {"perception": __version__}, "model_card": _flatten(card.to_dict())}
    return Recorder(rec.path, image_format=rec.image_format, metadata=metadata,
                    cameras=[c.name for c in config.cameras], live_clock=live, deterministic=config.run.deterministic)


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """MCAP metadata records are str -> str maps."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = str(value)
    return out
