"""The long wire fuzz: >= 1,000,000 hostile messages through the subscriber's decoder.

    python bench/fuzz_wire.py --long            # 1,000,000 inputs (make test-long runs this)
    python bench/fuzz_wire.py --runs 20000      # a quick look

Coverage-guided with atheris (libFuzzer) when it is installed (`pip install -e ".[fuzz]"`), else
hypothesis with the suite's strategy. Each input is a multipart message (tests/wire_fuzz.py:
seeds and the battery's hostile inputs form the starting corpus). Passes when no input raises
anything but DecodeError, every reject takes < 50 ms of CPU (the least of four tries when the first
is over), and the process grows < 64 MiB; prints
the figures (docs/benchmarks.md "Wire fuzz").
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REJECT_LIMIT_S = 0.050
GROWTH_LIMIT_MIB = 64.0
LONG_RUNS = 1_000_000


def rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def timed(function: Callable[[list[bytes]], str], parts: list[bytes]) -> tuple[str, float]:
    """Outcome and CPU seconds of this thread: other processes on a shared machine do not count."""
    start = time.thread_time()
    outcome = function(parts)
    return outcome, time.thread_time() - start


class Tally:
    """Outcomes, the slowest reject, and memory growth after warm-up."""

    def __init__(self, runs: int) -> None:
        self.runs = runs
        self.done = 0
        self.outcomes = {"decoded": 0, "refused": 0}
        self.slowest_reject_s = 0.0
        self.baseline_mib = 0.0
        self.peak_growth_mib = 0.0
        self.started = time.monotonic()

    def one(self, data: bytes) -> None:
        from tests.wire_fuzz import REFUSED, exercise, from_bytes

        outcome, took = timed(exercise, from_bytes(data))  # anything but DecodeError escapes: a finding
        if outcome == REFUSED and took > REJECT_LIMIT_S:
            # CPU time still counts a GC pause or a cache-cold start; a slow reject is slow every time
            took = min([took, *(timed(exercise, from_bytes(data))[1] for _ in range(3))])
            if took > REJECT_LIMIT_S:
                raise AssertionError(f"a reject took {took * 1e3:.1f} ms (> 50 ms): {data[:200]!r}")
        self.outcomes[outcome] += 1
        if outcome == REFUSED:
            self.slowest_reject_s = max(self.slowest_reject_s, took)
        self.done += 1
        if self.done == 1000:
            self.baseline_mib = rss_mib()  # after imports, codecs and the fuzzer's own set-up
        if self.done % 10_000 == 0 or self.done == self.runs:
            growth = rss_mib() - self.baseline_mib
            self.peak_growth_mib = max(self.peak_growth_mib, growth)
            if growth > GROWTH_LIMIT_MIB:
                raise AssertionError(f"memory grew {growth:.1f} MiB after {self.done} inputs (> 64 MiB)")
        if self.done % 100_000 == 0 or self.done == self.runs:
            self.report()

    def report(self) -> None:
        rate = self.done / max(time.monotonic() - self.started, 1e-9)
        print(f"fuzz_wire: {self.done} inputs ({rate:.0f}/s): {self.outcomes}; slowest reject "
              f"{self.slowest_reject_s * 1e3:.2f} ms; memory growth {self.peak_growth_mib:.1f} MiB "
              f"(limits 50 ms, 64 MiB)", flush=True)
        if self.done == self.runs:
            print("fuzz_wire: PASS (no crash, every reject under 50 ms, growth under 64 MiB)", flush=True)


def corpus(folder: Path) -> Path:
    from tests.wire_fuzz import hostile_seeds, seeds, to_bytes

    for i, parts in enumerate([*seeds(), *hostile_seeds().values()]):
        (folder / f"seed{i:02d}").write_bytes(to_bytes(parts))
    return folder


def with_atheris(runs: int) -> None:
    import atheris

    tally = Tally(runs)
    with tempfile.TemporaryDirectory() as tmp:
        # max_len: the largest seed (a 64 MiB lz4 bomb, 260 KB) fits
        # a finding is written to the system temp folder (crash-<sha1>), not into the checkout
        args = [sys.argv[0], f"-runs={runs}", "-max_len=400000", "-rss_limit_mb=4096",
                f"-artifact_prefix={tempfile.gettempdir()}/fuzz_wire-", str(corpus(Path(tmp)))]
        atheris.instrument_all()  # coverage of the decoder (and everything else loaded) guides mutation
        atheris.Setup(args, tally.one)
        atheris.Fuzz()  # exits the process when the runs are done


def with_hypothesis(runs: int) -> None:
    from hypothesis import HealthCheck, given, settings

    from tests.test_wire_fuzz import hostile_messages
    from tests.wire_fuzz import to_bytes

    tally = Tally(runs)

    @settings(max_examples=runs, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(hostile_messages())
    def fuzz(parts: list[bytes]) -> None:
        tally.one(to_bytes(parts))

    fuzz()
    tally.report()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--long", action="store_true", help=f"{LONG_RUNS:,} inputs")
    parser.add_argument("--runs", type=int, default=20_000, help="inputs to try (default 20,000)")
    parser.add_argument("--engine", choices=["auto", "atheris", "hypothesis"], default="auto")
    args = parser.parse_args()
    runs = LONG_RUNS if args.long else args.runs
    engine = args.engine
    if engine == "auto":
        try:
            import atheris  # noqa: F401

            engine = "atheris"
        except ImportError:
            engine = "hypothesis"
    print(f"fuzz_wire: {runs:,} inputs with {engine} (python {sys.version.split()[0]}, pid {os.getpid()})",
          flush=True)
    sys.argv = sys.argv[:1]
    if engine == "atheris":
        with_atheris(runs)
    else:
        with_hypothesis(runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
