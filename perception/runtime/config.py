"""Launch files (TOML) -> a typed, immutable NodeConfig; command-line overrides on top.

Unknown sections or keys and wrong types are refused with the file, the key and the fix.
Relative input paths in a launch file (the model card) are relative to the launch file's
folder; output paths (the recording) are relative to the working directory.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import types
import typing
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perception.core.errors import ConfigError
from perception.core.tomlcompat import read_toml
from perception.inference.engine import PRECISIONS, EngineOptions
from perception.inference.plan_builder import BuildLimits
from perception.tracking.base import TRACKERS, settings_type
from perception.wire.errors import WireError
from perception.wire.schema import check_camera


def _bundle_root() -> Path:
    """Where launch/ and engines/ are: the checkout (editable install) or the wheel's data files."""
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "launch" / "default.toml").is_file():
        return checkout
    return Path(sys.prefix) / "share" / "perception-node"


BUNDLE_ROOT = _bundle_root()
DEFAULT_LAUNCH = BUNDLE_ROOT / "launch" / "default.toml"
DEFAULT_CARD = BUNDLE_ROOT / "engines" / "panoptic-tiny.toml"
DEFAULT_ENDPOINT = "tcp://127.0.0.1:5560"


@dataclass(frozen=True)
class SourceConfig:
    uri: str = "synthetic:?seed=7&frames=300&fps=10"
    rate: float = 1.0  # replays: 1 = recorded timing, N = N x, 0 = lossless as fast as the node goes
    max_age_ms: float = 0.0  # drop frames older than this before inference (0 = no limit)
    # a live source silent this long is reported source_lost; a read blocked this long is abandoned and
    # the camera reopened
    stall_timeout_s: float = 2.0

    def __post_init__(self) -> None:
        _at_least(self.rate, 0.0, "[source] rate", "0 = lossless, 1 = recorded timing, N = N times faster", 1000)
        _at_least(self.max_age_ms, 0.0, "[source] max_age_ms", "0 turns the staleness budget off", HOUR_S * 1000)
        _above(self.stall_timeout_s, 0.0, "[source] stall_timeout_s", "e.g. 2.0", HOUR_S)


@dataclass(frozen=True)
class CameraConfig:
    """One camera of the node: a `[[camera]]` table, or the single camera of [source] + [publish] camera."""

    name: str
    uri: str = ""
    rate: float = 1.0
    max_age_ms: float = 0.0
    stall_timeout_s: float = 2.0
    # a camera that cannot be opened at start stops the node (exit 2); one that is not required is
    # reported source_lost and retried while the others run
    required: bool = False

    def __post_init__(self) -> None:
        where = f"[[camera]] {self.name!r}"
        try:
            check_camera(self.name)
        except WireError as exc:
            raise ConfigError(f"{where}: {exc.problem}", exc.fix) from None
        if not self.uri:
            raise ConfigError(f"{where} has no uri", 'add uri = "camera:0" (or a file, drive, ...)')
        SourceConfig(self.uri, self.rate, self.max_age_ms, self.stall_timeout_s)  # the same range checks

    @property
    def source(self) -> SourceConfig:
        return SourceConfig(self.uri, self.rate, self.max_age_ms, self.stall_timeout_s)


