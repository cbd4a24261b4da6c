"""Fleet replay against running the same drives one after another (docs/benchmarks.md "Fleet replay").

N synthetic drives (seed 1..N, F frames each) through `perception fleet run` with 1 and 2 Ray
workers, and through `perception run --rate 0 --record` one drive after another (a process each,
as a shell loop would). Reports wall time and drives per minute; ratios within this run only.

    python bench/fleet_bench.py [--drives 32] [--frames 10] [--cpus-per-worker 1]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time


def _timed(command: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drives", type=int, default=32)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--cpus-per-worker", type=float, default=1.0)
    args = parser.parse_args()
    drives = [f"synthetic:?seed={s}&frames={args.frames}" for s in range(1, args.drives + 1)]
    cli = [sys.executable, "-m", "perception"]
    with tempfile.TemporaryDirectory() as tmp:
        rows = []  # the serial runs go first and render the synthetic drives into the cache for both fleet runs
        serial = sum(_timed([*cli, "run", "--source", uri, "--rate", "0", "--quiet", "--record",
                             f"{tmp}/serial-{n}.mcap", "--endpoint", f"ipc://{tmp}/s{n}.sock"])
                     for n, uri in enumerate(drives))
        rows.append(("perception run --rate 0, one after another", serial))
        for workers in (1, 2):
            wall = _timed([*cli, "fleet", "run", *drives, "--out", f"{tmp}/fleet-{workers}", "--workers",
                           str(workers), "--cpus-per-worker", str(args.cpus_per_worker)])
            rows.append((f"perception fleet run --workers {workers}", wall))
    print(f"{args.drives} drives x {args.frames} frames")
    print(f"{'how':<46} {'wall s':>8} {'drives/min':>11} {'vs serial':>10}")
    for how, wall in rows:
        print(f"{how:<46} {wall:>8.1f} {60 * args.drives / wall:>11.1f} {serial / wall:>9.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
