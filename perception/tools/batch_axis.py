"""Give an exported graph a dynamic batch axis, same weights and same arithmetic.

The shipped model was exported at batch 1, and the exporter wrote every Resize with its full
output `sizes` (N, C, H, W), which pins N to 1. The same Resize given `scales` (1, 1, H'/H, W'/W)
instead computes the same sizes for any N (the ratios are exact powers of two, so the sampling
grid is the same). Graph inputs and outputs then get the symbolic first dimension `batch`; inner
shapes are inferred again.

ONNX Runtime's CPU layout pass fuses a Conv with a following Add only where shapes are fully
static, so with a symbolic batch one Add of the semantic head runs unfused: semantic logits move
by up to 1.9e-6 (float rounding), the other outputs stay bit-identical (measured on the shipped
model, engines/panoptic-tiny.report.md).

Refused (the graph needs a re-export instead): ops that take a whole output shape (Reshape,
Tile, ConstantOfShape), since theirs would still hard-code the batch. Expand broadcasts, so its
leading 1 does not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from perception.core.errors import ModelMismatchError, require

BATCH_DIM = "batch"
_SHAPING = ("Reshape", "Tile", "ConstantOfShape")


def make_batch_dynamic(source: Path, target: Path) -> Path:
    require("onnx", "rewriting the model's batch axis", 'pip install "perception-node[tools]"')
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    constants = {i.name: i for i in graph.initializer}
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in (*graph.value_info, *graph.input, *graph.output)}
    unused: set[str] = set()
    for node in graph.node:
        if node.op_type in _SHAPING:
            raise ModelMismatchError(f"{source.name}: {node.op_type} {node.name!r} takes a whole shape and may "
                                     "hard-code the batch", "re-export the model with a dynamic batch axis")
        if node.op_type == "Resize" and len(node.input) == 4 and node.input[3] in constants:
            sizes = numpy_helper.to_array(constants[node.input[3]])
            before = shapes.get(node.input[0], [])
            if len(before) != len(sizes) or not all(before) or sizes[0] != before[0] or sizes[1] != before[1]:
                raise ModelMismatchError(f"{source.name}: Resize {node.name!r} has no static input shape to "
                                         "turn its sizes into scales", "re-export the model with a dynamic batch axis")
            ratios = np.array([1.0, 1.0, sizes[2] / before[2], sizes[3] / before[3]], np.float32)
            scales = numpy_helper.from_array(ratios, f"{node.name}_scales")
            graph.initializer.append(scales)
            unused.add(node.input[3])
            node.input[2] = scales.name
            del node.input[3]
    still_used = {i for node in graph.node for i in node.input}
    kept = [i for i in graph.initializer if i.name not in unused or i.name in still_used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    for value in (*graph.input, *graph.output):
        value.type.tensor_type.shape.dim[0].ClearField("dim_value")
        value.type.tensor_type.shape.dim[0].dim_param = BATCH_DIM
    del graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model)
    onnx.save(model, str(target))
    return target
