"""Precision variant, accuracy gate, TensorRT plan: what `perception build-engine` does.

1. ONNX stage (any machine): FP16 by converting the graph, INT8 by symmetric Q/DQ calibration on
   frames through the card's preprocessing; the variant is scored with ONNX Runtime and refused
   above its PQ gate unless forced: with `frames`, against the FP32 model's own outputs on them
   (perception.tools.reference_gate, any model); without, a synthetic-domain model (card
   domain = "synthetic") against ground truth on held-out synthetic drives.
2. TensorRT stage (where TensorRT and a GPU are present): the plan is built with a persisted timing
   cache and a progress display, and stored in the plan cache. Without TensorRT the build stops
   after the ONNX stage and says so and how to install it: the variant is ready to copy.

Progress lines go to `say`, warnings to `warn` (the command prints them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from perception.core.errors import MissingDependencyError
from perception.inference.engine import EngineOptions
from perception.inference.errors import EngineError
from perception.inference.plan_cache import atomic_write, default_cache_dir
from perception.inference.tensorrt import variant_path
from perception.models.card import ModelCard, load_card
from perception.tools.precision import GATE_LIMITS, Evaluate, GateResult, PrecisionError, enforce, gate

Say = Callable[[str], None]


@dataclass(frozen=True)
class BuildRequest:
    model: Path  # the FP32 ONNX (its card MODEL.toml next to it) or the card
    precision: str = "fp16"
    calib: str = "synth"  # INT8 calibration frames: synth, synth:SEED, a drive .mcap or an image folder
    calib_frames: int = 64
    calib_method: str = "minmax"
    eval_frames: int = 40  # frames for the PQ gate (from `frames`, or held-out synthetic drives)
    frames: str | None = None  # gate frames for a user's own model: any replay source URI
    force: bool = False  # accept a variant above its accuracy gate
    cache_dir: Path | None = None  # default: $XDG_CACHE_HOME/perception/engines
    device: int = 0
    workspace_mib: int = 1024
    opt_level: int = 3
    max_batch: int = 1  # the plan's profile over a dynamic batch axis: 1..max_batch frames


def resolve(model: Path) -> tuple[Path, ModelCard | None]:
    """(FP32 ONNX, its card if there is one) from either path."""
    if model.suffix == ".toml":
        card = load_card(model)
        return card.model_file, card
    if not model.is_file():
        raise EngineError(f"model {model} does not exist", "pass the FP32 .onnx or its .toml card")
    card_path = model.with_suffix(".toml")
    return model, load_card(card_path) if card_path.is_file() else None


def build_engine(args: BuildRequest, say: Say, warn: Say) -> None:
    """Both stages; a stage that cannot run here is explained through say, not raised."""
    onnx_path, card = resolve(args.model)
    cache_root = args.cache_dir or default_cache_dir()
    if args.precision != "fp32":
        if card is None:
            raise PrecisionError(f"no model card next to {onnx_path}",
                                 "FP16/INT8 need the card (preprocessing, decoder) to calibrate and score the variant")
        target = variant_path(onnx_path, args.precision, cache_root)
        result = make_variant(onnx_path, card, target, args, say, warn)
        say(f"ONNX stage: {args.precision} variant {target}" + ("" if result else " (not scored)"))
    else:
        say(f"ONNX stage: FP32, {onnx_path} as is")
    tensorrt_stage(onnx_path, args, say)


def make_variant(onnx_path: Path, card: ModelCard, target: Path, args: BuildRequest, say: Say,
                 warn: Say) -> GateResult | None:
    """Write the variant next to its final name, gate it, then move it into place."""
    from perception.tools.precision import convert_fp16, load_onnx, quantize_int8

    onnx = load_onnx()  # the install hint, not a traceback, where the optional package is missing

    target.parent.mkdir(parents=True, exist_ok=True)
    candidate = target.with_name(f".{target.name}.{os.getpid()}.candidate.onnx")
    try:
        if args.precision == "fp16":
            onnx.save(convert_fp16(onnx.load(str(onnx_path))), str(candidate))
        else:
            from perception.tools.calibration import calibration_reader

            used = quantize_int8(onnx_path, candidate, calibration_reader(card, args.calib, args.calib_frames),
                                 method=args.calib_method)
            say(f"INT8: calibrated on {used} frames from {args.calib} ({args.calib_method})")
        result = _gate(onnx_path, card, candidate, args, say, warn)
        os.replace(candidate, target)
    finally:
        candidate.unlink(missing_ok=True)
    if result is not None:
        record = {"precision": result.precision, "baseline_pq": result.baseline_pq, "variant_pq": result.variant_pq,
                  "limit": result.limit, "passed": result.passed, "forced": bool(args.force and not result.passed),
                  "source": str(onnx_path), "calib": args.calib if args.precision == "int8" else None,
                  "scored_on": f"FP32 outputs on {args.frames}" if args.frames else "synthetic held-out drives"}
        atomic_write(target.with_suffix(".gate.json"), json.dumps(record, indent=2).encode())
    return result


def _gate(onnx_path: Path, card: ModelCard, candidate: Path, args: BuildRequest, say: Say,
          warn: Say) -> GateResult | None:
    evaluate = _evaluator(onnx_path, card, args, warn)
    if evaluate is None:
        return None
    result = gate(args.precision, onnx_path, candidate, evaluate, GATE_LIMITS)
    agreement = getattr(evaluate, "last", None)  # the reference gate's mask IoU and score drift
    say(f"gate: {result.summary()}" + (f"; {agreement.summary()}" if agreement is not None else ""))
    enforce(result, args.force)
    if not result.passed:
        warn(f"warning: accepted above the gate because of --force ({result.drop - result.limit:.2f} PQ over)")
    return result


def _evaluator(onnx_path: Path, card: ModelCard, args: BuildRequest, warn: Say) -> Evaluate | None:
    """What scores the variant: FP32's outputs on `frames`, or synthetic ground truth; None = unscored (forced)."""
    if args.frames is not None:
        from perception.tools.reference_gate import ReferenceEvaluator, user_frames

        return ReferenceEvaluator(card, onnx_path, user_frames(args.frames, args.eval_frames))
    if not card.synthetic_domain:
        # the synthetic drives' classes are not this model's: "PQ 0.00 vs FP32 0.00" would pass any gate
        problem = (f"model card {card.path or card.name} is not a synthetic-domain model, so the synthetic "
                   "held-out drives cannot score its variant")
        if not args.force:
            raise PrecisionError(problem, "pass --frames DRIVE.mcap|VIDEO|FOLDER (frames like deployment's) to "
                                          "judge it against the FP32 model's own outputs, or accept it unscored "
                                          "with --force")
        warn(f"warning: {problem}; variant accepted unscored because of --force")
        return None
    try:
        from perception.tools.accuracy import pq_evaluator

        return pq_evaluator(card, args.eval_frames)
    except (MissingDependencyError, ImportError) as exc:  # the evaluation stack is optional here
        if not args.force:
            raise PrecisionError(f"the accuracy gate cannot run here ({exc})",
                                 "install what it names, or accept the variant unscored with --force") from exc
        warn(f"warning: accuracy gate skipped ({exc}); variant accepted unscored because of --force")
        return None


def tensorrt_stage(onnx_path: Path, args: BuildRequest, say: Say) -> None:
    from perception.inference.trt_build import BuildOptions

    try:
        from perception.inference.tensorrt import TrtEngine

        engine = TrtEngine(onnx_path, EngineOptions(device=args.device, precision=args.precision,
                                                    cache_dir=args.cache_dir, max_batch=args.max_batch),
                           build=BuildOptions(workspace_mib=args.workspace_mib, optimization_level=args.opt_level))
    except MissingDependencyError as exc:
        say(f"TensorRT stage skipped: {exc.problem}.\n  install: {exc.fix}\n"
            f"  the ONNX stage is done; run this command again where TensorRT and a GPU are present")
        return
    with engine:
        say(f"TensorRT stage: plan {engine.plan.status} at {engine.plan.path}")
        say(f"  TensorRT {engine.key.tensorrt_version} on {engine.key.gpu_name} (cc {engine.key.compute_capability})")
        for spec in (*engine.inputs, *engine.outputs):
            say(f"  {spec.name}: {list(spec.shape)} {spec.dtype}")
