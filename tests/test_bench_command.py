"""`perception bench NAME --quick --json`: each benchmark runs end to end once and reports its keys.

Figures are not checked against limits (timings belong to docs/benchmarks.md); only that the
report is complete and its ratios are sane.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from perception.tools.bench import BENCHMARKS

COMMON_KEYS = {"benchmark", "quick", "rows", "parameters", "notes", "machine", "versions"}
FIGURES = {
    "node": ("ratio", "node_fps", "bare_fps"),
    "overhead": ("overhead", "overhead_640x360", "overhead_1280x720"),
    "overload": ("ratio", "sustained_fps", "published", "dropped"),
    "wire": ("p50_ms", "percent_of_raw", "segments"),
    "scaling": ("decode_ms_50_objects", "ms_per_frame_720p"),
}


def bench_json(name: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-m", "perception.cli", "bench", name, "--quick", "--json"],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    report: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_quick_benchmark_reports_its_figures_and_machine(name: str) -> None:
    report = bench_json(name)
    assert set(report) >= COMMON_KEYS, set(report)
    assert report["benchmark"] == name and report["quick"] is True
    for key in FIGURES[name]:
        assert key in report, key
    machine = report["machine"]
    assert isinstance(machine, dict) and machine["cores"] >= 1 and len(machine["load_before"]) == 3
    assert report["rows"], "a benchmark without a table"
    if name == "node":
        assert report["ratio"] > 0 and report["bare_fps"] > 0  # type: ignore[operator]
    if name == "wire":
        assert 0 < report["percent_of_raw"] < 100  # type: ignore[operator]
    if name == "overhead":  # py-spy (dev extra) sampled the node: busy shares per stage add up to the whole
        table = report["rows"]
        assert isinstance(table, list)
        rows = [r for r in table if "py-spy" in str(r.get("source"))]
        shares = [float(r["share of busy"].rstrip("%")) for r in rows if r.get("share of busy")]
        assert any(r["stage"] == "decode" for r in rows), rows
        assert sum(shares) == pytest.approx(100, abs=0.5)


def test_every_benchmark_is_listed_with_a_test_or_the_peer_extra() -> None:
    assert set(BENCHMARKS) == set(FIGURES) | {"peers"}


def test_peers_without_ultralytics_says_how_to_install_it() -> None:
    pytest.importorskip("onnxruntime")
    try:
        import ultralytics  # noqa: F401
    except ImportError:
        done = subprocess.run([sys.executable, "-m", "perception.cli", "bench", "peers", "--quick"],
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 2
        assert "ultralytics" in done.stderr and "[bench]" in done.stderr
    else:
        report = bench_json("peers")
        assert report["ratio_to_ultralytics"] > 0  # type: ignore[operator]