@dataclass(frozen=True)
class ModelConfig:
    card: Path = DEFAULT_CARD
    engine: str = "onnxruntime"
    threads: int = 2
    spin: bool = False
    precision: str = "fp32"
    warmup_runs: int = 3
    device: int = 0  # GPU backends: the CUDA device index
    cache_dir: Path | None = None  # GPU backends: where built plans are kept (None = the backend's default)
    # engine = "tensorrt": serve on this engine while the plan builds in the background ("" = wait for the build)
    fallback: str = ""
    build_timeout_s: float = 1800.0  # background plan build: killed after this long (0 = no limit)
    build_memory_mib: int = 0  # background plan build: killed above this resident memory (0 = no limit)
    batch: int = 0  # frames of different cameras per engine call; 0 = one per camera on engines that gain
    # from batches (GPU), one by one on the CPU; always capped by the model's batch
    batch_timeout_ms: float = 5.0  # how long a batch waits for the other cameras' frames

    def __post_init__(self) -> None:
        if self.fallback:
            if self.engine != "tensorrt":
                raise ConfigError(f"[model] fallback = {self.fallback!r} is set but engine = {self.engine!r}",
                                  'a fallback serves while a TensorRT plan builds: set engine = "tensorrt" or '
                                  "remove fallback")
            if self.fallback not in ("onnxruntime", "onnxruntime-gpu"):
                raise ConfigError(f"[model] fallback = {self.fallback!r} is not an engine that needs no plan",
                                  'use "onnxruntime" (CPU) or "onnxruntime-gpu" (ONNX Runtime CUDA)')
        _at_least(self.build_timeout_s, 0.0, "[model] build_timeout_s", "0 = no limit, e.g. 1800", DAY_S)
        _at_least(self.build_memory_mib, 0, "[model] build_memory_mib", "0 = no limit, e.g. 8192", 2**40)
        _at_least(self.threads, 0, "[model] threads", "0 = the engine's default, else a few per core", MAX_THREADS)
        _at_least(self.batch, 0, "[model] batch", "0 = one frame per camera, e.g. 4", 1024)
        _at_least(self.batch_timeout_ms, 0.0, "[model] batch_timeout_ms", "e.g. 5", HOUR_S * 1000)
        _at_least(self.warmup_runs, 0, "[model] warmup_runs", "e.g. 3", 1000)
        _at_least(self.device, 0, "[model] device", "a CUDA device index, 0 for the first GPU", 255)
        if self.precision not in PRECISIONS:
            raise ConfigError(f"[model] precision = {self.precision!r} is not a precision",
                              f"use one of {', '.join(PRECISIONS)}")
        if self.cache_dir is not None and self.cache_dir.exists() and not self.cache_dir.is_dir():
            raise ConfigError(f"[model] cache_dir = {str(self.cache_dir)!r} exists and is not a folder",
                              "give a folder for the engine's plan cache")

    def engine_options(self, cameras: int = 1) -> EngineOptions:
        """cameras: how many the node serves; a TensorRT plan is built for batches up to `batch`, or one
        frame per camera (the node batches no more than that)."""
        return EngineOptions(threads=self.threads, spin=self.spin, device=self.device, precision=self.precision,
                             cache_dir=self.cache_dir, max_batch=self.batch or cameras)

    def build_limits(self) -> BuildLimits:
        return BuildLimits(timeout_s=self.build_timeout_s, memory_mib=self.build_memory_mib)


@dataclass(frozen=True)
class PublishConfig:
    endpoint: str = DEFAULT_ENDPOINT
    camera: str = "cam0"
    compression: str = "zstd"
    sndhwm: int = 4
    allow_public: bool = False
    # lock-step regression runs: hold the first frame until this many frame subscribers joined
    wait_subscribers: int = 0
    wait_timeout_s: float = 10.0
    # the input frame as JPEG on the `image` topic, for viewers: at most this many per second (0 = off)
    image_rate_hz: float = 0.0
    image_quality: int = 80
    # CURVE: serve only the clients whose public keys are in this folder's clients/ (perception keys DIR)
    curve_keys: Path | None = None
    # lock-step: the node waits for the slowest frame subscriber instead of dropping for it
    lossless: bool = False
    lossless_timeout_s: float = 10.0  # a send waiting longer ends the run with an error

    def __post_init__(self) -> None:
        _at_least(self.sndhwm, 1, "[publish] sndhwm", "a few messages, e.g. 4", MAX_SNDHWM)
        _at_least(self.image_rate_hz, 0.0, "[publish] image_rate_hz", "0 = no image topic, e.g. 5", 1000)
        if not 1 <= self.image_quality <= 100:
            raise ConfigError(f"[publish] image_quality = {self.image_quality} is outside 1..100", "use e.g. 80")
        _at_least(self.wait_subscribers, 0, "[publish] wait_subscribers", "0 = do not wait", 10_000)
        _at_least(self.wait_timeout_s, 0.0, "[publish] wait_timeout_s", "e.g. 10", DAY_S)
        _above(self.lossless_timeout_s, 0.0, "[publish] lossless_timeout_s", "e.g. 10", DAY_S)


