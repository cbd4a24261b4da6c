"""Small ONNX graphs and model cards for the decoder, fold and inspect tests.

Graphs are built with onnx.helper and run on the real ONNX Runtime. Head outputs are
constants that encode known objects (boxes, classes, scores, masks); a model's input still
feeds the graph (through a zero-weighted term) so the preprocessing is part of the run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from perception.models.card import InputSpec
from perception.models.preprocess import Preprocessor

OPSET = 17
SOURCE_H, SOURCE_W = 720, 1280


def save_model(nodes: Sequence[onnx.NodeProto], inputs: Sequence[onnx.ValueInfoProto],
               outputs: Sequence[onnx.ValueInfoProto], initializers: Sequence[onnx.TensorProto],
               path: Path, metadata: Mapping[str, str] | None = None, opset: int = OPSET) -> Path:
    graph = helper.make_graph(list(nodes), "test_model", list(inputs), list(outputs), list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="tests")
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def constant_heads_model(path: Path, heads: Mapping[str, np.ndarray], input_name: str = "images",
                         input_shape: Sequence[int] = (1, 3, 640, 640),
                         metadata: Mapping[str, str] | None = None) -> Path:
    """A model whose outputs are the given arrays; the input is used through `0 * mean(input)`."""
    nodes = [
        helper.make_node("ReduceMean", [input_name], ["input_mean"], keepdims=0),
        helper.make_node("Mul", ["input_mean", "zero"], ["input_zero"]),
    ]
    initializers = [numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    outputs = []
    for name, array in heads.items():
        initializers.append(numpy_helper.from_array(array, f"{name}_value"))
        if array.dtype == np.float32:
            nodes.append(helper.make_node("Add", [f"{name}_value", "input_zero"], [name]))
        elif array.dtype == np.float16:
            nodes.append(helper.make_node("Cast", [f"{name}_value"], [name], to=TensorProto.FLOAT16))
        else:
            nodes.append(helper.make_node("Identity", [f"{name}_value"], [name]))
        outputs.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(array.dtype),
                                                     list(array.shape)))
    inputs = [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(input_shape))]
    return save_model(nodes, inputs, outputs, initializers, path, metadata)


def write_card(path: Path, onnx_name: str, decoder: str, input_table: Mapping[str, object],
               classes: Sequence[tuple[int, str, bool]], params: Mapping[str, object] | None = None) -> Path:
    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    lines = [f'name = "{path.stem}"', f'onnx = "{onnx_name}"', f'decoder = "{decoder}"', "", "[input]"]
    lines += [f"{k} = {value(v)}" for k, v in input_table.items()]
    if params:
        lines += ["", "[decoder_params]"] + [f"{k} = {value(v)}" for k, v in params.items()]
    for class_id, name, thing in classes:
        lines += ["", "[[classes]]", f"id = {class_id}", f'name = "{name}"', f"thing = {value(thing)}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- YOLO-seg scenes ------------------------------------------------------------------------


@dataclass(frozen=True)
class YoloObject:
    class_id: int
    score: float
    box: tuple[int, int, int, int]  # xyxy in source pixels


def superellipse(box: tuple[int, int, int, int], xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """> 0 inside a rounded shape 10% wider than the box, so cropping to the box shapes its edges."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    rx, ry = 0.55 * (x1 - x0), 0.55 * (y1 - y0)
    result: np.ndarray = 1.0 - np.abs((xs - cx) / rx) ** 4 - np.abs((ys - cy) / ry) ** 4
    return result


def expected_mask(obj: YoloObject, height: int = SOURCE_H, width: int = SOURCE_W) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    x0, y0, x1, y1 = obj.box
    inside = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
    return inside & (superellipse(obj.box, xs, ys) > 0)


