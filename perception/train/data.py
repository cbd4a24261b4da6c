"""Training data on the training device: a scene store filled from the render pool, and batches.

The render pool (perception.train.staging) hands over (RGB, semantic, instance) triples;
targets (centre heatmap, offsets, pixel weights) are derived here on the training device from
the instance map. Training may start before the store is full and samples uniformly from
what has arrived.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from perception.synth.scene import VOID_CLASS
from perception.train.staging import Scenes

SMALL_INSTANCE_PIXELS = 150
SMALL_INSTANCE_WEIGHT = 3.0
CENTER_SIGMA = 4.0
MIN_CENTER_SIGMA = 1.0
CENTER_CHUNK = 16


@dataclass
class SceneStore:
    images: torch.Tensor  # (N, 3, H, W) uint8 RGB
    semantic: torch.Tensor  # (N, H, W) uint8
    instances: torch.Tensor  # (N, H, W) int16
    filled: int = 0
    max_instance: int = 0  # largest instance id stored: batches size their per-instance sums by it

    @classmethod
    def allocate(cls, capacity: int, height: int, width: int, device: torch.device) -> SceneStore:
        return cls(torch.zeros((capacity, 3, height, width), dtype=torch.uint8, device=device),
                   torch.full((capacity, height, width), VOID_CLASS, dtype=torch.uint8, device=device),
                   torch.zeros((capacity, height, width), dtype=torch.int16, device=device))

    def add(self, scenes: Scenes) -> None:
        """Append scenes in arrival order (one host-to-device copy per array)."""
        n = min(len(scenes.rgb), len(self.images) - self.filled)
        if n <= 0:
            return
        at = slice(self.filled, self.filled + n)
        device = self.images.device
        self.images[at] = torch.from_numpy(scenes.rgb[:n]).to(device).permute(0, 3, 1, 2)
        self.semantic[at] = torch.from_numpy(scenes.semantic[:n]).to(device)
        self.instances[at] = torch.from_numpy(scenes.instances[:n].astype("int16")).to(device)
        self.max_instance = max(self.max_instance, int(scenes.instances[:n].max(initial=0)))
        self.filled += n


@dataclass(frozen=True)
class Batch:
    image: torch.Tensor  # (B, 3, H, W) float 0..1
    semantic: torch.Tensor  # (B, H, W) long, 255 void
    pixel_weight: torch.Tensor  # (B, H, W) float
    center: torch.Tensor  # (B, 1, H, W) float
    offsets: torch.Tensor  # (B, 2, H, W) float, (dy, dx) pixels
    thing_mask: torch.Tensor  # (B, 1, H, W) float, 1 on thing pixels


def make_batch(store: SceneStore, index: torch.Tensor, flip: torch.Tensor, sigma_per_side: float = 0.0,
               small_weight: float = SMALL_INSTANCE_WEIGHT) -> Batch:
    """Gather scenes, flip some horizontally, and build Panoptic-DeepLab targets on the device.

    sigma_per_side > 0 sizes each instance's centre Gaussian by the instance: sigma =
    sigma_per_side * sqrt(area), between MIN_CENTER_SIGMA and CENTER_SIGMA (0 = CENTER_SIGMA for
    all, as Panoptic-DeepLab). Two 30 px cars 6 px apart then keep two peaks; with one wide
    Gaussian each they blur into one, and the smaller car joins its neighbour. Pixels of things
    under SMALL_INSTANCE_PIXELS weigh small_weight in the semantic and offset losses.
    """
    images = store.images[index]
    semantic = store.semantic[index].long()
    inst = store.instances[index].long()
    f = flip.view(-1, 1, 1)
    semantic = torch.where(f, semantic.flip(-1), semantic)
    inst = torch.where(f, inst.flip(-1), inst)
    images = torch.where(f.unsqueeze(1), images.flip(-1), images)
    b, h, w = inst.shape
    device = inst.device
    k = store.max_instance + 1  # known on the host: no device sync per batch
    group = (torch.arange(b, device=device).view(-1, 1, 1) * k + inst).view(-1)
    ys = torch.arange(h, device=device, dtype=torch.float32).view(1, -1, 1).expand(b, h, w).reshape(-1)
    xs = torch.arange(w, device=device, dtype=torch.float32).view(1, 1, -1).expand(b, h, w).reshape(-1)
    count = torch.zeros(b * k, device=device).index_add_(0, group, torch.ones_like(ys))
    cy = torch.zeros(b * k, device=device).index_add_(0, group, ys) / count.clamp(min=1)
    cx = torch.zeros(b * k, device=device).index_add_(0, group, xs) / count.clamp(min=1)
    thing = (inst > 0).view(-1)
    offsets = torch.stack([(cy[group] - ys) * thing, (cx[group] - xs) * thing]).view(2, b, h, w).transpose(0, 1)
    # the max over instances' Gaussians around their (rounded) centres, so close centres keep
    # separate peaks instead of merging into a plateau
    present = (count > 0).view(b, k)
    present[:, 0] = False
    ry = torch.where(present, cy.view(b, k).round(), torch.full_like(cy.view(b, k), 1e4))
    rx = torch.where(present, cx.view(b, k).round(), torch.full_like(cx.view(b, k), 1e4))
    gy = torch.arange(h, device=device, dtype=torch.float32).view(1, h, 1, 1)
    gx = torch.arange(w, device=device, dtype=torch.float32).view(1, 1, w, 1)
    ry, rx = ry.view(b, 1, 1, k), rx.view(b, 1, 1, k)
    if sigma_per_side > 0:
        sigma = (sigma_per_side * count.view(b, 1, 1, k).sqrt()).clamp(MIN_CENTER_SIGMA, CENTER_SIGMA)
    else:
        sigma = torch.full((b, 1, 1, k), CENTER_SIGMA, device=device)
    inv_var = 1.0 / sigma**2
    z2 = torch.full((b, h, w), float("inf"), device=device)  # squared distance in sigmas, nearest centre
    for lo in range(0, k, CENTER_CHUNK):  # (b, h, w, chunk) at a time: memory stays bounded in crowds
        hi = lo + CENTER_CHUNK
        d2 = (gy - ry[..., lo:hi]) ** 2 + (gx - rx[..., lo:hi]) ** 2
        z2 = torch.minimum(z2, (d2 * inv_var[..., lo:hi]).amin(dim=3))
    heat = torch.exp(-0.5 * z2).unsqueeze(1)
    area = count[group].view(b, h, w)
    small = (inst > 0) & (area < SMALL_INSTANCE_PIXELS)
    weight = torch.where(small, small_weight, 1.0)
    return Batch(images.float() / 255.0, semantic, weight, heat,
                 offsets.contiguous(), thing.view(b, 1, h, w).float())