@dataclass(frozen=True)
class RecordConfig:
    path: Path | None = None
    image_format: str = "jpeg"


@dataclass(frozen=True)
class TrackingConfig:
    enabled: bool = True  # false is tracker = "none"
    tracker: str = "bytetrack"  # perception.tracking.TRACKERS
    settings: Mapping[str, Any] = field(default_factory=dict)  # the tracker's own keys, beside `tracker`

    def __post_init__(self) -> None:
        if self.tracker not in TRACKERS:
            raise TRACKERS.unknown(self.tracker, " in [tracking] tracker")
        checker = settings_type(self.tracker)
        if checker is not None:  # refuse a bad key when the file is read, not when the node starts
            checked = _build(checker, dict(self.settings), f"[tracking] (tracker {self.tracker!r})", Path.cwd())
            object.__setattr__(self, "settings", {k: getattr(checked, k) for k in self.settings})


@dataclass(frozen=True)
class RunConfig:
    max_frames: int = 0  # 0 = until the source ends or a signal arrives
    stats_interval_s: float = 1.0
    heartbeat_interval_s: float = 1.0
    latency_window: int = 300
    summary: bool = True
    # lock-step replay whose recording is the same bytes on every run (docs/recording.md "Lock-step
    # determinism"): needs rate 0 and replay sources
    deterministic: bool = False

    def __post_init__(self) -> None:
        _at_least(self.max_frames, 0, "[run] max_frames", "0 = until the source ends", 2**62)
        _above(self.stats_interval_s, 0.0, "[run] stats_interval_s", "e.g. 1.0", HOUR_S)
        _above(self.heartbeat_interval_s, 0.0, "[run] heartbeat_interval_s", "e.g. 1.0", HOUR_S)
        _at_least(self.latency_window, 1, "[run] latency_window", "frames in the percentile window, e.g. 300",
                  1_000_000)


@dataclass(frozen=True)
class OpsConfig:
    metrics: str = ""  # HOST:PORT serving /metrics and /healthz; "" = off
    allow_public: bool = False  # let metrics bind a non-loopback address
    notify: bool = True  # talk to systemd when it set NOTIFY_SOCKET (Type=notify units)
    live_status: bool = True  # one live status line when stderr is a terminal
    foxglove: str = ""  # HOST:PORT of a Foxglove WebSocket server (the [foxglove] extra); "" = off


