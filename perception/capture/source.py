"""The Source protocol, URI parsing, and the registry of sources by scheme.

A URI is `scheme:rest`; a bare path or number is resolved by `guess_scheme` (a number or
/dev/videoN is a camera, a folder or glob is images, anything else a video file).
Sources are found through a Registry (perception.core.registry) and imported on first use, so
optional readers (rosbags, GStreamer-enabled OpenCV) cost nothing until asked for.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable
from urllib.parse import parse_qsl

import numpy as np

from perception.capture.errors import SourceError
from perception.core.registry import Registry

T = TypeVar("T")


@dataclass(frozen=True)
class SourceUri:
    """scheme, the part after the colon without its query, and the ?key=value options."""

    scheme: str
    target: str
    options: dict[str, str] = field(default_factory=dict)
    raw: str = ""

    def option(self, key: str, default: str) -> str:
        return self.options.get(key, default)

    def check_options(self, valid: Iterable[str]) -> None:
        """Refuse options the source does not know: a typo (`?strat=3`) must not run as if unset."""
        known = tuple(valid)
        unknown = sorted(set(self.options) - set(known))
        if not unknown:
            return
        names = ", ".join(f"{key}={self.options[key]!r}" for key in unknown)
        fix = (f"valid options for {self.scheme}: {', '.join(known)}" if known
               else f"{self.scheme} sources take no ?key=value options; remove them")
        raise SourceError(f"unknown source option(s) {names} in {self.raw!r}", fix)

    def int_option(self, key: str, default: int) -> int:
        return self._typed_option(key, default, int, "an integer")

    def float_option(self, key: str, default: float) -> float:
        return self._typed_option(key, default, float, "a number")

    def _typed_option(self, key: str, default: T, cast: Callable[[str], T], kind: str) -> T:
        value = self.options.get(key)
        if value is None:
            return default
        try:
            return cast(value)
        except ValueError as exc:
            raise SourceError(f"source option {key}={value!r} in {self.raw!r} is not {kind}",
                              f"write {key}=<number>") from exc


@runtime_checkable
class Source(Protocol):
    """A stream of BGR frames.

    live: frames arrive on their own clock and stale ones are dropped (latest-wins);
    otherwise frames are read on demand and replayed at --rate (0 = lossless).
    read() returns (bgr, stamp_ns) or None at the end of the stream; a live source that
    stops delivering raises SourceLost, and open() is called again to reconnect.
    """

    uri: SourceUri
    live: bool

    def open(self) -> None: ...

    def read(self) -> tuple[np.ndarray, int] | None: ...

    def close(self) -> None: ...


# scheme -> "module:Class"; Class(uri: SourceUri) -> Source. Site-specific cameras without editing
# the package: PERCEPTION_SOURCES="scheme=module:Class,..." (inherited by child nodes) or an entry point.
PLUGIN_VARIABLE = "PERCEPTION_SOURCES"
SOURCES: Registry[Source] = Registry(
    "source scheme", Source, SourceError,
    {
        "camera": "perception.capture.opencv_sources:CameraSource",
        "v4l2": "perception.capture.opencv_sources:CameraSource",
        "gst": "perception.capture.opencv_sources:GStreamerSource",
        "rtsp": "perception.capture.opencv_sources:StreamSource",
        "http": "perception.capture.opencv_sources:StreamSource",
        "https": "perception.capture.opencv_sources:StreamSource",
        "file": "perception.capture.opencv_sources:VideoFileSource",
        "images": "perception.capture.images:ImageFolderSource",
        "mcap": "perception.capture.replay_sources:McapSource",
        "rosbag": "perception.capture.replay_sources:RosbagSource",
        "synthetic": "perception.synth.source:SyntheticSource",
    },
    group="perception.sources", variable=PLUGIN_VARIABLE,
    hint=lambda names: f"use one of {', '.join(s + ':' for s in names)} or a path",
)

_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*):(.*)$", re.DOTALL)
_VIDEO_DEVICE = re.compile(r"^/dev/video\d+$")


def parse_uri(text: str) -> SourceUri:
    text = text.strip()
    if not text:
        raise SourceError("the source is empty", "pass --source with a camera index, file, folder or URI")
    match = _SCHEME.match(text)
    if match and len(match.group(1)) > 1:  # one letter is a Windows drive, not a scheme
        scheme, rest = match.group(1), match.group(2)
    else:
        scheme, rest = guess_scheme(text), text
    if scheme in ("rtsp", "http", "https"):
        return SourceUri(scheme, text, {}, text)  # the query belongs to the stream URL
    target, sep, query = rest.partition("?")
    if sep and "=" not in query:  # a `?` glob wildcard, not options
        target, query = rest, ""
    if target.startswith("//"):
        target = target[2:]
    return SourceUri(scheme, target, dict(parse_qsl(query)), text)


def guess_scheme(text: str) -> str:
    path, sep, query = text.partition("?")
    has_options = bool(sep) and "=" in query  # `?key=value` options, not a `?` glob wildcard
    if text.isdigit() or _VIDEO_DEVICE.match(text) or (
            has_options and (path.isdigit() or _VIDEO_DEVICE.match(path))):
        return "camera"
    if path.lower().endswith(".mcap"):
        return "mcap"
    if path.endswith(".bag") or (Path(path) / "metadata.yaml").is_file():
        return "rosbag"  # ROS 1 bag, or a rosbag2 folder
    glob_part = path if has_options else text
    if any(ch in glob_part for ch in "*?[") or Path(path if has_options else text).is_dir():
        return "images"
    if "!" in text:
        return "gst"
    return "file"


def available_schemes() -> list[str]:
    return SOURCES.names()


def open_source(text: str) -> Source:
    """Parse and construct (not yet open) the source a URI names."""
    uri = parse_uri(text)
    if uri.scheme not in SOURCES:
        raise SOURCES.unknown(uri.scheme, f" in {text!r}")
    return SOURCES.create(uri.scheme, uri)
