"""`engine = "tensorrt"` with `fallback = "onnxruntime"`: serve at once, build the plan aside, swap.

At start: a cached, trusted plan for this model, TensorRT and GPU is loaded and served from the
first frame. Otherwise the node serves on the fallback engine while a separate process
(plan_builder) builds the plan; when it is ready it is loaded, run on the last few frames the
fallback served, decoded, and compared with the fallback's results; only a plan within the
precision gate's tolerance is swapped in, between two frames (SwappableEngine). Everything
that goes wrong leaves the node on the fallback with one error status naming cause and fix,
and a failure record in the plan cache so the next start does not repeat a build that will fail
again (a changed model, TensorRT, GPU, builder options or a looser limit retries).

The node reads `detail()` for its ready heartbeat and publishes `take_events()` as they come.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from perception.core.errors import PerceptionError
from perception.core.queues import drain
from perception.inference.engine import Engine, EngineOptions, open_engine
from perception.inference.errors import EngineError
from perception.inference.plan_builder import BuilderProcess, BuildJob, BuildLimits, BuildOutcome
from perception.inference.plan_cache import CorruptPlanError, PlanCache, PlanKey
from perception.inference.swappable import SwappableEngine
from perception.models.card import ModelCard
from perception.models.preprocess import Geometry
from perception.runtime.agreement import unmatched_area_percent
from perception.runtime.pipeline import Pipeline

log = logging.getLogger(__name__)

CHECK_FRAMES = 3  # frames the new plan and the fallback must agree on before the swap
SAMPLE_WAIT_S = 30.0  # how long to wait for served frames to check on before using blank ones


@dataclass(frozen=True)
class EngineEvent:
    """One-off status for the node to publish: state "ready" (news) or "error"; swapped: new metadata."""

    state: str
    detail: str
    swapped: bool = False


@dataclass(frozen=True)
class LifecycleSettings:
    engine: str  # the wanted engine: "tensorrt"
    fallback: str  # what serves until it is ready: "onnxruntime"
    options: EngineOptions
    limits: BuildLimits


class EngineLifecycle:
    """Opens the pipeline on the best engine available now and upgrades it in the background."""

    def __init__(self, card: ModelCard, settings: LifecycleSettings) -> None:
        self.card, self.settings = card, settings
        self.cache = PlanCache(settings.options.cache_dir)
        self._events: queue.SimpleQueue[EngineEvent] = queue.SimpleQueue()
        self._detail = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._builder: BuilderProcess | None = None
        self._engine: SwappableEngine | None = None

    # ------------------------------------------------------------ what the node reads

    def detail(self) -> str:
        return self._detail

    def take_events(self) -> list[EngineEvent]:
        return drain(self._events)

    def close(self) -> None:
        """Stop a build in progress and wait for the background thread (before the pipeline closes)."""
        self._stop.set()
        if self._builder is not None:
            self._builder.cancel()
        if self._thread is not None:
            self._thread.join(timeout=30.0)

    # ------------------------------------------------------------ start

    def open_pipeline(self) -> Pipeline:
        s = self.settings
        plan_path = self._gpu_plan()
        if isinstance(plan_path, Pipeline):
            return plan_path
        fallback = open_engine(s.fallback, self.card.model_file, self._fallback_options())
        self._engine = SwappableEngine(fallback, keep_samples=CHECK_FRAMES)
        try:
            pipeline = Pipeline(self.card, self._engine)
        except BaseException:
            self._engine.close()
            raise
        if plan_path is not None:
            self._engine.recording = True
            self._thread = threading.Thread(target=self._build_and_swap, args=plan_path, daemon=True,
                                            name="engine-lifecycle")
            self._thread.start()
        return pipeline

    def _gpu_plan(self) -> Pipeline | tuple[Path, PlanKey] | None:
        """A pipeline on the cached plan; or (variant, key) to build in the background; or None (fallback only)."""
        s = self.settings
        try:
            trt, device_name, capability = _probe(s.options.device)
        except PerceptionError as exc:
            self._unavailable(str(exc))
            return None
        from perception.inference.tensorrt import plan_key, variant_path
        from perception.inference.trt_build import BuildOptions

        onnx = variant_path(self.card.model_file, s.options.precision, self.cache.root)
        if not onnx.is_file():
            self._fail(f"the {s.options.precision} ONNX variant {onnx.name} does not exist",
                       f"run `perception build-engine {self.card.path or self.card.model_file} --precision "
                       f"{s.options.precision}` once (it makes and gates the variant)", key=None)
            return None
        try:
            key, _ = plan_key(trt, device_name, capability, onnx.read_bytes(), s.options.precision,
                              BuildOptions(max_batch=s.options.max_batch))
        except PerceptionError as exc:
            self._fail(exc.problem, exc.fix, key=None)
            return None
        failure = self.cache.failure(key)
        if failure is not None and not failure.retry_allowed(s.limits.as_record()):
            self._fail(f"{failure.cause} (at {failure.when}; not retried until the model, TensorRT, GPU or "
                       "limits change)", f"{failure.fix}; `perception engines prune --failures` retries now",
                       key=None)
            return None
        cached = self._open_cached(key)
        if cached is not None:
            self._detail = f"serving on {s.engine} (cached plan)"
            return cached
        reasons = self.cache.stale_for(key)
        if reasons:
            log.warning("cached TensorRT plan(s) of this model are not for this machine (%s); building one in the "
                        "background", "; ".join(reasons))
            self._events.put(EngineEvent("ready", f"cached plan not loaded ({'; '.join(reasons)}); "
                                                  "building one for this machine"))
        self._detail = f"serving on {s.fallback}; {s.engine} plan building (0%)"
        return onnx, key

    def _open_cached(self, key: PlanKey) -> Pipeline | None:
        """The cached plan as a pipeline, or None when there is none or it cannot be trusted (then removed)."""
        from perception.inference.tensorrt import PlanMissingError, TrtEngine

        s = self.settings
        try:
            swappable = SwappableEngine(TrtEngine(self.card.model_file, s.options, cache=self.cache, build_here=False))
        except PlanMissingError:
            return None
        except EngineError as exc:  # a foreign, damaged or unloadable plan: never served, rebuilt
            self._refuse_cached(key, exc)
            return None
        try:
            return Pipeline(self.card, swappable)
        except PerceptionError as exc:
            swappable.close()
            self._refuse_cached(key, exc)
            return None

    def _refuse_cached(self, key: PlanKey, exc: PerceptionError) -> None:
        self.cache.remove(key)
        log.warning("cached TensorRT plan refused (%s); rebuilding it in the background", exc.problem)
        self._events.put(EngineEvent("ready", f"cached plan refused ({exc.problem}); rebuilding it"))

    def _fallback_options(self) -> EngineOptions:
        """The fallback serves the card's FP32 model: the reference the precision gate measures against."""
        return dataclasses.replace(self.settings.options, precision="fp32")

    def _unavailable(self, reason: str) -> None:
        s = self.settings
        line = f"serving on {s.fallback}: {s.engine} is not usable here ({reason})"
        log.warning("%s", line)
        self._events.put(EngineEvent("ready", line))
        self._detail = f"serving on {s.fallback}"

    def _fail(self, cause: str, fix: str, key: PlanKey | None) -> None:
        """Stay on the fallback; one error status; remember the failure of key."""
        s = self.settings
        if key is not None:
            self.cache.record_failure(key, cause, fix, s.limits.as_record())
        log.error("%s: %s", cause, fix)
        self._events.put(EngineEvent("error", f"{s.engine}: {cause}: {fix}"))
        self._detail = f"serving on {s.fallback}; {s.engine} failed ({cause})"

    # ------------------------------------------------------------ background

    def _build_and_swap(self, onnx: Path, key: PlanKey) -> None:
        s, engine = self.settings, self._engine
        assert engine is not None
        try:
            outcome = self._build(onnx, key)
            if outcome is None or self._stop.is_set():
                return
            if not outcome.ok:
                self._fail(outcome.cause, outcome.fix, key)
                return
            self.cache.forget_failure(key)  # this build succeeded where an earlier one, under tighter limits, failed
            candidate = self._load_checked(key)
            if candidate is None:
                return
            took = outcome.seconds

            def swapped(old: Engine) -> None:
                engine.recording = False
                self._events.put(EngineEvent("ready", f"switched from {old.name} to {s.engine} (plan built in "
                                                      f"{took:.1f} s, agrees on {CHECK_FRAMES} frames)", True))
                self._detail = f"serving on {s.engine}"  # after the news, which the node publishes first

            try:
                engine.offer(candidate, swapped)
            except BaseException:
                candidate.close()
                raise
        except PerceptionError as exc:
            self._fail(exc.problem, exc.fix, key)
        except Exception as exc:  # a bug here must not end the node serving on the fallback
            log.exception("engine lifecycle failed")
            self._fail(f"unexpected {type(exc).__name__}: {exc}", "report this bug", key=None)

    def _build(self, onnx: Path, key: PlanKey) -> BuildOutcome | None:
        s = self.settings

        def progress(fraction: float) -> None:
            self._detail = f"serving on {s.fallback}; {s.engine} plan building ({fraction:.0%})"

        job = BuildJob(onnx=str(onnx), precision=s.options.precision, device=s.options.device,
                       cache_dir=str(self.cache.root), key_digest=key.digest(), max_batch=s.options.max_batch)
        self._builder = BuilderProcess(job, s.limits, self.cache.root / f"{key.digest()}.build.log", progress)
        if self._stop.is_set():
            return None
        outcome = self._builder.run()
        log.info("TensorRT plan build %s in %.1f s", "finished" if outcome.ok else "failed", outcome.seconds)
        return outcome

    def _load_checked(self, key: PlanKey) -> Engine | None:
        """The built plan, loaded and compared with the fallback on served frames; None if refused."""
        from perception.inference.tensorrt import GATE_LIMITS, TrtEngine

        s = self.settings
        candidate = TrtEngine(self.card.model_file, s.options, cache=self.cache, build_here=False)
        try:
            if candidate.key != key:
                raise CorruptPlanError("the loaded plan's key is not the one built", "perception engines clear")
            checker = Pipeline(self.card, candidate)  # the card's I/O against the plan's
            limit = GATE_LIMITS[s.options.precision]
            samples = self._samples()
            if not samples:  # the node is stopping
                candidate.close()
                return None
            worst = max(self._disagreement(checker, inputs, outputs) for inputs, outputs in samples)
            if worst > limit:
                self.cache.remove(key)
                self._fail(f"the built plan disagrees with {s.fallback}: segments covering {worst:.1f}% of the "
                           f"image are not found in both (tolerance {limit:g}% for {s.options.precision})",
                           "check the ONNX opset and TensorRT version (perception doctor), then `perception "
                           "engines prune --failures`", key)
                candidate.close()
                return None
        except BaseException:
            candidate.close()
            self.cache.remove(key)  # a plan that failed its checks is never served, also not next start
            raise
        return candidate

    def _samples(self) -> list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
        """Frames the fallback served (waiting a while for them); a blank frame where none came; [] if stopping."""
        engine = self._engine
        assert engine is not None
        deadline = time.monotonic() + SAMPLE_WAIT_S
        while len(engine.samples()) < CHECK_FRAMES and time.monotonic() < deadline and not self._stop.is_set():
            self._stop.wait(0.05)
        samples = engine.samples()
        if samples or self._stop.is_set():
            return samples
        spec = self.card.input
        shape = (1, 3, spec.height, spec.width) if spec.layout == "NCHW" else (1, spec.height, spec.width, 3)
        blank = {spec.name: np.zeros(shape, np.dtype(spec.dtype))}
        reference = open_engine(self.settings.fallback, self.card.model_file, self._fallback_options())
        with reference:
            return [(blank, reference.infer(blank))]

    def _disagreement(self, checker: Pipeline, inputs: dict[str, np.ndarray],
                      reference: dict[str, np.ndarray]) -> float:
        """Percent of the image in segments the candidate and the fallback do not share (runtime.agreement)."""
        spec = self.card.input
        geometry = Geometry(spec.height, spec.width, spec.height, spec.width, 1.0, 1.0, 0, 0)
        mine = checker.decoder.decode(checker.engine.infer(inputs), geometry)
        return unmatched_area_percent(checker.decoder.decode(reference, geometry), mine)


def _probe(device: int) -> tuple[ModuleType, str, str]:
    """TensorRT and the GPU, or the PerceptionError that says why not."""
    from perception.inference.cuda import CudaDevice
    from perception.inference.trt_build import load_tensorrt

    trt = load_tensorrt()
    with CudaDevice(device) as gpu:
        return trt, gpu.name, gpu.compute_capability
