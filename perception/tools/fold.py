"""Fold preprocessing (and optionally the heavy part of decoding) into a model's ONNX graph.

The folded graph takes the frame as the capture gives it (uint8 [1, H, W, 3] BGR, already
resized by the card's policy) and does cast, color order, (x * scale - mean) / std and layout
itself, so TensorRT runs them on the GPU and the CPU path runs them inside ONNX Runtime.

With post=True the graph also does, per decoder:
- semantic: argmax and winning-class probability -> semantic_classes, semantic_confidence
  ([1, 1, H, W], int32 / float);
- panoptic_deeplab: the same for the semantic head, plus center NMS by max-pool, threshold and
  top-k -> center_scores, center_indices ([1, K], flat y * W + x), on the heatmap masked to
  sure thing pixels when the card sets centers_on_things; offsets pass through;
- yolo_seg: best class per anchor, the max_candidates cap, class-aware NMS (the ONNX
  NonMaxSuppression op), the max_detections cap and mask assembly coeffs @ protos (logits: the
  decoder interpolates them and thresholds at logit(mask_threshold), as the exporter does)
  -> boxes [M, 4], scores [M], class_ids [M], masks [M, H/4, W/4]; for NMS-free (end2end)
  exports only the threshold, the cap and mask assembly. The card's thresholds are baked into
  the graph at fold time.
Cropping, thresholding and pasting at source resolution stay in the decoder: they depend on
the source size, which the graph does not know.

Everything is built with onnx.helper (no hand-written protobuf); the written card says what
the new graph takes and which folded outputs its decoder reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from perception.core.errors import ModelMismatchError, require
from perception.models.card import ModelCard, load_card
from perception.models.decoders.panoptic_deeplab import DEFAULTS as DEEPLAB_DEFAULTS
from perception.models.decoders.yolo_seg import DEFAULTS as YOLO_DEFAULTS
from perception.models.errors import ModelCardError

MIN_OPSET = 13
FOLDED_INPUT = "image_bgr"
_INSTALL = "pip install 'perception-node[tools]' (or pip install onnx)"


def _onnx() -> Any:
    return require("onnx", "perception fold", _INSTALL)


class _Graph:
    """Appends nodes and constants to a graph under names that cannot collide with the model's."""

    def __init__(self, graph: Any, opset: int) -> None:
        self.onnx = _onnx()
        self.graph = graph
        self.opset = opset
        self.nodes: list[Any] = []
        self.taken = {*(i.name for i in graph.input), *(o.name for o in graph.output),
                       *(t.name for t in graph.initializer), *(n for node in graph.node for n in node.output)}

    def fresh(self, base: str, public: bool = False) -> str:
        """An unused tensor name: `base` itself for a graph output (when free), else fold/<base>."""
        if public and base not in self.taken:
            self.taken.add(base)
            return base
        name, k = f"fold/{base}", 1
        while name in self.taken:
            k += 1
            name = f"fold/{base}_{k}"
        self.taken.add(name)
        return name

    def take(self) -> list[Any]:
        """The nodes added since the last take(), in order."""
        nodes, self.nodes = self.nodes, []
        return nodes

    def const(self, value: Any, base: str, dtype: Any = np.float32) -> str:
        name = self.fresh(base)
        self.graph.initializer.append(self.onnx.numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], base: str, outputs: int = 1, public: bool = False,
           **attrs: Any) -> Any:
        names = [self.fresh(f"{base}_{i}" if outputs > 1 else base, public) for i in range(outputs)]
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), names, name=self.fresh(f"{base}_node"),
                                                     **attrs))
        return names if outputs > 1 else names[0]

    def reduce_max(self, x: str, axis: int, keepdims: int, base: str, public: bool = False) -> str:
        if self.opset >= 18:  # ReduceMax took its axes as an input from opset 18 on
            return str(self.op("ReduceMax", [x, self.const([axis], f"{base}_axes", np.int64)], base,
                               public=public, keepdims=keepdims))
        return str(self.op("ReduceMax", [x], base, public=public, axes=[axis], keepdims=keepdims))

    def unsqueeze(self, x: str, axis: int, base: str) -> str:
        return str(self.op("Unsqueeze", [x, self.const([axis], f"{base}_axes", np.int64)], base))

    def squeeze(self, x: str, axis: int, base: str) -> str:
        return str(self.op("Squeeze", [x, self.const([axis], f"{base}_axes", np.int64)], base))

    def slice(self, x: str, start: int, end: int, axis: int, base: str) -> str:
        return str(self.op("Slice", [x, self.const([start], f"{base}_start", np.int64),
                                     self.const([end], f"{base}_end", np.int64),
                                     self.const([axis], f"{base}_axis", np.int64)], base))

    def capped_count(self, x: str, axis: int, cap: int, base: str) -> str:
        """min(x.shape[axis], cap) as a [1] int64 tensor: a TopK k that never exceeds the data."""
        shape = self.op("Shape", [x], f"{base}_shape")
        dim = self.slice(shape, axis, axis + 1, 0, f"{base}_dim")
        return str(self.op("Min", [dim, self.const([cap], f"{base}_cap", np.int64)], base))