@dataclass(frozen=True)
class NodeConfig:
    source: SourceConfig = field(default_factory=SourceConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    record: RecordConfig = field(default_factory=RecordConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    run: RunConfig = field(default_factory=RunConfig)
    ops: OpsConfig = field(default_factory=OpsConfig)
    launch_file: Path | None = None
    # `[[camera]]` tables; empty: one camera, [publish] camera reading [source]
    camera_tables: tuple[CameraConfig, ...] = ()

    def __post_init__(self) -> None:
        names = [c.name for c in self.camera_tables]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"camera name {twice[0]!r} is given to more than one camera",
                              "give each [[camera]] (or --source NAME=URI) its own name")

    @property
    def cameras(self) -> tuple[CameraConfig, ...]:
        """The node's cameras, in order; the first is the default camera (metrics, the live line)."""
        if self.camera_tables:
            return self.camera_tables
        s = self.source
        return (CameraConfig(self.publish.camera, s.uri, s.rate, s.max_age_ms, s.stall_timeout_s, required=True),)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for recordings' metadata and the metadata topic."""
        out: dict[str, Any] = {}
        for section in _SECTIONS:
            values = dataclasses.asdict(getattr(self, section))
            out[section] = {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}
        if self.camera_tables:
            out["camera"] = {c.name: dataclasses.asdict(c) for c in self.camera_tables}
        return out


_SECTIONS = ("source", "model", "publish", "record", "tracking", "run", "ops")
_OUTPUT_SECTIONS = ("record",)


# Upper bounds: every number is checked before it reaches C (libzmq, ONNX Runtime), where a value
# like sndhwm = 10**20 or threads = 10**9 would end in an overflow or std::bad_alloc traceback.
HOUR_S = 3600.0
DAY_S = 86400.0
MAX_THREADS = 1024
MAX_SNDHWM = 1_000_000


def _at_least(value: float, low: float, name: str, hint: str, high: float = math.inf) -> None:
    if not math.isfinite(value) or value < low:
        problem = "is negative" if low == 0 and value < 0 else f"must be at least {low:g}"
        raise ConfigError(f"{name} = {value:g} {problem}", hint)
    _at_most(value, high, name, hint)


def _above(value: float, low: float, name: str, hint: str, high: float = math.inf) -> None:
    if not math.isfinite(value) or value <= low:
        raise ConfigError(f"{name} = {value:g} must be above {low:g}", hint)
    _at_most(value, high, name, hint)


def _at_most(value: float, high: float, name: str, hint: str) -> None:
    if value > high:
        raise ConfigError(f"{name} = {value:g} is more than the {high:g} a node can use", hint)


def load_launch(path: str | Path, *, source_given: bool = False) -> NodeConfig:
    """source_given: the command line names the source, so the file need not."""
    path = Path(path)
    data = read_toml(path, "launch file", ConfigError, "see launch/*.toml for examples")
    if (not source_given and "uri" not in data.get("source", {}) and "camera" not in data
            and not _is_default_launch(path)):
        # the demo drive is the embedded default's source only: on a robot, a launch file that
        # forgot [source] would otherwise publish made-up objects
        raise ConfigError(f"launch file {path} names no source ([source] uri)",
                          'add [source] with uri = "camera:0" (or a file, drive, ...), or pass --source URI')
    return config_from_dict(data, where=f"launch file {path}", base=path.parent, launch_file=path)


def _is_default_launch(path: Path) -> bool:
    try:
        return path.resolve() == DEFAULT_LAUNCH.resolve()
    except OSError:
        return False


def config_from_dict(data: dict[str, Any], *, where: str, base: Path, launch_file: Path | None = None) -> NodeConfig:
    unknown = set(data) - set(_SECTIONS) - {"camera"}
    if unknown:
        raise ConfigError(f"{where} has unknown sections {sorted(unknown)}",
                          f"valid sections: {list(_SECTIONS)} and [[camera]] tables")
    defaults = NodeConfig()
    sections: dict[str, Any] = {}
    for name in _SECTIONS:
        table = data.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: [{name}] must be a table", f"write [{name}] then key = value lines")
        # inputs (model card) are found next to the launch file; outputs (recordings) go where the user runs
        section_base = Path.cwd() if name in _OUTPUT_SECTIONS else base
        if name == "tracking":
            sections[name] = _tracking(table, f"{where} [{name}]", section_base)
        else:
            sections[name] = _build(type(getattr(defaults, name)), table, f"{where} [{name}]", section_base)
    cameras = _camera_tables(data.get("camera", []), sections["source"], where, base)
    if not cameras and "topics=" in sections["source"].uri:  # a multi-topic recording is one camera per topic
        s = sections["source"]
        cameras = tuple(CameraConfig(n, u, s.rate, s.max_age_ms, s.stall_timeout_s, required=True)
                        for n, u in split_topics(None, s.uri))
    return NodeConfig(**sections, launch_file=launch_file, camera_tables=cameras)


def _camera_tables(tables: Any, source: SourceConfig, where: str, base: Path) -> tuple[CameraConfig, ...]:
    """`[[camera]]` tables; rate, max_age_ms and stall_timeout_s default to [source]'s."""
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"{where}: camera must be [[camera]] tables",
                          'write [[camera]] then name = "front" and uri = "..." lines, once per camera')
    shared = {"rate": source.rate, "max_age_ms": source.max_age_ms, "stall_timeout_s": source.stall_timeout_s}
    cameras = []
    for i, table in enumerate(tables):
        if "name" not in table:
            raise ConfigError(f"{where}: [[camera]] number {i + 1} has no name", 'add name = "front" (a topic segment)')
        cameras.append(_build(CameraConfig, {**shared, **table}, f"{where} [[camera]] {table['name']!r}", base))
    return tuple(cameras)


