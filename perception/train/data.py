"""Training data: synthetic scenes rendered by worker processes into a device-side ring buffer.

Workers render (image, semantic, instance) triples; targets (centre heatmap, offsets, pixel
weights) are derived on the training device from the instance map, so only 368 kB per scene
crosses process boundaries. Scenes arrive in seed order; training may start before the
buffer is full and samples uniformly from what has arrived.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from perception.synth.scene import VOID_CLASS, single_threaded, training_sample

SMALL_INSTANCE_PIXELS = 150
SMALL_INSTANCE_WEIGHT = 3.0
CENTER_SIGMA = 4.0


@dataclass
class SceneBuffer:
    images: torch.Tensor  # (N, 3, H, W) uint8 RGB
    semantic: torch.Tensor  # (N, H, W) uint8
    instances: torch.Tensor  # (N, H, W) int16
    filled: int = 0

    @classmethod
    def allocate(cls, capacity: int, height: int, width: int, device: torch.device) -> SceneBuffer:
        return cls(torch.zeros((capacity, 3, height, width), dtype=torch.uint8, device=device),
                   torch.full((capacity, height, width), VOID_CLASS, dtype=torch.uint8, device=device),
                   torch.zeros((capacity, height, width), dtype=torch.int16, device=device))

    def put(self, index: int, sample: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        rgb, sem, inst = sample
        self.images[index].copy_(torch.from_numpy(rgb).permute(2, 0, 1))
        self.semantic[index].copy_(torch.from_numpy(sem))
        self.instances[index].copy_(torch.from_numpy(inst.astype(np.int16)))
        self.filled = max(self.filled, index + 1)


class Producer:
    """Fills a SceneBuffer from a process pool on a background thread, in seed order."""

    def __init__(self, buffer: SceneBuffer, seeds: list[int], workers: int) -> None:
        self.buffer, self.seeds, self.workers = buffer, seeds, workers
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scene-producer", daemon=True)

    def start(self) -> Producer:
        self._thread.start()
        return self

    def _samples(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        if self.workers <= 1:
            for seed in self.seeds:
                yield training_sample(seed)
            return
        # spawn: the parent has CUDA state and threads, which fork would copy unsafely
        ctx = multiprocessing.get_context("spawn")
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = "1"  # inherited by the spawned workers: one thread each
        with ctx.Pool(self.workers, initializer=single_threaded) as pool:
            yield from pool.imap(training_sample, self.seeds, chunksize=8)

    def _run(self) -> None:
        try:
            for i, sample in enumerate(self._samples()):
                if self._stop.is_set():
                    return
                self.buffer.put(i, sample)
        except BaseException as exc:  # surfaced to the training loop, which re-raises it
            self.error = exc

    def stop(self) -> None:
        self._stop.set()

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()


@dataclass(frozen=True)
class Batch:
    image: torch.Tensor  # (B, 3, H, W) float 0..1
    semantic: torch.Tensor  # (B, H, W) long, 255 void
    pixel_weight: torch.Tensor  # (B, H, W) float
    center: torch.Tensor  # (B, 1, H, W) float
    offsets: torch.Tensor  # (B, 2, H, W) float, (dy, dx) pixels
    thing_mask: torch.Tensor  # (B, 1, H, W) float, 1 on thing pixels


def make_batch(buffer: SceneBuffer, index: torch.Tensor, flip: torch.Tensor) -> Batch:
    """Gather scenes, flip some horizontally, and build Panoptic-DeepLab targets on the device."""
    images = buffer.images[index]
    semantic = buffer.semantic[index].long()
    inst = buffer.instances[index].long()
    f = flip.view(-1, 1, 1)
    semantic = torch.where(f, semantic.flip(-1), semantic)
    inst = torch.where(f, inst.flip(-1), inst)
    images = torch.where(f.unsqueeze(1), images.flip(-1), images)
    b, h, w = inst.shape
    device = inst.device
    k = int(inst.max().item()) + 1
    group = (torch.arange(b, device=device).view(-1, 1, 1) * k + inst).view(-1)
    ys = torch.arange(h, device=device, dtype=torch.float32).view(1, -1, 1).expand(b, h, w).reshape(-1)
    xs = torch.arange(w, device=device, dtype=torch.float32).view(1, 1, -1).expand(b, h, w).reshape(-1)
    count = torch.zeros(b * k, device=device).index_add_(0, group, torch.ones_like(ys))
    cy = torch.zeros(b * k, device=device).index_add_(0, group, ys) / count.clamp(min=1)
    cx = torch.zeros(b * k, device=device).index_add_(0, group, xs) / count.clamp(min=1)
    thing = (inst > 0).view(-1)
    offsets = torch.stack([(cy[group] - ys) * thing, (cx[group] - xs) * thing]).view(2, b, h, w).transpose(0, 1)
    # Gaussian of the distance to the nearest (rounded) centre, i.e. the max over instances'
    # Gaussians, so close centres keep separate peaks instead of merging into a plateau
    present = (count > 0).view(b, k)
    present[:, 0] = False
    ry = torch.where(present, cy.view(b, k).round(), torch.full_like(cy.view(b, k), 1e4))
    rx = torch.where(present, cx.view(b, k).round(), torch.full_like(cx.view(b, k), 1e4))
    gy = torch.arange(h, device=device, dtype=torch.float32).view(1, h, 1, 1)
    gx = torch.arange(w, device=device, dtype=torch.float32).view(1, 1, w, 1)
    d2 = ((gy - ry.view(b, 1, 1, k)) ** 2 + (gx - rx.view(b, 1, 1, k)) ** 2).amin(dim=3)
    heat = torch.exp(-d2 / (2 * CENTER_SIGMA**2)).unsqueeze(1)
    area = count[group].view(b, h, w)
    small = (inst > 0) & (area < SMALL_INSTANCE_PIXELS)
    weight = torch.where(small, SMALL_INSTANCE_WEIGHT, 1.0)
    return Batch(images.float() / 255.0, semantic, weight, heat,
                 offsets.contiguous(), thing.view(b, 1, h, w).float())
