"""Model cards: the TOML file next to each ONNX saying how to feed it and read it.

A card names the input tensor and its size, layout, color order, normalization and
resize policy, the class list with thing/stuff flags, and the decoder with its thresholds.
A classic card (kind = "classic") names a weight-free method and its params instead of an
ONNX file and a decoder; its [input] is the working resolution frames are resized to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perception.core.tomlcompat import read_toml
from perception.models.errors import ModelCardError

LAYOUTS = ("NCHW", "NHWC")
COLORS = ("RGB", "BGR")
RESIZES = ("stretch", "letterbox")
INPUT_DTYPES = ("float32", "float16", "uint8")
KINDS = ("network", "classic")
# a classic method reads the resized BGR frame as it is
CLASSIC_INPUT = {"layout": "NHWC", "color": "BGR", "dtype": "uint8"}
SYNTHETIC_DOMAIN = "synthetic"


@dataclass(frozen=True)
class ClassInfo:
    id: int
    name: str
    thing: bool


@dataclass(frozen=True)
class InputSpec:
    """How a BGR uint8 frame becomes the network's input tensor: (x * scale - mean) / std."""

    name: str
    width: int
    height: int
    layout: str = "NCHW"
    color: str = "RGB"
    dtype: str = "float32"
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    resize: str = "stretch"
    pad_value: int = 114


@dataclass(frozen=True)
class ModelCard:
    name: str
    onnx: Path | None  # None for classic cards
    decoder: str
    input: InputSpec
    classes: tuple[ClassInfo, ...]
    decoder_params: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    # what the model was trained on; "synthetic": perception.synth scenes only (the shipped model),
    # so its scores mean nothing on camera footage and the accuracy gate can use synthetic drives
    domain: str = ""
    path: Path | None = None
    kind: str = "network"
    method: str = ""  # classic cards: the method's registry name
    params: dict[str, Any] = field(default_factory=dict)  # classic cards: the method's parameters

    @property
    def model_file(self) -> Path:
        """The ONNX file; a classic card has none."""
        if self.onnx is None:
            raise ModelCardError(f"model card {self.path or self.name} is a classic card (method {self.method!r}) "
                                 "and has no ONNX model", "pass the card of a network, e.g. engines/panoptic-tiny.toml")
        return self.onnx

    @property
    def synthetic_domain(self) -> bool:
        return self.domain == SYNTHETIC_DOMAIN

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    def to_dict(self) -> dict[str, Any]:
        """Plain-data view for the metadata topic and recordings."""
        spec = self.input
        model: dict[str, Any] = (
            {"kind": self.kind, "method": self.method, "params": dict(self.params)} if self.kind == "classic"
            else {"onnx": self.model_file.name, "decoder": self.decoder, "decoder_params": dict(self.decoder_params)})
        return {
            "name": self.name,
            "description": self.description,
            "domain": self.domain,
            **model,
            "input": {
                "name": spec.name,
                "width": spec.width,
                "height": spec.height,
                "layout": spec.layout,
                "color": spec.color,
                "dtype": spec.dtype,
                "scale": spec.scale,
                "mean": list(spec.mean),
                "std": list(spec.std),
                "resize": spec.resize,
                "pad_value": spec.pad_value,
            },
            "classes": [{"id": c.id, "name": c.name, "thing": c.thing} for c in self.classes],
        }


_TOP_KEYS = {"name", "onnx", "decoder", "input", "classes", "decoder_params", "description", "domain", "kind"}
_CLASSIC_KEYS = {"name", "kind", "method", "params", "input", "classes", "description", "domain"}
_INPUT_KEYS = set(InputSpec.__dataclass_fields__)


def load_card(path: str | Path) -> ModelCard:
    """Read and validate a card; every problem names the file and the fix."""
    path = Path(path)
    data = read_toml(path, "model card", ModelCardError, "pass the .toml card that sits next to the ONNX")
    return card_from_dict(data, path)


def card_from_dict(data: dict[str, Any], path: Path) -> ModelCard:
    where = f"model card {path}"
    kind = data.get("kind", "network")
    if kind not in KINDS:
        raise ModelCardError(f"{where} has kind = {kind!r}", f"use one of {KINDS} (network is the default)")
    if kind == "classic":
        return _classic_card(data, path, where)
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ModelCardError(f"{where} has unknown keys {sorted(unknown)}", f"valid keys: {sorted(_TOP_KEYS)}")
    for key in ("name", "onnx", "decoder", "input", "classes"):
        if key not in data:
            raise ModelCardError(f"{where} lacks '{key}'", "see engines/*.toml for a complete card")
    raw_input = _table(data["input"], f"{where} [input]")
    unknown = set(raw_input) - _INPUT_KEYS
    if unknown:
        raise ModelCardError(f"{where} [input] has unknown keys {sorted(unknown)}", f"valid: {sorted(_INPUT_KEYS)}")
    spec = _input_spec(raw_input, where)
    classes = _classes(data["classes"], where)
    onnx = Path(str(data["onnx"]))
    if not onnx.is_absolute():
        onnx = path.parent / onnx
    return ModelCard(
        name=str(data["name"]),
        onnx=onnx,
        decoder=str(data["decoder"]),
        input=spec,
        classes=classes,
        decoder_params=dict(_table(data.get("decoder_params", {}), f"{where} [decoder_params]")),
        description=_text(data, "description", where),
        domain=_text(data, "domain", where),
        path=path,
    )


