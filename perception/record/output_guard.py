"""Refuse to write over a file the user did not ask to replace, and never over a run's own input.

`--record x.mcap` while replaying `mcap:x.mcap` would truncate the drive being read; an existing
recording of an earlier run is only replaced with `--overwrite`. Inputs are compared by what
they are on disk (device and inode, so a symlink or `./x.mcap` vs `x.mcap` is caught), not by
their spelling.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from perception.record.errors import RecordingError


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): it cannot be the other
        return False


def check_output(path: Path, *, inputs: Iterable[Path], overwrite: bool, flag: str = "--overwrite") -> None:
    """Raise unless writing `path` is safe: new, or asked for with `flag` and not one of `inputs`."""
    if not path.exists():
        return
    for source in inputs:
        if _same_file(path, source):
            raise RecordingError(f"cannot write {str(path)!r}: it is an input of this run ({str(source)!r})",
                                 "write the output to another file name")
    if path.is_dir():
        raise RecordingError(f"cannot write {str(path)!r}: it is a folder", "give a file name ending .mcap")
    if not overwrite:
        raise RecordingError(f"{str(path)!r} already exists",
                             f"give a new file name, or pass {flag} to replace it")
