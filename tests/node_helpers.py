"""Shared set-up for node tests: a launch file around the tiny test model, a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from tests.onnx_models import scene, tiny_panoptic

REPO = Path(__file__).resolve().parent.parent


def write_launch(folder: Path, source: str, endpoint: str, extra: str = "") -> Path:
    card = tiny_panoptic(folder / "model")
    launch = folder / "test.toml"
    launch.write_text(f'''[source]
uri = "{source}"
rate = 0.0

[model]
card = "{card}"
threads = 1
warmup_runs = 1

[publish]
endpoint = "{endpoint}"
camera = "cam0"
{extra}
''')
    return launch


def image_folder(folder: Path, n: int, cars: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image = scene(cars=cars)
        image[0, 0] = (i, i, i)  # frames differ
        cv2.imwrite(str(folder / f"{i:04d}.png"), image)
    return folder


def video_file(path: Path, n: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 30.0, (128, 96))
    for _ in range(n):
        writer.write(scene())
    writer.release()
    return path


def run_cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "perception", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=env, check=False)


def blank(width: int, height: int) -> np.ndarray:
    return np.zeros((height, width, 3), np.uint8)