def split_topics(name: str | None, uri: str) -> list[tuple[str, str]]:
    """`rosbag:bag?topics=/front,/rear` (or mcap:) -> one camera per image topic, each reading its own.

    A camera is named after its topic's first segment (`/front/image/compressed` -> `front`), or
    after the whole topic where first segments repeat; a given name prefixes those. A URI without
    `topics=` is the one camera it names.
    """
    head, _, query = uri.partition("?")
    options = urllib.parse.parse_qsl(query, keep_blank_values=True)
    topics = [t for key, value in options if key == "topics" for t in value.split(",") if t]
    if not topics:
        return [(name or "", uri)]
    rest = [(k, v) for k, v in options if k != "topics"]
    firsts = [t.strip("/").split("/")[0] for t in topics]
    unique = len(set(firsts)) == len(firsts)
    out = []
    for topic, first in zip(topics, firsts, strict=True):
        label = first if unique else re.sub(r"[^A-Za-z0-9_.-]", "_", topic.strip("/"))
        query = urllib.parse.urlencode([*rest, ("topic", topic)], safe="/")
        out.append((f"{name}_{label}" if name else label, f"{head}?{query}"))
    return out


def with_cameras(config: NodeConfig, sources: list[tuple[str, str]], **options: Any) -> NodeConfig:
    """The command line's `--source NAME=URI ...`: these are the node's cameras, in this order.

    A name the launch file has keeps its [[camera]] options with the new URI; a new name takes
    [source]'s. options (rate, max_age_ms; None = keep) override every camera's own.
    """
    if not sources:
        return config
    known = {c.name: c for c in config.camera_tables}
    s = config.source
    given = {k: v for k, v in options.items() if v is not None}
    cameras = tuple(dataclasses.replace(known[name] if name in known
                                        else CameraConfig(name, uri, s.rate, s.max_age_ms, s.stall_timeout_s),
                                        uri=uri, **given)
                    for name, uri in sources)
    return dataclasses.replace(config, camera_tables=cameras)


def override(config: NodeConfig, section: str, **values: Any) -> NodeConfig:
    """Replace fields of one section (values already typed); None values are ignored."""
    values = {k: v for k, v in values.items() if v is not None}
    if not values:
        return config
    current = getattr(config, section)
    return dataclasses.replace(config, **{section: dataclasses.replace(current, **values)})


def _tracking(table: dict[str, Any], where: str, base: Path) -> TrackingConfig:
    """`enabled` and `tracker`, and beside them the chosen tracker's own keys."""
    hints = typing.get_type_hints(TrackingConfig)
    own = {key: _coerce(value, hints[key], f"{where} {key}", base)
           for key, value in table.items() if key in ("enabled", "tracker")}
    return TrackingConfig(**own, settings={k: v for k, v in table.items() if k not in own})


def _build(cls: type, table: dict[str, Any], where: str, base: Path) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(table) - fields
    if unknown:
        raise ConfigError(f"{where} has unknown keys {sorted(unknown)}", f"valid keys: {sorted(fields)}")
    values = {key: _coerce(value, hints[key], f"{where} {key}", base) for key, value in table.items()}
    return cls(**values)


def _coerce(value: Any, hint: Any, where: str, base: Path) -> Any:
    optional = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        hint = args[0]
    if optional and value in ("", None):
        return None
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and is_number and isinstance(value, int):
        return value
    if hint is float and is_number:
        return float(value)
    if hint is str and isinstance(value, str):
        return value
    if hint is Path and isinstance(value, str):
        path = Path(value).expanduser()
        return path if path.is_absolute() else (base / path).resolve()
    type_name = "path string" if hint is Path else hint.__name__
    raise ConfigError(f"{where} = {value!r} is a {type(value).__name__}, expected a {type_name}",
                      f"write it as a {type_name}")
