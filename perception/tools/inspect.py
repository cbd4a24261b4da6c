"""What is in an ONNX file, which decoder fits it, and a model card skeleton to start from.

The graph is opened with ONNX Runtime (a base dependency), so inspect works wherever the node
runs. Decoders are matched by output ranks, channel counts and the usual export names:
- yolo_seg: a [1, 4 + nc + nm, N] head beside [1, nm, h, w] prototypes (Ultralytics v8/11/26),
  an NMS-free [1, K, 6 + nm] head (Ultralytics nms=False), or the boxes/scores/class_ids/masks
  of a graph folded with `perception fold --post`;
- panoptic_deeplab: three [1, C, H, W] maps with C classes, 1 (center heatmap), 2 (offsets);
- semantic: [1, C, H, W] float logits, or an integer class map [1, H, W] / [1, 1, H, W].
"""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perception.core.tensors import TensorSpec
from perception.models.card import ClassInfo
from perception.models.decoders.yolo_seg import classes_from_metadata
from perception.models.errors import ModelCardError

_INT = ("int64", "int32", "int16", "int8", "uint8", "uint16", "uint32")
_FLOAT = ("float32", "float16")


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    metadata: dict[str, str]


@dataclass(frozen=True)
class Fit:
    """A decoder that can read this model, why, and the decoder_params a card needs for it."""

    decoder: str
    reason: str
    params: dict[str, Any] = field(default_factory=dict)
    num_classes: int = 0


def read_model(path: str | Path) -> ModelInfo:
    from perception.inference.onnxruntime import OrtEngine

    path = Path(path)
    if not path.is_file():  # said here: OrtEngine's own message is about a card's onnx path
        raise ModelCardError(f"model file {path} does not exist", "pass the path of an .onnx file")
    with OrtEngine(path) as engine:
        return ModelInfo(path, engine.inputs, engine.outputs, dict(engine.metadata))


def fitting_decoders(info: ModelInfo) -> list[Fit]:
    """Every decoder whose expected outputs this model has, best match first."""
    yolo = _yolo_raw(info.outputs) + _yolo_folded(info.outputs)
    if yolo:  # prototypes also look like [1, 32, h, w] logits; a semantic reading of them is noise
        return yolo
    # a panoptic model can also be read as semantic-only, so both are listed
    return _panoptic(info.outputs) + _semantic(info.outputs)


def _yolo_raw(outputs: tuple[TensorSpec, ...]) -> list[Fit]:
    heads = [o for o in outputs if len(o.shape) == 3 and isinstance(o.shape[1], int)]
    protos = [o for o in outputs if len(o.shape) == 4 and isinstance(o.shape[1], int) and o.dtype in _FLOAT]
    for head in heads:
        for proto in protos:
            nm = int(proto.shape[1] or 0)
            if head.shape[2] == 6 + nm:
                reason = (f"{head.name} {list(head.shape)} = {head.shape[1]} NMS-free detections (x1, y1, x2, y2, "
                          f"score, class, {nm} mask values), {proto.name} {list(proto.shape)} = prototypes")
                return [Fit("yolo_seg", reason, {"output0": head.name, "protos": proto.name})]
            nc = int(head.shape[1] or 0) - 4 - nm
            if nc >= 1:
                return [Fit("yolo_seg", f"{head.name} {list(head.shape)} = 4 box + {nc} class + {proto.shape[1]} "
                                        f"mask values per anchor, {proto.name} {list(proto.shape)} = prototypes",
                            {"output0": head.name, "protos": proto.name}, nc)]
    return []


def _yolo_folded(outputs: tuple[TensorSpec, ...]) -> list[Fit]:
    ranks = {o.name: len(o.shape) for o in outputs}
    wanted = {"boxes": 2, "scores": 1, "class_ids": 1, "masks": 3}
    if all(ranks.get(name) == rank for name, rank in wanted.items()):
        return [Fit("yolo_seg", "boxes/scores/class_ids/masks of a graph folded by perception fold --post",
                    {"assembled": True})]
    return []


def _panoptic(outputs: tuple[TensorSpec, ...]) -> list[Fit]:
    maps = [o for o in outputs if len(o.shape) == 4 and o.dtype in _FLOAT and isinstance(o.shape[1], int)]

    def pick(channels: int, hint: str) -> TensorSpec | None:
        same = [o for o in maps if (o.shape[1] == channels if channels else int(o.shape[1] or 0) > 2)]
        named = [o for o in same if hint in o.name.lower()]
        found = named or same
        return found[0] if found else None

    semantic, center, offsets = pick(0, "sem"), pick(1, "center"), pick(2, "offset")
    if semantic is None or center is None or offsets is None:
        return []
    return [Fit("panoptic_deeplab", f"{semantic.name} {list(semantic.shape)} semantic logits, {center.name} center "
                                    f"heatmap, {offsets.name} offsets",
                {"semantic": semantic.name, "center": center.name, "offsets": offsets.name},
                int(semantic.shape[1] or 0))]


