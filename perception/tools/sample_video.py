"""OpenCV's sample video vtest.avi (pedestrians, a fixed camera), from Debian's opencv-doc package.

Kept out of git: fetched once with `apt-get download opencv-doc` and unpacked into the user cache
($XDG_CACHE_HOME/perception/vtest/vtest.avi). Where apt-get, the package or the network is not
there, the caller gets the reason to skip with.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

MEMBER = "./usr/share/doc/opencv-doc/examples/data/vtest.avi"


def cached_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "perception" / "vtest" / "vtest.avi"


def fetch_vtest() -> tuple[Path | None, str]:
    """(path, "") once the video is in the cache, else (None, why not)."""
    target = cached_path()
    if target.is_file():
        return target, ""
    missing = [tool for tool in ("apt-get", "dpkg-deb", "tar") if shutil.which(tool) is None]
    if missing:
        return None, f"vtest.avi is not cached and {', '.join(missing)} (needed to fetch opencv-doc) is missing"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            got = subprocess.run(["apt-get", "download", "opencv-doc"], cwd=tmp, capture_output=True, text=True,
                                 timeout=600, check=False)
        except subprocess.TimeoutExpired:
            return None, "apt-get download opencv-doc took over 10 minutes"
        debs = sorted(Path(tmp).glob("opencv-doc_*.deb"))
        if got.returncode != 0 or not debs:
            why = (got.stderr.strip().splitlines() or ["no .deb written"])[-1]
            return None, f"apt-get download opencv-doc failed: {why}"
        unpack = subprocess.run(f"dpkg-deb --fsys-tarfile {debs[0]} | tar -x -C {tmp} {MEMBER}", shell=True,
                                capture_output=True, text=True, timeout=300, check=False)
        video = Path(tmp) / MEMBER
        if unpack.returncode != 0 or not video.is_file():
            return None, f"{debs[0].name} holds no {MEMBER[2:]} ({unpack.stderr.strip()[-200:]})"
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        shutil.copyfile(video, partial)
        partial.replace(target)  # never a half-written video in the cache
    return target, ""
