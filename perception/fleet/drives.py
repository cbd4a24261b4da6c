"""Which drives a fleet run replays, and the output name each one gets."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from perception.core.errors import ConfigError

# what a folder of drives holds; a folder that is itself a rosbag2 bag (metadata.yaml) is one drive
_DRIVE_SUFFIXES = {".mcap", ".bag", ".mp4", ".avi", ".mkv", ".mov"}
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Drive:
    name: str  # the output's stem: DIR/<name>.mcap
    uri: str  # as `perception run --source` takes it


def expand(arguments: list[str]) -> list[Drive]:
    """Files, rosbag2 folders, source URIs, folders of drives and @list files -> drives with unique names."""
    uris: list[str] = []
    for argument in arguments:
        uris.extend(_expand_one(argument))
    if not uris:
        raise ConfigError("no drives given", "name mcap files, bags, folders of them, @drives.txt or synthetic:?seed=N")
    drives, seen = [], set()
    for uri in uris:
        name = drive_name(uri)
        if name in seen:  # two drives of one name (a/drive.mcap, b/drive.mcap): the URI's hash tells them apart
            name = f"{name}-{hashlib.sha256(uri.encode()).hexdigest()[:8]}"
        seen.add(name)
        drives.append(Drive(name, uri))
    return drives


def _expand_one(argument: str) -> list[str]:
    if argument.startswith("@"):
        listing = Path(argument[1:])
        if not listing.is_file():
            raise ConfigError(f"drive list {listing} does not exist", "write one drive per line in a text file")
        lines = [line.strip() for line in listing.read_text().splitlines()]
        return [line for line in lines if line and not line.startswith("#")]
    path = Path(argument)
    if path.is_dir() and not (path / "metadata.yaml").exists():
        found = sorted(str(p) for p in path.iterdir() if p.suffix.lower() in _DRIVE_SUFFIXES
                       or (p.is_dir() and (p / "metadata.yaml").exists()))
        if not found:
            raise ConfigError(f"folder {path} holds no drives", "put .mcap/.bag/video files or rosbag2 folders in it")
        return found
    return [argument]


def drive_name(uri: str) -> str:
    """A file-name-safe stem: the file's or folder's name, or the URI itself for synthetic drives."""
    scheme, _, rest = uri.partition(":")
    target = rest if scheme in {"mcap", "rosbag", "video", "file"} and rest else uri
    path = Path(target.split("?")[0])
    if path.exists():
        return _SAFE.sub("_", path.stem if path.is_file() else path.name)
    return _SAFE.sub("_", uri).strip("_") or "drive"
