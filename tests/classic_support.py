"""Small hand-made scenes for the classic methods: a noisy still background and moving shapes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from perception.core.tomlcompat import read_toml
from perception.models.card import ModelCard, card_from_dict
from perception.models.errors import ModelCardError

REPO = Path(__file__).resolve().parent.parent
ENGINES = REPO / "engines"


def card_with(name: str, **params: object) -> ModelCard:
    """An example card from engines/ with some [params] replaced."""
    path = ENGINES / f"{name}.toml"
    data = read_toml(path, "model card", ModelCardError, "")
    data["params"] = {**data.get("params", {}), **params}
    return card_from_dict(data, path)


def background(height: int = 180, width: int = 320, seed: int = 0) -> np.ndarray:
    """A textured still background (smooth blobs of colour)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 200, (height // 20, width // 20, 3)).astype(np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def noisy(image: np.ndarray, rng: np.random.Generator, sigma: float = 2.0) -> np.ndarray:
    return np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)


def pipeline_for(card: ModelCard):
    """The node's pipeline around a classic card built in memory (Pipeline.open reads it from a file)."""
    from perception.runtime.pipeline import Pipeline

    return Pipeline.from_card(card)


def things(seg) -> list[tuple[int, tuple[int, ...]]]:
    """(class id, box) of each thing segment."""
    s = seg.segments
    return [(int(c), tuple(int(v) for v in box)) for c, box, t in zip(s.class_ids, s.bboxes, s.is_thing, strict=True)
            if t]
