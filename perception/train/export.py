"""ONNX export of the trained model, checked against PyTorch with ONNX Runtime."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from perception.synth.scene import DEFAULT_HEIGHT, DEFAULT_WIDTH, random_scene
from perception.train.model import TinyPanoptic

OUTPUT_NAMES = ("semantic_logits", "center_heatmap", "offsets")
INPUT_NAME = "image"


@dataclass(frozen=True)
class ExportCheck:
    max_abs_diff: dict[str, float]
    argmax_agreement: float  # fraction of pixels whose semantic argmax matches PyTorch


def export_onnx(model: TinyPanoptic, path: Path, opset: int = 18,
                height: int = DEFAULT_HEIGHT, width: int = DEFAULT_WIDTH) -> Path:
    model = model.float().cpu().eval().to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    dummy = torch.rand(1, 3, height, width)
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(model, (dummy,), str(tmp), input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                      opset_version=opset, dynamo=True, external_data=False)
    import onnx

    proto = onnx.load(str(tmp))
    onnx.checker.check_model(proto)
    proto.doc_string = "tiny Panoptic-DeepLab trained on perception.synth scenes"
    onnx.save(proto, str(tmp))
    tmp.replace(path)
    return path


def check_export(model: TinyPanoptic, path: Path, seeds: tuple[int, ...] = (5_000_001, 5_000_002, 5_000_003),
                 ) -> ExportCheck:
    """Run PyTorch and ONNX Runtime on held-out scenes; report the largest output differences."""
    import onnxruntime as ort

    model = model.float().cpu().eval()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    diffs = dict.fromkeys(OUTPUT_NAMES, 0.0)
    agree, total = 0, 0
    for seed in seeds:
        bgr, _ = random_scene(seed)
        x = np.ascontiguousarray(bgr[:, :, ::-1].transpose(2, 0, 1)[None], np.float32) / 255.0
        with torch.no_grad():
            ref = [t.numpy() for t in model(torch.from_numpy(x))]
        got = session.run(list(OUTPUT_NAMES), {INPUT_NAME: x})
        for name, a, b in zip(OUTPUT_NAMES, ref, got, strict=True):
            diffs[name] = max(diffs[name], float(np.abs(a - b).max()))
        agree += int((ref[0].argmax(1) == got[0].argmax(1)).sum())
        total += ref[0].shape[2] * ref[0].shape[3]
    return ExportCheck(diffs, agree / total)
