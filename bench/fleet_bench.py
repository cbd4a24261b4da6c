"""Fleet replay against running the same drives one after another (docs/benchmarks.md "Fleet replay").

N synthetic drives (seed 1..N, F frames each, rendered into the drive cache before timing)
through `perception fleet run` with 1 and 2 Ray workers (one engine each, opened once per
worker), and through `perception run --rate 0 --deterministic --record` one drive after another
(a process each, as a shell loop would). Every contender runs with the same [model] threads
(--threads; 0 keeps the launch file's 2). Reports wall time, drives per minute, the ratios within
this run, the load average (other work on the machine) and whether the outputs are the same bytes.

    python bench/fleet_bench.py [--drives 32] [--frames 20] [--threads 1] [--cpus-per-worker 1]
"""

from __future__ import annotations

import argparse
import filecmp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _timed(command: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - started


def _launch(folder: Path, threads: int) -> list[str]:
    """A launch file with [model] threads = N (none: the default launch file)."""
    if not threads:
        return []
    from perception.runtime.config import DEFAULT_LAUNCH

    text = DEFAULT_LAUNCH.read_text().replace("threads = 2", f"threads = {threads}")
    card = DEFAULT_LAUNCH.parent.parent / "engines" / "panoptic-tiny.toml"
    path = folder / "launch.toml"
    path.write_text(text.replace('card = "../engines/panoptic-tiny.toml"', f'card = "{card}"'))
    return [str(path)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drives", type=int, default=32)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="[model] threads of every contender (0: launch's)")
    parser.add_argument("--cpus-per-worker", type=float, default=1.0)
    args = parser.parse_args()
    from perception.synth.drivefile import cached_drive

    for seed in range(1, args.drives + 1):  # rendering is not what is measured
        cached_drive(seed, args.frames, 10.0, 320, 192, "forward")
    drives = [f"synthetic:?seed={s}&frames={args.frames}" for s in range(1, args.drives + 1)]
    cli = [sys.executable, "-m", "perception"]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        launch = _launch(Path(tmp), args.threads)
        fleet_launch = ["--launch", launch[0]] if launch else []
        rows = []
        serial = sum(_timed([*cli, "run", *launch, "--source", uri, "--rate", "0", "--deterministic", "--quiet",
                             "--record", f"{tmp}/serial-{n}.mcap", "--endpoint", f"ipc://{tmp}/s{n}.sock"])
                     for n, uri in enumerate(drives))
        rows.append(("perception run --rate 0, one after another", serial))
        for workers in (1, 2):
            wall = _timed([*cli, "fleet", "run", *drives, *fleet_launch, "--out", f"{tmp}/fleet-{workers}",
                           "--workers", str(workers), "--cpus-per-worker", str(args.cpus_per_worker)])
            rows.append((f"perception fleet run --workers {workers}", wall))
        names = [f"synthetic_seed_{s}_frames_{args.frames}.mcap" for s in range(1, args.drives + 1)]
        same = all(filecmp.cmp(f"{tmp}/serial-{n}.mcap", f"{tmp}/fleet-{w}/{name}", shallow=False)
                   for n, name in enumerate(names) for w in (1, 2))
    load_after = os.getloadavg()
    print(f"{args.drives} drives x {args.frames} frames, [model] threads {args.threads or 'launch default (2)'}, "
          f"--cpus-per-worker {args.cpus_per_worker:g}")
    print(f"{'how':<46} {'wall s':>8} {'drives/min':>11} {'vs serial':>10} {'vs 1 worker':>12}")
    one = rows[1][1]
    for how, wall in rows:
        print(f"{how:<46} {wall:>8.1f} {60 * args.drives / wall:>11.1f} {serial / wall:>9.2f}x {one / wall:>11.2f}x")
    print(f"outputs byte-identical across all three: {same}")
    print(f"load average (1 min) before {load_before[0]:.1f}, after {load_after[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
