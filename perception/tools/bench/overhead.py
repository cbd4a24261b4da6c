"""`perception bench overhead`: CPU time per frame outside inference over the inference's own CPU time.

The node's CPU per frame (capture, preprocess, engine, decode, track, encode, publish: this
process's CPU time) is taken from the difference between a short and a long lock-step run, so
start-up cancels; the inference's CPU per frame from the bare engine loop on the same frames.
overhead = (node - bare) / bare, at 640x360 and 1280x720 sources. Target <= 0.10 at 640x360.
Where the time goes: the node's per-stage wall medians of the long run (the rows' stage columns),
and a py-spy profile of the node at 640x360 (perception.tools.bench.profile): each stage's share
of the node's busy samples.
"""

from __future__ import annotations

from perception.tools.bench.contenders import BareEngine, bench_config, read_frames, run_node
from perception.tools.bench.profile import where_time_goes
from perception.tools.bench.report import Outcome, spread

SIZES = ((640, 360), (1280, 720))


def run(quick: bool) -> Outcome:
    short, long, repetitions = (3, 6, 1) if quick else (30, 120, 3)
    rows, figures = [], {}
    for width, height in SIZES:
        source = f"synthetic:?seed=7&frames={long}&fps=10&width={width}&height={height}"
        bare = BareEngine(bench_config(source, long), read_frames(source, long))
        overheads = []
        try:
            for _ in range(repetitions):
                b = bare.run()
                a = run_node(bench_config(source, short))
                z = run_node(bench_config(source, long))
                node_cpu = (z.cpu_s - a.cpu_s) / (z.frames - a.frames)
                bare_cpu = b.cpu_s / b.frames
                overheads.append((node_cpu - bare_cpu) / bare_cpu)
        finally:
            bare.close()
        stages = z.extra["latency"]["stages"]
        key = f"overhead_{width}x{height}"
        figures[key] = spread(overheads)["median"]
        rows.append({"source": f"{width}x{height}", "node CPU ms/frame": node_cpu * 1e3,
                     "inference CPU ms/frame": bare_cpu * 1e3, "overhead": figures[key],
                     **{f"{name} ms": stages[name]["p50_ns"] / 1e6 for name in ("preprocess", "inference",
                                                                                 "postprocess", "encode")}})
    profiled = f"synthetic:?seed=7&frames={long}&fps=10&width={SIZES[0][0]}&height={SIZES[0][1]}"
    rows += [{"source": f"{SIZES[0][0]}x{SIZES[0][1]} py-spy", **row} for row in where_time_goes(profiled, long)]
    figures["overhead"] = figures["overhead_640x360"]
    figures["target"] = 0.10
    return Outcome(figures, rows, {"frames_short": short, "frames_long": long, "repetitions": repetitions,
                                   "threads": 2, "model": "panoptic-tiny"},
                   ["CPU per frame = (CPU of the long run - CPU of the short run) / extra frames, this process only; "
                    "stage columns are wall p50 of the last long run; py-spy rows: samples of the node's Python "
                    "threads (wall time while not waiting), ONNX Runtime's own pool threads are not seen"])
