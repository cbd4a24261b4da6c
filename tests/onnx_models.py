"""Small real ONNX models written by the tests (no weights are downloaded or shipped for tests).

tiny_panoptic: Panoptic-DeepLab-shaped outputs from a 1x1 conv "color classifier":
red -> car (thing), blue -> sky, green -> vegetation, anything else -> road. The center
heatmap is a blurred red channel (peaks inside red blobs), offsets are zero.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CLASSES = [("road", False), ("sidewalk", False), ("vegetation", False), ("sky", False), ("building", False),
           ("car", True), ("person", True), ("traffic_sign", True)]


def tiny_panoptic(folder: Path, width: int = 64, height: int = 48, name: str = "tiny",
                  nan_centers: bool = False, batch: int | str = 1, fails_at_run: bool = False) -> Path:
    """Write tiny.onnx + tiny.toml into folder; returns the card path.

    batch: the graph's first dimension, a number or a symbolic name (a dynamic batch axis).

    nan_centers: the center head computes log(-1), as a model broken by a bad precision
    conversion would, to test that NaN outputs are refused per frame.

    fails_at_run: the offsets head gathers index 5 of a 1-element table, an index computed from
    the image, so ONNX Runtime loads the model and fails on every run (a fatal engine error).
    """
    w = np.zeros((8, 3, 1, 1), np.float32)
    b = np.full(8, -20.0, np.float32)
    b[0] = 5.0  # road wins wherever no color channel dominates
    w[5, 0], b[5] = 40.0, -20.0  # red (in RGB input channel 0) -> car
    w[3, 2], b[3] = 40.0, -20.0  # blue -> sky
    w[2, 1], b[2] = 40.0, -20.0  # green -> vegetation
    nodes = [
        helper.make_node("Conv", ["image", "sem_w", "sem_b"], ["semantic_logits"]),
        helper.make_node("Slice", ["image", "s0", "s1", "ax"], ["red"]),
        helper.make_node("AveragePool", ["red"], ["blur1"], kernel_shape=[9, 9], pads=[4, 4, 4, 4],
                         count_include_pad=1),
        helper.make_node("AveragePool", ["blur1"], ["blur2"], kernel_shape=[9, 9], pads=[4, 4, 4, 4],
                         count_include_pad=1),
        helper.make_node("Mul", ["blur2", "gain"], ["scaled"]),
        helper.make_node("Sigmoid", ["scaled"], ["sig"]),
        helper.make_node("Sub", ["sig", "two"] if nan_centers else ["sig", "zero"], ["shifted"]),
        helper.make_node("Log" if nan_centers else "Identity", ["shifted"], ["center_heatmap"]),
        helper.make_node("Conv", ["image", "off_w", "off_b"], ["offsets_raw" if fails_at_run else "offsets"]),
    ]
    if fails_at_run:  # data-dependent, so nothing can fold or check it before a run
        nodes += [
            helper.make_node("ReduceMax", ["image"], ["peak"], keepdims=0),
            helper.make_node("Mul", ["peak", "zero"], ["nothing"]),
            helper.make_node("Add", ["nothing", "five"], ["five_again"]),
            helper.make_node("Cast", ["five_again"], ["index"], to=TensorProto.INT64),
            helper.make_node("Gather", ["table", "index"], ["picked"]),
            helper.make_node("Add", ["offsets_raw", "picked"], ["offsets"]),
        ]
    inits = [
        numpy_helper.from_array(w, "sem_w"),
        numpy_helper.from_array(b, "sem_b"),
        numpy_helper.from_array(np.array([0], np.int64), "s0"),
        numpy_helper.from_array(np.array([1], np.int64), "s1"),
        numpy_helper.from_array(np.array([1], np.int64), "ax"),
        numpy_helper.from_array(np.array(8.0, np.float32), "gain"),
        numpy_helper.from_array(np.array(2.0, np.float32), "two"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.zeros((2, 3, 1, 1), np.float32), "off_w"),
        numpy_helper.from_array(np.zeros(2, np.float32), "off_b"),
    ]
    if fails_at_run:
        inits += [numpy_helper.from_array(np.array(5.0, np.float32), "five"),
                  numpy_helper.from_array(np.zeros(1, np.float32), "table")]
    graph = helper.make_graph(
        nodes, "tiny_panoptic",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, height, width])],
        [helper.make_tensor_value_info("semantic_logits", TensorProto.FLOAT, [batch, 8, height, width]),
         helper.make_tensor_value_info("center_heatmap", TensorProto.FLOAT, [batch, 1, height, width]),
         helper.make_tensor_value_info("offsets", TensorProto.FLOAT, [batch, 2, height, width])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / f"{name}.onnx")
    classes = "\n".join(f'[[classes]]\nid = {i}\nname = "{n}"\nthing = {str(t).lower()}\n'
                        for i, (n, t) in enumerate(CLASSES))
    card = folder / f"{name}.toml"
    card.write_text(f'''name = "{name}"
onnx = "{name}.onnx"
decoder = "panoptic_deeplab"

[input]
name = "image"
width = {width}
height = {height}
layout = "NCHW"
color = "RGB"
dtype = "float32"
scale = 0.00392156862745098
resize = "stretch"

[decoder_params]
center_threshold = 0.3
nms_kernel = 15
min_stuff_area = 4
min_thing_area = 4

{classes}''')
    return card


def scene(width: int = 128, height: int = 96, cars: int = 2) -> np.ndarray:
    """BGR test image: gray road, blue sky band, red squares (cars) on the road."""
    image = np.full((height, width, 3), 128, np.uint8)
    image[: height // 4] = (255, 0, 0)  # blue sky (BGR)
    size = 14  # odd (7 px) at the tiny model's half resolution: one center peak per car
    for i in range(cars):
        x = ((i + 1) * width // (cars + 1) - size // 2) // 2 * 2
        y = height // 2 // 2 * 2
        image[y:y + size, x:x + size] = (0, 0, 255)  # red car
    return image
