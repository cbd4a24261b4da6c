"""The files a source URI reads, so that an output can be checked against them before a run."""

from __future__ import annotations

import glob
from pathlib import Path

from perception.capture.source import parse_uri

_FILE_SCHEMES = ("file", "mcap", "rosbag", "images")


def source_files(text: str) -> list[Path]:
    """Files a replay source would read (a folder's files, a glob's matches); none for live sources."""
    uri = parse_uri(text)
    if uri.scheme not in _FILE_SCHEMES:
        return []
    target = Path(uri.target).expanduser()
    if target.is_file():
        return [target]
    if target.is_dir():  # a rosbag2 folder or an image folder
        return [p for p in target.iterdir() if p.is_file()]
    return [Path(p) for p in glob.glob(uri.target)]