def fold_model(model: Any, card: ModelCard, post: bool = False) -> tuple[Any, dict[str, Any]]:
    """Fold `model` (a ModelProto, changed in place) and return it with the plain-data card
    (ModelCard.to_dict layout) that describes the folded graph."""
    onnx = _onnx()
    if post and card.decoder not in _POST:
        raise ModelCardError(f"decoder {card.decoder!r} has no folded form", f"use --post with one of {sorted(_POST)}")
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        raise ModelMismatchError(f"model {card.model_file.name} uses opset {opset}; folding needs {MIN_OPSET} or later",
                                 "convert it first: onnx.version_converter.convert_version(model, 17)")
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    spec = card.input
    if [i.name for i in inputs] != [spec.name]:
        raise ModelMismatchError(f"model {card.model_file.name} has inputs {[i.name for i in inputs]}; the card says "
                                 f"one input {spec.name!r}", "fold needs a single-input model named in [input]")
    builder = _Graph(graph, opset)
    new_input = FOLDED_INPUT if FOLDED_INPUT not in builder.taken else builder.fresh(FOLDED_INPUT)
    builder.taken.add(new_input)
    _preprocess(builder, new_input, spec.name, card)
    pre_nodes = builder.take()
    params = dict(card.decoder_params)
    new_outputs: list[Any] = []
    if post:
        new_outputs, params = _POST[card.decoder](builder, card, params)
    model_nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(pre_nodes + model_nodes + builder.take())
    kept_inputs = [i for i in graph.input if i.name != spec.name]
    del graph.input[:]
    graph.input.extend([onnx.helper.make_tensor_value_info(new_input, onnx.TensorProto.UINT8,
                                                           [1, spec.height, spec.width, 3]), *kept_inputs])
    if post:
        del graph.output[:]
        graph.output.extend(new_outputs)
    onnx.checker.check_model(model)
    data = card.to_dict()
    data["input"].update({"name": new_input, "layout": "NHWC", "color": "BGR", "dtype": "uint8", "scale": 1.0,
                          "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]})
    data["decoder_params"] = params
    data["description"] = (f"{card.name} with preprocessing{' and decoding' if post else ''} folded into the "
                           "graph by perception fold")
    return model, data


def _preprocess(b: _Graph, new_input: str, model_input: str, card: ModelCard) -> None:
    """uint8 NHWC BGR -> the tensor the model wants, with the same arithmetic as Preprocessor."""
    spec = card.input
    x = new_input
    if spec.color == "RGB":
        x = b.op("Gather", [x, b.const([2, 1, 0], "bgr_to_rgb", np.int64)], "rgb", axis=3)
    if spec.dtype != "uint8":
        x = b.op("Cast", [x], "float", to=b.onnx.TensorProto.FLOAT)
        std = np.asarray(spec.std, np.float32)
        mul = (np.float32(spec.scale) / std).reshape(1, 1, 1, 3)
        add = (-np.asarray(spec.mean, np.float32) / std).reshape(1, 1, 1, 3)
        if not np.all(mul == 1.0):
            x = b.op("Mul", [x, b.const(mul, "scale")], "scaled")
        if not np.all(add == 0.0):
            x = b.op("Add", [x, b.const(add, "shift")], "normalized")
        if spec.dtype == "float16":
            x = b.op("Cast", [x], "half", to=b.onnx.TensorProto.FLOAT16)
    if spec.layout == "NCHW":
        x = b.op("Transpose", [x], "nchw", perm=[0, 3, 1, 2])
    if x == new_input:
        x = b.op("Identity", [x], "same")
    # the last node writes the model's original input name, so the model's nodes read it unchanged
    b.nodes[-1].output[0] = model_input


def _graph_output(b: _Graph, name: str) -> Any:
    for out in b.graph.output:
        if out.name == name:
            return out
    raise ModelMismatchError(f"model has no output {name!r} (it has {[o.name for o in b.graph.output]})",
                             "set the output names in the card's decoder_params (perception inspect MODEL.onnx)")


def _as_float(b: _Graph, name: str) -> str:
    """The output as float32 (a float16 model's heads are cast once, so the folded outputs are float32)."""
    if _graph_output(b, name).type.tensor_type.elem_type == b.onnx.TensorProto.FLOAT:
        return name
    return str(b.op("Cast", [name], f"{name.replace('/', '_')}_float", to=b.onnx.TensorProto.FLOAT))


def _static_dims(b: _Graph, name: str) -> list[int | None]:
    dims = _graph_output(b, name).type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else None for d in dims]


def _value_info(b: _Graph, name: str, elem: int, shape: Sequence[int | str | None]) -> Any:
    return b.onnx.helper.make_tensor_value_info(name, elem, list(shape))


def _fold_argmax(b: _Graph, logits_name: str) -> tuple[list[Any], str, str]:
    """[1, C, H, W] logits -> int32 class map and winning-class probability, both [1, 1, H, W]."""
    _graph_output(b, logits_name)
    dims = _static_dims(b, logits_name)
    if len(dims) != 4:
        raise ModelMismatchError(f"output {logits_name!r} has rank {len(dims)}; folding argmax needs [1, C, H, W]",
                                 "fold without --post, or name the logits output in the card")
    classes = b.op("Cast", [b.op("ArgMax", [logits_name], "argmax", axis=1, keepdims=1)], "semantic_classes",
                   public=True, to=b.onnx.TensorProto.INT32)
    probs = b.op("Softmax", [_as_float(b, logits_name)], "softmax", axis=1)
    confidence = b.reduce_max(probs, 1, 1, "semantic_confidence", public=True)
    shape = [1, 1, dims[2] or "height", dims[3] or "width"]
    outputs = [_value_info(b, classes, b.onnx.TensorProto.INT32, shape),
               _value_info(b, confidence, b.onnx.TensorProto.FLOAT, shape)]
    return outputs, classes, confidence


def _post_semantic(b: _Graph, card: ModelCard, params: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    name = str(params.get("output") or b.graph.output[0].name)
    outputs, classes, confidence = _fold_argmax(b, name)
    return outputs, {**params, "output": classes, "confidence": confidence}


def _post_panoptic_deeplab(b: _Graph, card: ModelCard, params: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    p = {**DEEPLAB_DEFAULTS, **params}
    if p["semantic_argmax"] or p["centers_folded"]:
        raise ModelCardError(f"model card {card.name!r} describes an already folded graph", "fold the original model")
    outputs, classes, confidence = _fold_argmax(b, str(p["semantic"]))
    heat = _as_float(b, str(p["center"]))
    kernel = int(p["nms_kernel"])
    if kernel < 1 or kernel % 2 == 0:
        raise ModelCardError(f"model card {card.name!r}: nms_kernel = {kernel} is not a positive odd number",
                             "use an odd max-pool size such as 7 or 11")
    if p["centers_on_things"]:
        heat = _heat_on_sure_things(b, card, p, heat, classes, confidence)
    pad = kernel // 2
    pooled = b.op("MaxPool", [heat], "center_pool", kernel_shape=[kernel, kernel], pads=[pad] * 4, strides=[1, 1])
    peaks = b.op("And", [b.op("Equal", [heat, pooled], "center_is_max"),
                         b.op("Greater", [heat, b.const(float(p["center_threshold"]), "center_thr")], "center_above")],
                 "center_peaks")
    kept = b.op("Where", [peaks, heat, b.const(0.0, "zero")], "center_nms")
    flat = b.op("Reshape", [kept, b.const([1, -1], "flat_shape", np.int64)], "center_flat")
    k = b.capped_count(flat, 1, int(p["top_k"]), "center_k")
    scores, indices = b.op("TopK", [flat, k], "center_topk", outputs=2, axis=1, largest=1, sorted=1)
    scores = b.op("Identity", [scores], "center_scores", public=True)
    indices = b.op("Identity", [indices], "center_indices", public=True)
    offsets = str(p["offsets"])
    outputs += [_value_info(b, scores, b.onnx.TensorProto.FLOAT, [1, "centers"]),
                _value_info(b, indices, b.onnx.TensorProto.INT64, [1, "centers"]),
                _graph_output(b, offsets)]
    return outputs, {**params, "semantic": classes, "semantic_argmax": True, "confidence": confidence,
                     "centers_folded": True, "center_scores": scores, "center_indices": indices}


def _heat_on_sure_things(b: _Graph, card: ModelCard, p: dict[str, Any], heat: str, classes: str,
                         confidence: str) -> str:
    """The decoder's centers_on_things in the graph: the heatmap is 0 off thing pixels and, with
    min_thing_confidence, off pixels whose class probability is under it."""
    thing_lut = np.zeros(max(c.id for c in card.classes) + 1, bool)
    for c in card.classes:
        thing_lut[c.id] = c.thing
    on = b.op("Gather", [b.const(thing_lut, "thing_lut", np.bool_), classes], "center_on_thing", axis=0)
    threshold = float(p["min_thing_confidence"])
    if threshold > 0:
        sure = b.op("GreaterOrEqual", [confidence, b.const(threshold, "thing_confidence")], "center_sure")
        on = b.op("And", [on, sure], "center_on_sure_thing")
    return str(b.op("Where", [on, heat, b.const(0.0, "heat_off_things")], "center_heat_on_things"))


def _post_yolo_seg(b: _Graph, card: ModelCard, params: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    p = {**YOLO_DEFAULTS, **params}
    if p["assembled"]:
        raise ModelCardError(f"model card {card.name!r} describes an already folded graph", "fold the original model")
    head, protos = str(p["output0"]), str(p["protos"])
    head_dims, proto_dims = _static_dims(b, head), _static_dims(b, protos)
    if len(head_dims) != 3 or len(proto_dims) != 4 or None in (head_dims[1], head_dims[2], *proto_dims[1:]):
        raise ModelMismatchError(f"yolo_seg folding needs static {head} [1, 4 + nc + 32, N] and {protos} "
                                 f"[1, 32, h, w]; got {head_dims} and {proto_dims}", "export with static shapes")
    nm, mh, mw = (int(d or 0) for d in proto_dims[1:])
    end2end = head_dims[2] == 6 + nm if p["end2end"] == "auto" else bool(p["end2end"])
    if end2end:
        boxes, scores, class_ids, coeffs = _yolo_end2end_rows(b, _as_float(b, head), nm, p)
    else:
        boxes, scores, class_ids, coeffs = _yolo_nms(b, _as_float(b, head), int(head_dims[1] or 0) - 4 - nm, nm, p)
    protos = _as_float(b, protos)
    flat_protos = b.op("Reshape", [protos, b.const([nm, mh * mw], "proto_shape", np.int64)], "protos_flat")
    logits = b.op("MatMul", [coeffs, flat_protos], "mask_logits")
    masks = b.op("Reshape", [logits, b.const([-1, mh, mw], "mask_shape", np.int64)], "masks", public=True)
    i64, f32 = b.onnx.TensorProto.INT64, b.onnx.TensorProto.FLOAT
    outputs = [_value_info(b, boxes, f32, ["detections", 4]), _value_info(b, scores, f32, ["detections"]),
               _value_info(b, class_ids, i64, ["detections"]), _value_info(b, masks, f32, ["detections", mh, mw])]
    new_params = {**params, "assembled": True, "mask_logits": True, "boxes": boxes, "scores": scores,
                  "class_ids": class_ids, "masks": masks}
    new_params.pop("end2end", None)
    if p["semantic"]:
        sem_outputs, classes, confidence = _fold_argmax(b, str(p["semantic"]))
        outputs += sem_outputs
        new_params.update({"semantic": classes, "semantic_confidence": confidence})
    return outputs, new_params


def _yolo_nms(b: _Graph, head: str, nc: int, nm: int, p: dict[str, Any]) -> tuple[str, str, str, str]:
    """Raw head [1, 4 + nc + nm, N] -> kept boxes (xyxy), scores, class ids, coefficients, best first."""
    if nc < 1:
        raise ModelMismatchError(f"{head} leaves no class scores beside {nm} mask coefficients",
                                 "check output0/protos in the card")
    rows = b.op("Transpose", [b.squeeze(head, 0, "pred")], "anchors", perm=[1, 0])  # [N, 4 + nc + nm]
    xywh = b.slice(rows, 0, 4, 1, "xywh")
    cls = b.slice(rows, 4, 4 + nc, 1, "class_scores")
    coef = b.slice(rows, 4 + nc, 4 + nc + nm, 1, "coefficients")
    best = b.reduce_max(cls, 1, 0, "best")
    k1 = b.capped_count(best, 0, int(p["max_candidates"]), "candidates_k")
    top_scores, top_idx = b.op("TopK", [best, k1], "candidates", outputs=2, axis=0, largest=1, sorted=1)
    cls_k = b.op("Gather", [cls, top_idx], "cand_class_scores", axis=0)
    label = b.op("ArgMax", [cls_k], "cand_label", axis=1, keepdims=0)
    # only the best class of each anchor competes (as in the numpy decoder), never a second label
    onehot = b.op("Equal", [b.unsqueeze(label, 1, "label_col"), b.const(np.arange(nc), "class_range", np.int64)],
                  "onehot")
    per_class = b.op("Where", [onehot, b.unsqueeze(top_scores, 1, "score_col"), b.const(0.0, "no_score")], "per_class")
    nms_scores = b.unsqueeze(b.op("Transpose", [per_class], "per_class_t", perm=[1, 0]), 0, "nms_scores")
    cand_xywh = b.op("Gather", [xywh, top_idx], "cand_xywh", axis=0)
    center = b.slice(cand_xywh, 0, 2, 1, "center")
    half = b.op("Div", [b.slice(cand_xywh, 2, 4, 1, "size"), b.const(2.0, "two")], "half")
    xyxy = b.op("Concat", [b.op("Sub", [center, half], "top_left"), b.op("Add", [center, half], "bottom_right")],
                "xyxy", axis=1)
    selected = b.op("NonMaxSuppression", [
        b.unsqueeze(xyxy, 0, "nms_boxes"), nms_scores, b.const([int(p["max_detections"])], "max_per_class", np.int64),
        b.const([float(p["iou_threshold"])], "iou_thr"), b.const([float(p["conf_threshold"])], "conf_thr")], "nms")
    picked = b.op("Gather", [selected, b.const(2, "box_column", np.int64)], "picked", axis=1)
    picked_scores = b.op("Gather", [top_scores, picked], "picked_scores", axis=0)
    k2 = b.capped_count(picked_scores, 0, int(p["max_detections"]), "detections_k")
    final_scores, order = b.op("TopK", [picked_scores, k2], "final", outputs=2, axis=0, largest=1, sorted=1)
    final = b.op("Gather", [picked, order], "final_index", axis=0)
    boxes = b.op("Gather", [xyxy, final], "boxes", public=True, axis=0)
    scores = b.op("Identity", [final_scores], "scores", public=True)
    class_ids = b.op("Gather", [label, final], "class_ids", public=True, axis=0)
    coeffs = b.op("Gather", [b.op("Gather", [coef, top_idx], "cand_coef", axis=0), final], "det_coef", axis=0)
    return boxes, scores, class_ids, coeffs


def _yolo_end2end_rows(b: _Graph, head: str, nm: int, p: dict[str, Any]) -> tuple[str, str, str, str]:
    """NMS-free head [1, K, 6 + nm] (x1, y1, x2, y2, score, class, coefficients): threshold and cap only."""
    rows = b.squeeze(head, 0, "rows")
    score = b.squeeze(b.slice(rows, 4, 5, 1, "score_col"), 1, "row_scores")
    above = b.op("NonZero", [b.op("Greater", [score, b.const(float(p["conf_threshold"]), "conf")], "above")], "nz")
    passing = b.squeeze(above, 0, "passing")
    passing_scores = b.op("Gather", [score, passing], "passing_scores", axis=0)
    k = b.capped_count(passing_scores, 0, int(p["max_detections"]), "detections_k")
    final_scores, order = b.op("TopK", [passing_scores, k], "final", outputs=2, axis=0, largest=1, sorted=1)
    kept = b.op("Gather", [rows, b.op("Gather", [passing, order], "final_index", axis=0)], "kept_rows", axis=0)
    boxes = b.op("Identity", [b.slice(kept, 0, 4, 1, "kept_boxes")], "boxes", public=True)
    scores = b.op("Identity", [final_scores], "scores", public=True)
    class_ids = b.op("Cast", [b.squeeze(b.slice(kept, 5, 6, 1, "kept_class"), 1, "kept_class_1d")], "class_ids",
                     public=True, to=b.onnx.TensorProto.INT64)
    coeffs = b.slice(kept, 6, 6 + nm, 1, "det_coef")
    return boxes, scores, class_ids, coeffs


_POST = {
    "semantic": _post_semantic,
    "panoptic_deeplab": _post_panoptic_deeplab,
    "yolo_seg": _post_yolo_seg,
}


def fold(model_path: str | Path, card: ModelCard | str | Path, out_path: str | Path,
         post: bool = False) -> Path:
    """Write the folded ONNX to out_path and its card next to it (same stem, .toml); return the card path."""
    from perception.tools.inspect import render_card

    onnx = _onnx()
    card = card if isinstance(card, ModelCard) else load_card(card)
    model_path, out_path = Path(model_path), Path(out_path)
    if not model_path.is_file():
        raise ModelCardError(f"model file {model_path} does not exist", "pass the ONNX the card describes")
    if out_path.resolve() == model_path.resolve():
        raise ModelCardError(f"--out {out_path} would overwrite the input model", "write the folded model elsewhere")
    try:
        model = onnx.load(str(model_path))
    except Exception as exc:  # onnx raises protobuf's own DecoderError for files that are not ONNX
        raise ModelMismatchError(f"{model_path} is not a readable ONNX model ({exc})",
                                 "check the file (perception inspect MODEL.onnx)") from exc
    folded, data = fold_model(model, card, post)
    data["onnx"] = out_path.name
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(folded, str(out_path))
    card_path = out_path.with_suffix(".toml")
    card_path.write_text(render_card(data), encoding="utf-8")
    return card_path
