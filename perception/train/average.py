"""Weight averaging: one checkpoint whose weights are the element-wise mean of several runs'.

Runs of one layout that share their start (a fine-tune and the run it began from) sit in one
basin of the loss, and their mean tends to score at least as well as either while being less
sensitive to rounding (the FP16 gate): see engines/panoptic-tiny.report.md, run 7.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


def average_checkpoints(sources: Sequence[Path], out: Path) -> Path:
    """Write `out` as a checkpoint of the mean weights of `sources` (checkpoint.pt files).

    Floating-point tensors are averaged; integer ones (batch-norm counters) come from the first.
    The first checkpoint's architecture, layer choices and optimizer state travel along, so the
    result exports like any run; train on from it with --init-from (a fresh optimizer).
    ValueError if fewer than two are given or their layouts differ.
    """
    if len(sources) < 2:
        raise ValueError(f"averaging needs at least two checkpoints, got {len(sources)}")
    states: list[dict[str, Any]] = [torch.load(s, map_location="cpu", weights_only=True) for s in sources]
    first = states[0]
    shapes = {name: tensor.shape for name, tensor in first["model"].items()}
    for path, state in zip(sources[1:], states[1:], strict=True):
        # the layout is its tensors' names and shapes (every width the architecture has shows there)
        if {name: tensor.shape for name, tensor in state["model"].items()} != shapes:
            raise ValueError(f"{path} has another layout than {sources[0]} "
                             f"({state.get('arch')} vs {first.get('arch')})")
    mean = {}
    for name, tensor in first["model"].items():
        if tensor.is_floating_point():
            mean[name] = torch.stack([s["model"][name].double() for s in states]).mean(0).to(tensor.dtype)
        else:
            mean[name] = tensor
    averaged = {**first, "model": mean, "averaged_from": [str(s) for s in sources]}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    torch.save(averaged, tmp)
    tmp.replace(out)
    return out
