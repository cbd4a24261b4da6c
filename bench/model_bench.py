"""Latency of the shipped model on this machine: ONNX Runtime inference at 1 and 2 threads,
preprocessing and decoding (medians over held-out synthetic frames).

    python bench/model_bench.py [--card engines/panoptic-tiny.toml] [--runs 100] [--json]

Timings are wall-clock (time.perf_counter) around each call, after warm-up runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from perception.inference.engine import EngineOptions, open_engine
from perception.models.card import load_card
from perception.models.decoders import make_decoder
from perception.models.preprocess import Preprocessor
from perception.synth import Drive

ROOT = Path(__file__).resolve().parent.parent


def _ms(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples) * 1000
    return {"median_ms": round(float(np.median(a)), 3), "p90_ms": round(float(np.percentile(a, 90)), 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--card", type=Path, default=ROOT / "engines" / "panoptic-tiny.toml")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    card = load_card(args.card)
    pre = Preprocessor(card.input)
    decoder = make_decoder(card)
    frames = [f.bgr for f in Drive(11, frames=20, fps=2.0)]
    tensors = [pre(bgr) for bgr in frames]
    results: dict[str, object] = {"model": card.name, "input": f"{card.input.width}x{card.input.height}",
                                  "onnxruntime": ort.__version__, "cpu": platform.processor() or platform.machine(),
                                  "runs": args.runs}
    outputs: list[dict[str, np.ndarray]] = []
    timings: dict[str, dict[str, float]] = {}
    for threads in (1, 2):
        with open_engine("onnxruntime", card.model_file, EngineOptions(threads=threads)) as engine:
            for i in range(args.warmup):
                engine.infer({card.input.name: tensors[i % len(tensors)][0]})
            samples = []
            for i in range(args.runs):
                feed = {card.input.name: tensors[i % len(tensors)][0]}
                t = time.perf_counter()
                out = engine.infer(feed)
                samples.append(time.perf_counter() - t)
                if threads == 1 and len(outputs) < len(tensors):
                    outputs.append(out)
            timings[f"inference_{threads}_thread"] = _ms(samples)
    pre_samples, dec_samples = [], []
    for i in range(args.runs):
        bgr = frames[i % len(frames)]
        t = time.perf_counter()
        _, geometry = pre(bgr)
        pre_samples.append(time.perf_counter() - t)
        out = outputs[i % len(outputs)]
        t = time.perf_counter()
        decoder.decode(out, geometry)
        dec_samples.append(time.perf_counter() - t)
    timings["preprocess"] = _ms(pre_samples)
    timings["decode"] = _ms(dec_samples)
    results.update(timings)
    if args.json:
        print(json.dumps(results))
        return 0
    print(f"{card.name} {results['input']}, onnxruntime {ort.__version__}, "
          f"{args.runs} runs after {args.warmup} warm-up")
    for key in ("inference_1_thread", "inference_2_thread", "preprocess", "decode"):
        r = timings[key]
        print(f"  {key:20s} median {r['median_ms']:7.2f} ms   p90 {r['p90_ms']:7.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
