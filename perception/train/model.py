"""A tiny Panoptic-DeepLab: shared encoder, ASPP-lite, FPN-style decoder to stride 4 (and
optionally stride 2), two heads.

Graph contract (what the card and the decoder read):
  input  image           [1, 3, H, W] float32 RGB in 0..1 (mean/std applied inside the graph)
  output semantic_logits [1, C, H, W]
         center_heatmap  [1, 1, H, W] after sigmoid
         offsets         [1, 2, H, W] (dy, dx) in input pixels
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# The offset head regresses in units of this many pixels so its raw outputs stay near 1.
OFFSET_UNIT = 16.0


@dataclass(frozen=True)
class Arch:
    """The layer sizes; checkpoints carry them, so resume and export rebuild the same network."""

    widths: tuple[int, int, int, int] = (24, 48, 96, 160)  # encoder stages, strides 2, 4, 8, 16
    decoder: int = 48  # channels of the stride-8 and stride-4 decoder levels
    fine: int = 0  # channels of a stride-2 level that then carries the heads (0 = heads at stride 4)
    refine: int = 0  # channels of a full-resolution semantic refinement from image edges (0 = none)
    subpixel: int = 0  # channels of a stride-2 branch that corrects each 2x2 pixel block's logits (0 = none)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "widths": list(self.widths)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Arch:
        widths = tuple(int(w) for w in data.get("widths", cls.widths))
        if len(widths) != 4:
            raise ValueError(f"an architecture has 4 encoder widths, not {len(widths)}")
        return cls((widths[0], widths[1], widths[2], widths[3]), int(data.get("decoder", cls.decoder)),
                   int(data.get("fine", cls.fine)), int(data.get("refine", cls.refine)),
                   int(data.get("subpixel", cls.subpixel)))

    def describe(self) -> str:
        widths = "/".join(map(str, self.widths))
        heads = f"stride-2 level {self.fine} ch" if self.fine else "heads at stride 4"
        refine = f", full-resolution semantic refinement {self.refine} ch" if self.refine else ""
        subpixel = f", sub-pixel semantic branch {self.subpixel} ch" if self.subpixel else ""
        return f"encoder {widths}, decoder {self.decoder}, {heads}{refine}{subpixel}"


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (k // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class AsppLite(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList([conv_bn(cin, mid, 1), conv_bn(cin, mid, 3, dilation=2),
                                       conv_bn(cin, mid, 3, dilation=4)])
        self.pool = nn.Sequential(nn.Conv2d(cin, mid, 1), nn.ReLU(inplace=True))
        self.project = conv_bn(mid * 4, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(x.mean(dim=(2, 3), keepdim=True)).expand(-1, -1, x.shape[2], x.shape[3])
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class SubPixel(nn.Module):
    """A correction to the upsampled semantic logits, drawn 2x2 pixels per stride-2 cell.

    Bilinear upsampling cannot draw what is thinner than a head cell (a sign's pole, a far
    person's legs). This branch sees the image's pixels around each cell (a 4x4 window, stride 2)
    beside the semantic head's features, and a 2x2 stride-2 transposed convolution writes each
    cell's four pixels. Everything runs at stride 2: a full-resolution convolution (--refine)
    costs ~1.25x the network's time, this ~1.1x. The last layer starts at zero, so a network
    that gains the branch starts out as the one it had.
    """

    def __init__(self, features: int, channels: int, num_classes: int) -> None:
        super().__init__()
        self.image = nn.Conv2d(3, channels, 4, stride=2, padding=1)
        self.features = nn.Conv2d(features, channels, 1, bias=False)
        self.mix = nn.Conv2d(channels, channels, 3, padding=1)
        self.draw = nn.ConvTranspose2d(channels, num_classes, 2, stride=2, bias=False)
        nn.init.zeros_(self.draw.weight)

    def forward(self, normalized: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.image(normalized) + self.features(features))
        return self.draw(F.relu(self.mix(x)))


class TinyPanoptic(nn.Module):
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, num_classes: int = 8, arch: Arch | None = None) -> None:
        """arch.fine > 0 adds a stride-2 decoder level and runs the heads there: small things
        (a 20 px person is 3 px wide) lose their outline at stride 4."""
        super().__init__()
        self.arch = arch = arch or Arch()
        widths, decoder, fine = arch.widths, arch.decoder, arch.fine
        self.num_classes = num_classes
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))
        stages, cin = [], 3
        for w in widths:
            stages.append(nn.Sequential(conv_bn(cin, w, 3, stride=2), conv_bn(w, w)))
            cin = w
        self.stages = nn.ModuleList(stages)
        self.aspp = AsppLite(widths[3], 48, widths[3])
        self.reduce16 = conv_bn(widths[3], decoder, 1)
        self.lateral8 = conv_bn(widths[2], decoder, 1)
        self.fuse8 = conv_bn(decoder, decoder)
        self.lateral4 = conv_bn(widths[1], decoder, 1)
        self.fuse4 = conv_bn(decoder, decoder)
        head = decoder
        if fine:
            self.reduce4 = conv_bn(decoder, fine, 1)
            self.lateral2 = conv_bn(widths[0], fine, 1)
            self.fuse2 = conv_bn(fine, fine)
            head = fine
        self.semantic_head = nn.Sequential(conv_bn(head, head), nn.Conv2d(head, num_classes, 1))
        instance_out = nn.Conv2d(head, 3, 1)
        # start with no offsets and a low centre score: otherwise the offset loss stalls at first
        nn.init.zeros_(instance_out.weight)
        instance_out.bias = nn.Parameter(torch.tensor([-4.0, 0.0, 0.0]))
        self.instance_head = nn.Sequential(conv_bn(head, head), instance_out)
        if arch.refine:
            # a residual on the upsampled logits, zero at first: a refined network starts out as
            # the one it refines (fine-tuning from a checkpoint without it loses nothing)
            self.refine_image = conv_bn(3, arch.refine)
            self.refine_features = conv_bn(head, arch.refine, 1)
            refine_out = nn.Conv2d(arch.refine, num_classes, 1, bias=False)
            nn.init.zeros_(refine_out.weight)
            self.refine_head = nn.Sequential(conv_bn(arch.refine, arch.refine), refine_out)
        if arch.subpixel:
            self.subpixel = SubPixel(head, arch.subpixel, num_classes)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        normalized = x = (image - self.mean) / self.std
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        x = self.reduce16(self.aspp(feats[3]))
        x = F.interpolate(x, size=feats[2].shape[2:], mode="bilinear", align_corners=False)
        x = self.fuse8(x + self.lateral8(feats[2]))
        x = F.interpolate(x, size=feats[1].shape[2:], mode="bilinear", align_corners=False)
        x = self.fuse4(x + self.lateral4(feats[1]))
        if self.arch.fine:
            x = F.interpolate(self.reduce4(x), size=feats[0].shape[2:], mode="bilinear", align_corners=False)
            x = self.fuse2(x + self.lateral2(feats[0]))
        size = image.shape[2:]
        hidden = self.semantic_head[0](x)
        semantic = F.interpolate(self.semantic_head[1](hidden), size=size, mode="bilinear", align_corners=False)
        if self.arch.subpixel:
            semantic = semantic + self.subpixel(normalized, hidden)
        if self.arch.refine:
            edges = F.interpolate(self.refine_features(x), size=size, mode="bilinear", align_corners=False)
            semantic = semantic + self.refine_head(edges + self.refine_image(normalized))
        inst = F.interpolate(self.instance_head(x), size=size, mode="bilinear", align_corners=False)
        center = torch.sigmoid(inst[:, 0:1])
        offsets = inst[:, 1:3] * OFFSET_UNIT
        return semantic, center, offsets


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
