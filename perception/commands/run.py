"""`perception run [LAUNCH]`: start the node from a launch file, with command-line overrides."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import re
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from perception.core.errors import ConfigError
from perception.core.interrupt import raise_interrupt, unwind_on_signals
from perception.inference.engine import PRECISIONS
from perception.runtime.config import DEFAULT_LAUNCH, NodeConfig, load_launch, override, split_topics, with_cameras
from perception.runtime.latency import format_table
from perception.wire.payload import CODECS

if TYPE_CHECKING:
    from perception.runtime.node import RunReport

SWITCH_INTERVAL_S = 0.0005

log = logging.getLogger("perception.run")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the node (default: launch/default.toml)",
                       description="Run the perception node. Values given here override the launch file.")
    p.add_argument("launch", nargs="?", type=Path, default=None,
                   help=f"launch file (TOML); default {DEFAULT_LAUNCH}")
    p.add_argument("--source", action="append", metavar="[NAME=]URI",
                   help="source URI: camera:0, /dev/video0, file.mp4, images:DIR, rtsp://..., "
                        "gst:PIPELINE, synthetic:?seed=7, mcap:drive.mcap, rosbag:DIR; several cameras: "
                        "--source front=URI --source rear=URI (NAME is the topic segment)")
    p.add_argument("--rate", type=float, help="replay speed: 1 recorded timing, N times, 0 lossless")
    p.add_argument("--max-age-ms", type=float, help="drop frames older than this before inference (0 = off)")
    p.add_argument("--max-frames", type=int, help="stop after reading N frames")
    p.add_argument("--batch", type=int, help="several cameras: frames per engine call (0 = the engine's choice)")
    p.add_argument("--card", type=Path, help="model card (.toml next to the ONNX)")
    p.add_argument("--engine", help="inference backend (onnxruntime, tensorrt, ...)")
    p.add_argument("--fallback", help="with --engine tensorrt: serve on this engine (onnxruntime) while the "
                                      "TensorRT plan builds in the background, then switch")
    p.add_argument("--build-timeout", type=float, metavar="S", help="background TensorRT build: time limit (0 = none)")
    p.add_argument("--build-memory-mib", type=int, metavar="MIB",
                   help="background TensorRT build: resident memory limit (0 = none)")
    p.add_argument("--threads", type=int, help="CPU inference threads")
    p.add_argument("--spin", action=argparse.BooleanOptionalAction, default=None,
                   help="let idle inference threads spin-wait (faster alone on a core)")
    p.add_argument("--precision", choices=PRECISIONS, help="GPU backends: which ONNX variant runs")
    p.add_argument("--device", type=int, help="GPU backends: CUDA device index (default 0)")
    p.add_argument("--cache-dir", type=Path, help="GPU backends: folder of built TensorRT plans")
    p.add_argument("--endpoint", help="ZeroMQ bind endpoint, e.g. tcp://127.0.0.1:5560 or ipc:///tmp/p.sock")
    p.add_argument("--camera", help="camera name in topics (perception/<camera>/frame/)")
    p.add_argument("--compression", choices=CODECS.names(),
                   help="id map compression (lz4 needs the [lz4] extra)")
    p.add_argument("--allow-public", action="store_true", default=None,
                   help="allow binding non-loopback addresses, wire and metrics (no encryption: trusted networks only)")
    p.add_argument("--curve-keys", type=Path, metavar="DIR",
                   help="CURVE: encrypt, and serve only clients whose keys are in DIR/clients/ (perception keys DIR); "
                        "allows a non-loopback endpoint")
    p.add_argument("--metrics", metavar="HOST:PORT",
                   help="serve Prometheus /metrics and /healthz, e.g. 127.0.0.1:9108 (loopback unless --allow-public)")
    p.add_argument("--foxglove", metavar="HOST:PORT",
                   help="serve the live streams to the Foxglove app over WebSocket, e.g. 127.0.0.1:8765 "
                        "(needs the [foxglove] extra)")
    p.add_argument("--image-rate", type=float, metavar="HZ",
                   help="also publish the input frame as JPEG on the image topic, at most HZ per second (viewers)")
    p.add_argument("--wait-subscribers", type=int, metavar="N",
                   help="hold the first frame until N frame subscribers joined (lock-step regression runs)")
    p.add_argument("--lossless", action="store_true", default=None,
                   help="lock-step: wait for the slowest frame subscriber instead of dropping for it "
                        "(with --rate 0 --wait-subscribers N)")
    p.add_argument("--lossless-timeout", type=float, metavar="S",
                   help="--lossless: end the run with an error when a send waits longer (default 10)")
    p.add_argument("--record", type=Path, help="record input and published messages to this MCAP file")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --record file (never one of the run's inputs)")
    p.add_argument("--deterministic", action="store_true", default=None,
                   help="with --rate 0 on a replay: the --record file is the same bytes on every run (epoch from "
                        "the drive, no process time in it; docs/recording.md 'Lock-step determinism')")
    p.add_argument("--no-tracking", action="store_true", help="leave instance ids 0 (no tracker)")
    p.add_argument("--quiet", action="store_true", help="no summary table at exit")
    p.set_defaults(func=run, owns_start_up_signals=True)


def build_config(args: argparse.Namespace) -> NodeConfig:
    sources = list(args.source or [])
    config = load_launch(args.launch or DEFAULT_LAUNCH, source_given=bool(sources))
    named = [named_source(s) for s in sources]
    if len(sources) == 1 and named[0] is None and "topics=" in sources[0]:  # one camera per recorded topic
        config = with_cameras(config, split_topics(None, sources[0]))
    elif len(sources) == 1 and named[0] is None and not config.camera_tables:
        config = override(config, "source", uri=sources[0])
    elif sources:
        if None in named:
            unnamed = sources[named.index(None)]
            raise ConfigError(f"--source {unnamed} names no camera, and the node has several",
                              f"write --source NAME={unnamed}, e.g. front={unnamed}")
        config = with_cameras(config, [c for n in named if n is not None for c in split_topics(*n)])
    config = override(config, "source", rate=args.rate, max_age_ms=args.max_age_ms)
    if args.rate is not None or args.max_age_ms is not None:  # the command line wins over every camera's own
        config = with_cameras(config, [(c.name, c.uri) for c in config.camera_tables], rate=args.rate,
                              max_age_ms=args.max_age_ms)
    config = override(config, "model", card=args.card.resolve() if args.card else None, engine=args.engine,
                      fallback=args.fallback, build_timeout_s=args.build_timeout,
                      build_memory_mib=args.build_memory_mib, threads=args.threads, spin=args.spin,
                      precision=args.precision, device=args.device,
                      cache_dir=args.cache_dir.resolve() if args.cache_dir else None, batch=args.batch)
    config = override(config, "publish", endpoint=args.endpoint, camera=args.camera,
                      compression=args.compression, allow_public=args.allow_public,
                      wait_subscribers=args.wait_subscribers, image_rate_hz=args.image_rate,
                      curve_keys=args.curve_keys.expanduser().resolve() if args.curve_keys else None,
                      lossless=args.lossless, lossless_timeout_s=args.lossless_timeout)
    config = override(config, "ops", metrics=args.metrics, allow_public=args.allow_public, foxglove=args.foxglove)
    config = override(config, "record", path=args.record)
    config = override(config, "run", max_frames=args.max_frames, summary=False if args.quiet else None,
                      deterministic=args.deterministic)
    return override(config, "tracking", enabled=False if args.no_tracking else None)


_NAMED = re.compile(r"^([A-Za-z0-9_.-]{1,64})=(.+)$")


def named_source(text: str) -> tuple[str, str] | None:
    """`front=URI` -> ("front", "URI"); a plain URI (its '=' come after ':', '?' or '/') -> None."""
    match = _NAMED.match(text)
    return (match.group(1), match.group(2)) if match else None


def check_record_path(config: NodeConfig, overwrite: bool) -> None:
    """Refuse an existing recording unless --overwrite, and always the run's own inputs."""
    from perception.capture.inputs import source_files
    from perception.core.errors import PerceptionError
    from perception.models.card import load_card
    from perception.record.output_guard import check_output

    if config.record.path is None:
        return
    inputs = [*(f for c in config.cameras for f in source_files(c.uri)), config.model.card]
    if config.launch_file is not None:
        inputs.append(config.launch_file)
    with contextlib.suppress(PerceptionError):  # the node reports a bad card with its own message
        inputs.append(load_card(config.model.card).model_file)  # a classic card has none
    check_output(config.record.path, inputs=inputs, overwrite=overwrite)


