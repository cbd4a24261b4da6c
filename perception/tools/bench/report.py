"""What every benchmark reports besides its figure: the machine, its load, versions, parameters.

Timings on a shared machine move with the load, so each report carries the load average
read before and after the run, and the figures that matter are ratios between contenders
measured alternately in the same process run.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

VERSIONED = ("perception-node", "numpy", "opencv-python-headless", "onnxruntime", "pyzmq", "zstandard", "lz4",
             "pycocotools", "ultralytics", "torch")


@dataclass
class Outcome:
    """One benchmark's result: its headline figures, a table of rows and the parameters it ran with."""

    figures: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def spread(samples: Sequence[float]) -> dict[str, float]:
    """Median and p90 of repeated measurements (>= 1)."""
    values = np.asarray(samples, dtype=float)
    return {"median": float(statistics.median(values)), "p90": float(np.percentile(values, 90)),
            "n": len(values)}


def measure(name: str, quick: bool, body: Callable[[bool], Outcome]) -> dict[str, Any]:
    """Run one benchmark and wrap its outcome in the common report (the --json object)."""
    before = load_average()
    outcome = body(quick)
    after = load_average()
    return {
        "benchmark": name,
        "quick": quick,
        **outcome.figures,
        "rows": outcome.rows,
        "parameters": outcome.parameters,
        "notes": outcome.notes,
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "system": f"{platform.system()} {platform.release()}",
                    "load_before": before, "load_after": after},
        "versions": versions(),
    }


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def format_report(report: dict[str, Any]) -> str:
    """The human form: headline figures, the table as Markdown, then machine, versions, parameters."""
    skip = {"benchmark", "quick", "rows", "parameters", "notes", "machine", "versions"}
    lines = [f"# perception bench {report['benchmark']}" + (" (quick)" if report["quick"] else "")]
    lines += [f"{key}: {_cell(value)}" for key, value in report.items() if key not in skip]
    rows = report["rows"]
    if rows:
        columns = list(dict.fromkeys(key for row in rows for key in row))
        lines.append("")
        lines.append("| " + " | ".join(columns) + " |")
        lines.append("|" + "---|" * len(columns))
        lines += ["| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    lines.append("")
    lines += [f"note: {note}" for note in report["notes"]]
    machine = report["machine"]
    lines.append(f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['system']}, load average "
                 f"{machine['load_before']} before, {machine['load_after']} after")
    lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()))
    lines.append("parameters: " + ", ".join(f"{k}={v}" for k, v in report["parameters"].items()))
    return "\n".join(lines)