def _classic_card(data: dict[str, Any], path: Path, where: str) -> ModelCard:
    """A weight-free method: which one and its params; the method checks the params' ranges."""
    unknown = set(data) - _CLASSIC_KEYS
    if unknown:
        raise ModelCardError(f"{where} (kind = \"classic\") has unknown keys {sorted(unknown)}",
                             f"valid keys: {sorted(_CLASSIC_KEYS)}")
    for key in ("name", "method", "input", "classes"):
        if key not in data:
            raise ModelCardError(f"{where} lacks '{key}'", "see engines/classic-*.toml for complete classic cards")
    raw_input = dict(_table(data["input"], f"{where} [input]"))
    for key, wanted in CLASSIC_INPUT.items():
        if raw_input.setdefault(key, wanted) != wanted:
            raise ModelCardError(f"{where} [input] {key} = {raw_input[key]!r}: classic methods read {wanted}",
                                 f"drop the key or set {key} = \"{wanted}\"")
    raw_input.setdefault("name", "image")
    unknown = set(raw_input) - _INPUT_KEYS
    if unknown:
        raise ModelCardError(f"{where} [input] has unknown keys {sorted(unknown)}", f"valid: {sorted(_INPUT_KEYS)}")
    return ModelCard(
        name=str(data["name"]),
        onnx=None,
        decoder="",
        input=_input_spec(raw_input, where),
        classes=_classes(data["classes"], where),
        description=_text(data, "description", where),
        domain=_text(data, "domain", where),
        path=path,
        kind="classic",
        method=str(data["method"]),
        params=dict(_table(data.get("params", {}), f"{where} [params]")),
    )


def _text(data: dict[str, Any], key: str, where: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise ModelCardError(f"{where}: {key} = {value!r} is a {type(value).__name__}, expected a string",
                             f'write {key} = "..." (e.g. domain = "{SYNTHETIC_DOMAIN}" for a model trained on '
                             "perception.synth scenes)")
    return value


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ModelCardError(f"{where} must be a table", "write it as [section] with key = value lines")
    return value


def _input_spec(raw: dict[str, Any], where: str) -> InputSpec:
    try:
        spec = InputSpec(
            name=str(raw["name"]),
            width=int(raw["width"]),
            height=int(raw["height"]),
            layout=str(raw.get("layout", "NCHW")),
            color=str(raw.get("color", "RGB")),
            dtype=str(raw.get("dtype", "float32")),
            scale=float(raw.get("scale", 1.0 / 255.0)),
            mean=_triple(raw.get("mean", (0.0, 0.0, 0.0)), "mean", where),
            std=_triple(raw.get("std", (1.0, 1.0, 1.0)), "std", where),
            resize=str(raw.get("resize", "stretch")),
            pad_value=int(raw.get("pad_value", 114)),
        )
    except KeyError as exc:
        raise ModelCardError(f"{where} [input] lacks {exc}", "name, width and height are required") from exc
    except (TypeError, ValueError) as exc:
        raise ModelCardError(f"{where} [input] has a value of the wrong type ({exc})", "use numbers") from exc
    for value, allowed, key in (
        (spec.layout, LAYOUTS, "layout"),
        (spec.color, COLORS, "color"),
        (spec.resize, RESIZES, "resize"),
        (spec.dtype, INPUT_DTYPES, "dtype"),
    ):
        if value not in allowed:
            raise ModelCardError(f"{where} [input] {key} = {value!r} is not supported", f"use one of {allowed}")
    if spec.width <= 0 or spec.height <= 0:
        raise ModelCardError(f"{where} [input] size {spec.width}x{spec.height} is not positive", "fix it")
    if not 0 <= spec.pad_value <= 255:
        raise ModelCardError(f"{where} [input] pad_value = {spec.pad_value} is not a pixel value", "use 0..255")
    if any(s == 0 for s in spec.std):
        raise ModelCardError(f"{where} [input] std has a zero", "std values divide the input; use non-zero")
    return spec


def _triple(value: Any, key: str, where: str) -> tuple[float, float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise ModelCardError(f"{where} [input] {key} must be a list of 3 numbers", f"e.g. {key} = [0.5, 0.5, 0.5]")
    return (float(value[0]), float(value[1]), float(value[2]))


def _classes(raw: Any, where: str) -> tuple[ClassInfo, ...]:
    if not isinstance(raw, list) or not raw:
        raise ModelCardError(f"{where} has no [[classes]]", "list each class with id, name and thing")
    classes = []
    for entry in raw:
        if not isinstance(entry, dict) or not {"id", "name", "thing"} <= set(entry):
            raise ModelCardError(f"{where} has a class entry {entry!r} that is incomplete", "give id, name, thing")
        class_id, thing = entry["id"], entry["thing"]
        if isinstance(class_id, bool) or not isinstance(class_id, int) or class_id < 0:
            raise ModelCardError(f"{where} [[classes]] id = {class_id!r} (class {entry['name']!r}) is not a "
                                 "class id", "write id as an integer >= 0, the model's output index (no quotes)")
        if not isinstance(thing, bool):
            # bool("false") is True: a quoted flag would publish stuff as things
            raise ModelCardError(f"{where} [[classes]] id {class_id} thing = {thing!r} is a "
                                 f"{type(thing).__name__}, expected true or false",
                                 "write thing = true (countable objects) or thing = false (stuff), no quotes")
        classes.append(ClassInfo(id=class_id, name=str(entry["name"]), thing=thing))
    ids = [c.id for c in classes]
    if len(set(ids)) != len(ids):
        raise ModelCardError(f"{where} repeats class ids", "each class id must appear once")
    return tuple(classes)
