"""Preprocess -> engine -> decode for one frame: the path the node, eval and bench share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

import numpy as np

from perception.core.errors import ModelMismatchError
from perception.core.frame import Stage, StageStamps, monotonic_ns
from perception.core.segmentation import Segmentation
from perception.inference.engine import Engine, EngineOptions, open_engine
from perception.models.card import ModelCard, load_card
from perception.models.classic import open_classic
from perception.models.classic.base import LabelDecoder
from perception.models.decoders import Decoder, make_decoder
from perception.models.decoders.base import card_classes_check, model_classes
from perception.models.preprocess import Geometry, Preprocessor


class Prepared(NamedTuple):
    tensor: np.ndarray
    geometry: Geometry


class Inferred(NamedTuple):
    outputs: dict[str, np.ndarray]
    geometry: Geometry


@dataclass(frozen=True)
class PipelineSpec:
    card: Path
    engine: str = "onnxruntime"
    options: EngineOptions = field(default_factory=EngineOptions)


class Pipeline:
    """Owns the engine; checks once at start that card, graph and decoder agree."""

    def __init__(self, card: ModelCard, engine: Engine, decoder: Decoder | None = None) -> None:
        self.card = card
        self.engine = engine
        self.preprocessor = Preprocessor(card.input)
        self.decoder = decoder or make_decoder(card)
        self._copy_outputs = bool(getattr(engine, "reuses_outputs", True))
        self._warm = False
        self._check()

    @classmethod
    def open(cls, spec: PipelineSpec) -> Pipeline:
        return cls.from_card(load_card(spec.card), spec.engine, spec.options)

    @classmethod
    def from_card(cls, card: ModelCard, engine_name: str = "onnxruntime",
                  options: EngineOptions | None = None) -> Pipeline:
        if card.kind == "classic":  # a weight-free method stands where the engine would, no ONNX
            return cls(card, open_classic(card), LabelDecoder(card))
        engine = open_engine(engine_name, card.model_file, options)
        try:
            return cls(card, engine)
        except BaseException:
            engine.close()
            raise

    def _check(self) -> None:
        spec = self.card.input
        inputs = {i.name: i for i in self.engine.inputs}
        model = self.card.onnx.name if self.card.onnx else self.engine.name
        where = f"model {model} and its card {self.card.path or self.card.name}"
        if spec.name not in inputs:
            raise ModelMismatchError(f"{where} disagree: the card's input {spec.name!r} is not in the graph "
                                     f"(inputs: {sorted(inputs)})", "set [input] name in the card")
        tensor = inputs[spec.name]
        expected = (1, 3, spec.height, spec.width) if spec.layout == "NCHW" else (1, spec.height, spec.width, 3)
        if len(tensor.shape) != 4 or any(isinstance(d, int) and d != e for d, e in zip(tensor.shape, expected,
                                                                                         strict=True)):
            raise ModelMismatchError(f"{where} disagree: graph input {tensor.shape}, card says {expected} "
                                     f"({spec.layout} {spec.width}x{spec.height})",
                                     "set [input] width/height/layout in the card to the graph's")
        if tensor.dtype != spec.dtype:
            raise ModelMismatchError(f"{where} disagree: graph input is {tensor.dtype}, card says {spec.dtype}",
                                     "set [input] dtype in the card")
        card_classes_check(self.card, model_classes(self.decoder, self.engine.outputs), model)
        self.decoder.check(self.engine.outputs)

    def warm_up(self, runs: int) -> None:
        """First inferences allocate and tune; do them before the first real frame. An engine
        that already ran (a fleet worker's next drive) is only reset."""
        spec = self.card.input
        shape = (1, 3, spec.height, spec.width) if spec.layout == "NCHW" else (1, spec.height, spec.width, 3)
        blank = np.zeros(shape, np.dtype(spec.dtype))
        for _ in range(0 if self._warm else runs):
            self.engine.infer({spec.name: blank})
        self._warm = True
        self.reset()  # a stateful segmenter must not remember the blank frames, nor the last drive

    def reset(self) -> None:
        """Start a new scene: stateful segmenters (the motion method's background) forget the last one."""
        reset = getattr(self.engine, "reset", None)
        if reset is not None:
            reset()

    def prepare(self, image: np.ndarray) -> Prepared:
        """The engine input for one BGR frame (any thread may do this; the node's capture thread does)."""
        tensor, geometry = self.preprocessor(image)
        return Prepared(tensor, geometry)

    @property
    def max_batch(self) -> int | None:
        """Frames one engine call takes: the graph's fixed batch, the top of a TensorRT plan's batch
        profile, or None where any batch goes (ONNX Runtime on a dynamic batch axis)."""
        batch = {i.name: i for i in self.engine.inputs}[self.card.input.name].shape[0]
        return batch if isinstance(batch, int) else getattr(self.engine, "max_batch", None)

    def run_batch(self, prepared: list[Prepared], stamps: list[StageStamps]) -> list[Inferred]:
        """One engine call on several frames (a dynamic batch axis); each gets its own outputs and stamps."""
        if len(prepared) == 1:
            stamps[0].mark(Stage.BATCH)
            return [self.run_engine(prepared[0], stamps[0])]
        started = monotonic_ns()
        for s in stamps:
            s.mark(Stage.BATCH, started)
        tensor = np.concatenate([p.tensor for p in prepared], axis=0)
        outputs = self.engine.infer({self.card.input.name: tensor})
        done = monotonic_ns()
        inferred = []
        for i, (p, s) in enumerate(zip(prepared, stamps, strict=True)):
            # slices copied: each frame is decoded on its own, while the engine runs the next batch
            inferred.append(Inferred({name: array[i:i + 1].copy() for name, array in outputs.items()}, p.geometry))
            s.mark(Stage.INFERENCE, done)
        return inferred

    def run_engine(self, prepared: Prepared, stamps: StageStamps) -> Inferred:
        """Run the engine on a prepared input (the part that holds the engine)."""
        outputs = self.engine.infer({self.card.input.name: prepared.tensor})
        if self._copy_outputs:
            # the node decodes frame N while the engine runs N+1 and N+2: buffers an engine
            # reuses (TensorRT's pinned host slots) would be overwritten under the decoder
            outputs = {name: array.copy() for name, array in outputs.items()}
        stamps.mark(Stage.INFERENCE)
        return Inferred(outputs, prepared.geometry)

    def infer(self, image: np.ndarray, stamps: StageStamps) -> Inferred:
        """Preprocess and run the engine."""
        prepared = self.prepare(image)
        stamps.mark(Stage.PREPROCESS)
        return self.run_engine(prepared, stamps)

    def decode(self, inferred: Inferred, stamps: StageStamps) -> Segmentation:
        """Decode engine outputs to the segmentation at source resolution (no engine needed)."""
        stamps.mark(Stage.HANDOFF)  # the wait before this, in the node's hand-off queue, is not decoding
        result = self.decoder.decode(inferred.outputs, inferred.geometry)
        stamps.mark(Stage.POSTPROCESS)
        return result

    def process(self, image: np.ndarray, stamps: StageStamps | None = None) -> Segmentation:
        stamps = stamps or StageStamps()
        return self.decode(self.infer(image, stamps), stamps)

    def close(self) -> None:
        self.engine.close()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