def yolo_heads(objects: Sequence[YoloObject], spec: InputSpec, num_classes: int = 3, anchors: int = 400,
               source: tuple[int, int] = (SOURCE_H, SOURCE_W), duplicates: bool = True,
               rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """output0 / output1 of a YOLO-seg export that sees exactly these objects.

    Each object sits at one anchor with its score; near-duplicate boxes of the same class with
    lower scores sit at other anchors (NMS must remove them). Prototype j is a smooth field
    positive inside object j's shape; object j's coefficients select it.
    """
    rng = rng or np.random.default_rng(0)
    geo = Preprocessor(spec).geometry(*source)
    mh, mw = spec.height // 4, spec.width // 4
    head = np.zeros((4 + num_classes + 32, anchors), np.float32)
    protos = np.full((32, mh, mw), -10.0, np.float32)
    # prototype pixel centers, in source coordinates
    py, px = np.mgrid[0:mh, 0:mw].astype(np.float64)
    src_x = ((px + 0.5) * spec.width / mw - geo.pad_x) / geo.scale_x
    src_y = ((py + 0.5) * spec.height / mh - geo.pad_y) / geo.scale_y
    slots = rng.permutation(anchors)
    used = 0
    for j, obj in enumerate(objects):
        x0, y0, x1, y1 = obj.box
        nx0, nx1 = x0 * geo.scale_x + geo.pad_x, x1 * geo.scale_x + geo.pad_x
        ny0, ny1 = y0 * geo.scale_y + geo.pad_y, y1 * geo.scale_y + geo.pad_y
        protos[j] = 10.0 * superellipse(obj.box, src_x, src_y)
        copies = [(0.0, obj.score)] + ([(0.02, obj.score - 0.1), (-0.02, obj.score - 0.15)] if duplicates else [])
        for jitter, score in copies:
            a = slots[used]
            used += 1
            w, h = (nx1 - nx0) * (1 + jitter), (ny1 - ny0) * (1 + jitter)
            head[0:4, a] = ((nx0 + nx1) / 2, (ny0 + ny1) / 2, w, h)
            head[4 + obj.class_id, a] = score
            head[4 + num_classes + j, a] = 1.0
    return {"output0": head[None], "output1": protos[None]}


def yolo_input(resize: str = "letterbox", width: int = 640, height: int = 640) -> dict[str, object]:
    return {"name": "images", "width": width, "height": height, "layout": "NCHW", "color": "RGB",
            "scale": 1 / 255, "resize": resize}


def input_spec(table: Mapping[str, object]) -> InputSpec:
    return InputSpec(name=str(table["name"]), width=int(str(table["width"])), height=int(str(table["height"])),
                     resize=str(table.get("resize", "stretch")))


def box_iou(a: Sequence[int], b: Sequence[int]) -> float:
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


# --- color-classifier models (semantic, Panoptic-DeepLab) ----------------------------------

COLOR_CLASSES = [(0, "road", False), (1, "vegetation", False), (2, "sky", False), (3, "car", True)]
# card normalization the folded graph must reproduce: RGB, (x / 255 - mean) / std
COLOR_INPUT = {"name": "image", "width": 128, "height": 128, "layout": "NCHW", "color": "RGB",
               "scale": 1 / 255, "mean": [0.5, 0.4, 0.3], "std": [0.25, 0.5, 0.2], "resize": "letterbox"}


def color_model(path: Path, kind: str = "logits", width: int = 128, height: int = 128) -> Path:
    """A 1x1-conv "color classifier" on the normalized RGB input.

    red -> car (thing), green -> vegetation, blue -> sky, anything else -> road.
    kind: "logits" ([1, 4, H, W]), "argmax" ([1, H, W] int64), "argmax4d" ([1, 1, H, W] int64),
    or "panoptic" (logits + a center heatmap from the blurred red channel + zero offsets).
    Weights undo the card's mean/std, so a wrong color order or normalization changes the result.
    """
    mean = np.array(COLOR_INPUT["mean"], np.float32)
    std = np.array(COLOR_INPUT["std"], np.float32)
    # normalized x_n = (x - mean) / std  ->  x = x_n * std + mean (x in 0..1, RGB)
    weights = np.zeros((4, 3, 1, 1), np.float32)
    bias = np.full(4, -20.0, np.float32)
    bias[0] = 5.0
    for cls, channel in ((3, 0), (1, 1), (2, 2)):
        weights[cls, channel] = 40.0 * std[channel]
        bias[cls] = 40.0 * mean[channel] - 20.0
    nodes = [helper.make_node("Conv", ["image", "sem_w", "sem_b"], ["semantic_logits"])]
    inits = [numpy_helper.from_array(weights, "sem_w"), numpy_helper.from_array(bias, "sem_b")]
    outputs = []
    if kind in {"logits", "panoptic"}:
        outputs.append(helper.make_tensor_value_info("semantic_logits", TensorProto.FLOAT, [1, 4, height, width]))
    if kind in ("argmax", "argmax4d"):
        keep = 1 if kind == "argmax4d" else 0
        nodes.append(helper.make_node("ArgMax", ["semantic_logits"], ["classes"], axis=1, keepdims=keep))
        shape = [1, 1, height, width] if keep else [1, height, width]
        outputs.append(helper.make_tensor_value_info("classes", TensorProto.INT64, shape))
    if kind == "panoptic":
        nodes += [
            helper.make_node("Slice", ["semantic_logits", "s0", "s1", "ax"], ["car_logit"]),
            helper.make_node("Sigmoid", ["car_logit"], ["car_prob"]),
            helper.make_node("AveragePool", ["car_prob"], ["blur1"], kernel_shape=[7, 7], pads=[3, 3, 3, 3]),
            helper.make_node("AveragePool", ["blur1"], ["center_heatmap"], kernel_shape=[7, 7], pads=[3, 3, 3, 3]),
            helper.make_node("Mul", ["semantic_logits", "zero2"], ["offsets_all"]),
            helper.make_node("Slice", ["offsets_all", "z0", "z2", "ax"], ["offsets"]),
        ]
        inits += [numpy_helper.from_array(np.array([3], np.int64), "s0"),
                  numpy_helper.from_array(np.array([4], np.int64), "s1"),
                  numpy_helper.from_array(np.array([1], np.int64), "ax"),
                  numpy_helper.from_array(np.array([0], np.int64), "z0"),
                  numpy_helper.from_array(np.array([2], np.int64), "z2"),
                  numpy_helper.from_array(np.array(0.0, np.float32), "zero2")]
        outputs += [helper.make_tensor_value_info("center_heatmap", TensorProto.FLOAT, [1, 1, height, width]),
                    helper.make_tensor_value_info("offsets", TensorProto.FLOAT, [1, 2, height, width])]
    inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, height, width])]
    return save_model(nodes, inputs, outputs, inits, path)


