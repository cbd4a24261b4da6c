"""Temporary files of atomic writes: `.NAME.tmp-PID` next to the target, renamed into place on success.

A process killed with SIGKILL (or by a power cut) cannot remove its own; the next writer in the
same folder removes those whose process is gone. A PID that is alive (even if reused by another
program) keeps its file: deleting a live writer's file would be worse than a leftover.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_TEMP_NAME = re.compile(r"^\..+\.tmp-(\d+)$")


def temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def sweep_stale(folder: Path) -> list[Path]:
    """Remove temporary files in `folder` left by processes that no longer run; returns them."""
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None or int(match.group(1)) == os.getpid() or _alive(int(match.group(1))):
            continue
        try:
            entry.unlink()
        except OSError:
            continue
        removed.append(entry)
    return removed
