"""A node that replays a few frames with moving cars and publishes its images, for the viewer tests."""

from __future__ import annotations

from pathlib import Path

import cv2

from perception.runtime.config import NodeConfig, load_launch, override
from tests.node_helpers import write_launch
from tests.onnx_models import scene

FRAMES = 8


def moving_cars(folder: Path, n: int = FRAMES) -> Path:
    """Frame i has its cars 4*i pixels further right, so each frame's masks are its own."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image = scene(cars=2)
        cv2.imwrite(str(folder / f"{i:04d}.png"), _shift_cars(image, 4 * i))
    return folder


def _shift_cars(image, dx):
    road = image[image.shape[0] // 4:].copy()
    red = (road[..., 2] == 255) & (road[..., 0] == 0)
    road[red] = 128
    ys, xs = red.nonzero()
    road[ys, xs + dx] = (0, 0, 255)
    image[image.shape[0] // 4:] = road
    return image


def viewer_node_config(tmp_path: Path, fps: float = 4.0, subscribers: int = 2) -> NodeConfig:
    """Replays at `fps`, waiting for the viewer's and the test's subscriptions, every frame's image published."""
    frames = moving_cars(tmp_path / "frames")
    config = load_launch(write_launch(tmp_path, f"images:{frames}?fps={fps:g}", f"ipc://{tmp_path}/node.sock"))
    config = override(config, "source", rate=1.0)
    config = override(config, "publish", image_rate_hz=1000.0, sndhwm=1000, wait_subscribers=subscribers,
                      wait_timeout_s=30.0)
    return override(config, "run", summary=False)