def color_scene(height: int = SOURCE_H, width: int = SOURCE_W) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """BGR image and its true per-class masks: sky band, vegetation block, two red cars, road."""
    image = np.full((height, width, 3), 128, np.uint8)
    truth = {}
    sky = np.zeros((height, width), bool)
    sky[: height // 4] = True
    vegetation = np.zeros((height, width), bool)
    vegetation[height // 4: height // 2, : width // 3] = True
    cars = []
    # 110 px squares on a 10 px grid: 11 px (odd) at the 128-wide input, so one center peak each
    for x0 in (500, 900):
        car = np.zeros((height, width), bool)
        car[470:580, x0: x0 + 110] = True
        cars.append(car)
    image[sky] = (255, 0, 0)
    image[vegetation] = (0, 255, 0)
    for car in cars:
        image[car] = (0, 0, 255)
    truth["sky"], truth["vegetation"] = sky, vegetation
    truth["car0"], truth["car1"] = cars
    truth["road"] = ~(sky | vegetation | cars[0] | cars[1])
    return image, truth


def yolo_end2end_heads(objects: Sequence[YoloObject], spec: InputSpec, rows: int = 300,
                       source: tuple[int, int] = (SOURCE_H, SOURCE_W)) -> dict[str, np.ndarray]:
    """output0 [1, rows, 38] / output1 of an NMS-free (Ultralytics nms=False) export seeing these objects."""
    raw = yolo_heads(objects, spec, num_classes=1, anchors=len(objects) + 1, source=source, duplicates=False)
    geo = Preprocessor(spec).geometry(*source)
    head = np.zeros((rows, 6 + 32), np.float32)
    for j, obj in enumerate(objects):
        x0, y0, x1, y1 = obj.box
        head[j, :4] = (x0 * geo.scale_x + geo.pad_x, y0 * geo.scale_y + geo.pad_y,
                       x1 * geo.scale_x + geo.pad_x, y1 * geo.scale_y + geo.pad_y)
        head[j, 4:6] = (obj.score, obj.class_id)
        head[j, 6 + j] = 1.0
    return {"output0": head[None], "output1": raw["output1"]}
