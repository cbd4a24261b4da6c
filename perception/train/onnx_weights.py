"""A trained network's weights read back from its exported ONNX, to fine-tune a shipped model.

The shipped model carries no checkpoint, only `panoptic-tiny.onnx`. The exporter keeps module
names and folds each BatchNorm into the convolution before it: `<conv>.weight` holds the folded
kernel and `<conv>.weight_bias` the folded bias. Loading those with a BatchNorm that passes its
input through (mean 0, variance 1 - eps, scale 1, shift = the folded bias) gives the same
function in eval mode; training then learns the batch statistics anew.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

FOLDED_BIAS = "_bias"


def state_from_onnx(path: Path, model: nn.Module) -> dict[str, torch.Tensor]:
    """The entries of model's state dict that the ONNX holds; layers it lacks are left out.

    Raises ValueError for a graph with weights the model has no place for (another layout).
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    state: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for name, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            conv = name.rsplit(".", 1)[0] + ".0.weight"  # conv_bn: (conv, bn, relu)
            bias = tensors.get(conv + FOLDED_BIAS)
            if bias is None:
                continue
            used.add(conv + FOLDED_BIAS)
            state[f"{name}.weight"] = torch.ones(module.num_features)
            state[f"{name}.bias"] = torch.from_numpy(np.array(bias, np.float32))
            state[f"{name}.running_mean"] = torch.zeros(module.num_features)
            state[f"{name}.running_var"] = torch.full((module.num_features,), 1.0 - module.eps)
    for key in model.state_dict():
        if key in tensors:
            used.add(key)
            state[key] = torch.from_numpy(np.array(tensors[key], np.float32))
    # weights named like the network's modules that this network has no place for
    foreign = sorted(n for n in tensors if "." in n and n not in used)
    if foreign:
        raise ValueError(f"{path} has weights this architecture lacks, e.g. {foreign[0]} "
                         f"({len(foreign)} in all)")
    if not any(key.endswith(FOLDED_BIAS) for key in used):
        raise ValueError(f"{path} holds no folded convolutions named like this network's layers "
                         "(was it exported by perception train?)")
    return state