# Imported before the node makes anything, while a signal still exits at once (core.interrupt):
# a KeyboardInterrupt raised inside a C extension's import would come out as an ImportError.
HEAVY_MODULES = ("numpy", "cv2", "zmq", "msgpack", "mcap", "onnxruntime", "perception.runtime.node",
                 "perception.wire.publisher", "perception.wire.curve", "perception.record.recorder",
                 "perception.inference.onnxruntime", "perception.capture.opencv_sources")


def run(args: argparse.Namespace) -> int:
    # debug lines mark each phase of start-up (tests send signals at them)
    log.debug("importing the node's libraries")
    for name in HEAVY_MODULES:
        with contextlib.suppress(ImportError):  # an optional one missing is reported where it is used
            importlib.import_module(name)
    from perception.runtime.node import Node

    log.debug("reading the launch file %s", args.launch or DEFAULT_LAUNCH)
    config = build_config(args)
    check_record_path(config, args.overwrite)
    unwind_on_signals()  # from here a signal unwinds: the socket, the recording and temporary files get closed
    # Engine calls release the GIL; when one returns while the output loop holds the GIL it
    # waits a whole switch interval (5 ms by default) to get it back. 0.5 ms removes that stall.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    log.debug("making the node's parts (sources, model card, socket, recording)")

    def on_signal(signum: int, frame: FrameType | None) -> None:
        node.stop()
        if node.state in ("starting", "warming_up"):
            # before the first frame (loading the model, rendering the synthetic drive) there is
            # nothing in hand to finish: unwind now, so a half-rendered cache file is removed
            raise_interrupt(signum)

    node = Node.from_config(config)
    previous: dict[int, Any] = {}
    try:  # the node says what runs once it is ready, so a start-up error is the only line printed
        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        report = node.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        node.close()  # the parts, if a signal came before run() took them over
    if config.run.summary:
        print(format_table(report.latency), file=sys.stderr)
        lines = node.summary_lines()
        if len(lines) == 1:
            print(lines[0] + f"; {published_line(report)}", file=sys.stderr)
        else:
            print("\n".join([*lines, published_line(report)]), file=sys.stderr)
    return 0


def published_line(report: RunReport) -> str:
    """What was sent, and where losses would show: the node cannot see a subscriber's own drops."""
    subscribers = report.frame_subscribers
    return (f"published {report.published} frames to {subscribers} frame subscriber{'' if subscribers == 1 else 's'} "
            f"(most at once), {report.publisher_dropped} dropped at the node's send queue; a slow subscriber "
            "loses frames in its own queue and sees them as seq gaps (perception echo counts them)")
