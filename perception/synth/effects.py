"""Camera-like damage applied to a clean render: texture, light, vignetting, blur, noise, JPEG.

Only the picture changes; the id map stays exact, as a human label would be.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from perception.synth.classes import NUM_CLASSES, ROAD, SIDEWALK, SKY, VEGETATION


@dataclass(frozen=True)
class Look:
    """Per-scene (or per-drive) photometric settings, drawn once from the seed."""

    exposure: float
    gamma: float
    white_balance: tuple[float, float, float]
    vignette: float
    blur_sigma: float
    motion_blur: int  # kernel length in pixels, 0 = none
    noise_sigma: float
    jpeg_quality: int
    texture_gain: tuple[float, ...]  # per class: how much the noise texture modulates it


def random_look(rng: np.random.Generator) -> Look:
    gains = [0.12] * NUM_CLASSES
    gains[ROAD], gains[SIDEWALK], gains[VEGETATION], gains[SKY] = 0.18, 0.15, 0.45, 0.08
    return Look(
        exposure=float(rng.uniform(0.55, 1.35)),
        gamma=float(rng.uniform(0.75, 1.3)),
        white_balance=(float(rng.uniform(0.85, 1.15)), 1.0, float(rng.uniform(0.85, 1.15))),
        vignette=float(rng.uniform(0.0, 0.45)),
        blur_sigma=float(rng.choice([0.0, 0.0, rng.uniform(0.4, 1.3)])),
        motion_blur=int(rng.choice([0, 0, 0, 3, 5, 7])),
        noise_sigma=float(rng.uniform(1.0, 7.0)),
        jpeg_quality=int(rng.integers(25, 91)),
        texture_gain=tuple(float(g * rng.uniform(0.5, 1.5)) for g in gains),
    )


def noise_field(rng: np.random.Generator, height: int, width: int, cells: tuple[int, int]) -> np.ndarray:
    """Smooth value noise in about -1..1: random cells upsampled bicubically."""
    small = rng.standard_normal(cells).astype(np.float32)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def apply_look(image: np.ndarray, semantic: np.ndarray, look: Look, rng: np.random.Generator,
               textures: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Float BGR 0..255 clean render + per-pixel class -> uint8 BGR as a camera would deliver it."""
    coarse, fine = textures
    gain = np.asarray(look.texture_gain, np.float32)[np.clip(semantic, 0, NUM_CLASSES - 1)]
    img = image * (1.0 + gain[..., None] * (0.6 * coarse + 0.4 * fine)[..., None])
    img *= np.asarray(look.white_balance, np.float32) * look.exposure
    if look.vignette > 0:
        h, w = semantic.shape
        yy, xx = np.ogrid[-1:1:complex(0, h), -1:1:complex(0, w)]
        img *= (1.0 - look.vignette * (xx * xx + yy * yy) / 2)[..., None].astype(np.float32)
    img = np.clip(img, 0, 255)
    img = 255.0 * (img / 255.0) ** look.gamma
    if look.motion_blur:
        kernel = np.zeros((look.motion_blur, look.motion_blur), np.float32)
        kernel[look.motion_blur // 2, :] = 1.0 / look.motion_blur
        img = cv2.filter2D(img, -1, kernel)
    if look.blur_sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), look.blur_sigma)
    img += rng.standard_normal(img.shape, dtype=np.float32) * look.noise_sigma
    out = np.clip(img, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, look.jpeg_quality])
    if not ok:  # never expected from an in-memory uint8 image; keep the clean frame rather than fail
        return out
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out if decoded is None else decoded