def _semantic(outputs: tuple[TensorSpec, ...]) -> list[Fit]:
    fits = []
    for o in outputs:
        if o.dtype in _FLOAT and len(o.shape) == 4 and isinstance(o.shape[1], int) and o.shape[1] >= 2:
            fits.append(Fit("semantic", f"{o.name} {list(o.shape)} = logits of {o.shape[1]} classes",
                            {"output": o.name}, o.shape[1]))
        elif o.dtype in _INT and (len(o.shape) == 3 or (len(o.shape) == 4 and o.shape[1] == 1)):
            fits.append(Fit("semantic", f"{o.name} {list(o.shape)} {o.dtype} = a per-pixel class map",
                            {"output": o.name}))
    return fits[:1]


def card_skeleton(info: ModelInfo, fit: Fit) -> dict[str, Any]:
    """Card data (ModelCard.to_dict layout) for this model and decoder, to be checked and edited."""
    names = classes_from_metadata(info.metadata)
    if fit.decoder != "yolo_seg":  # metadata names say nothing about thing/stuff for these
        names = tuple(ClassInfo(c.id, c.name, False) for c in names)
    count = max(fit.num_classes, len(names)) or 2
    known = {c.id: c for c in names}
    classes = [known.get(k, ClassInfo(k, f"class_{k}", fit.decoder == "yolo_seg")) for k in range(count)]
    image = info.inputs[0] if info.inputs else TensorSpec("images", (1, 3, 640, 640), "float32")
    nhwc = len(image.shape) == 4 and image.shape[3] == 3 and image.shape[1] != 3
    height, width = _input_size(image, nhwc, info.metadata)
    # Ultralytics letterboxes with gray 114 for every task (segment and semantic alike)
    yolo = fit.decoder == "yolo_seg" or info.metadata.get("author") == "Ultralytics"
    return {
        "name": info.path.stem,
        "onnx": info.path.name,
        "decoder": fit.decoder,
        "description": f"skeleton written by perception inspect: {fit.reason}",
        "input": {
            "name": image.name, "width": width, "height": height, "layout": "NHWC" if nhwc else "NCHW",
            "color": "RGB", "dtype": image.dtype if image.dtype in ("float32", "float16", "uint8") else "float32",
            "scale": 1.0 if image.dtype == "uint8" else 1.0 / 255.0, "mean": [0.0, 0.0, 0.0],
            "std": [1.0, 1.0, 1.0], "resize": "letterbox" if yolo else "stretch", "pad_value": 114,
        },
        "decoder_params": dict(fit.params),
        "classes": [{"id": c.id, "name": c.name, "thing": c.thing} for c in classes],
    }


def _input_size(image: TensorSpec, nhwc: bool, metadata: Mapping[str, str]) -> tuple[int, int]:
    h, w = (image.shape[1], image.shape[2]) if nhwc else (image.shape[2:4] if len(image.shape) == 4 else (None, None))
    if isinstance(h, int) and isinstance(w, int):
        return h, w
    try:  # dynamic input: Ultralytics records the export size as "imgsz": "[640, 640]"
        size = ast.literal_eval(metadata.get("imgsz", ""))
        return int(size[0]), int(size[1])
    except (ValueError, SyntaxError, TypeError, IndexError):
        return 640, 640


def render_card(data: Mapping[str, Any], header: str = "") -> str:
    """A card as TOML text (the writer side of perception.models.card.load_card)."""
    lines = [f"# {line}" for line in header.splitlines()]
    for key in ("name", "onnx", "decoder", "description", "domain"):
        if data.get(key):
            lines.append(f"{key} = {_toml(data[key])}")
    for section in ("input", "decoder_params"):
        table = data.get(section) or {}
        if table or section == "input":
            lines += ["", f"[{section}]"] + [f"{k} = {_toml(v)}" for k, v in table.items()]
    for entry in data.get("classes", []):
        lines += ["", "[[classes]]"] + [f"{k} = {_toml(v)}" for k, v in entry.items()]
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ModelCardError(f"card value {value} is not a finite number", "TOML cards hold finite numbers only")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise ModelCardError(f"card value {value!r} has type {type(value).__name__}", "use strings, numbers, lists")


def report(info: ModelInfo, skeleton: bool = True) -> str:
    """The text `perception inspect` prints; skeleton=False leaves the card out (it went to a file)."""
    out = [f"model: {info.path}", "inputs:"]
    out += [f"  {t.name}  {list(t.shape)}  {t.dtype}" for t in info.inputs]
    out.append("outputs:")
    out += [f"  {t.name}  {list(t.shape)}  {t.dtype}" for t in info.outputs]
    out.append("metadata:" if info.metadata else "metadata: none")
    for key, value in sorted(info.metadata.items()):
        shown = value if len(value) <= 200 else value[:200] + f"... ({len(value)} characters)"
        out.append(f"  {key}: {shown}")
    fits = fitting_decoders(info)
    if not fits:
        out += ["decoder: none fits these outputs",
                "  expected one of: yolo_seg ([1, 4+nc+32, N] + [1, 32, h, w]), panoptic_deeplab ([1, C, H, W] + "
                "[1, 1, H, W] + [1, 2, H, W]), semantic ([1, C, H, W] logits or [1, H, W] class map)"]
        return "\n".join(out) + "\n"
    out.append("decoders that fit:")
    out += [f"  {fit.decoder}: {fit.reason}" for fit in fits]
    if not skeleton:
        return "\n".join(out) + "\n"
    out += ["", f"card skeleton for {fits[0].decoder} (check input normalization, color order and classes):", ""]
    out.append(render_card(card_skeleton(info, fits[0])))
    return "\n".join(out)
