"""`perception fleet compare A B`: per drive, how much the published outputs changed (tools/compare.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from perception.core.errors import PerceptionError
from perception.fleet.fleet_run import load_summary
from perception.tools.compare import compare_runs


def compare_fleets(out_a: Path, out_b: Path) -> list[dict[str, Any]]:
    """Drives done in both folders, the most changed (lowest PQ of B against A) first."""
    done_a = {r["drive"] for r in load_summary(out_a)["drives"] if r["status"] == "done"}
    done_b = {r["drive"] for r in load_summary(out_b)["drives"] if r["status"] == "done"}
    rows = []
    for drive in sorted(done_a & done_b):
        try:
            result = compare_runs(out_a / f"{drive}.mcap", out_b / f"{drive}.mcap")
        except PerceptionError as exc:
            rows.append({"drive": drive, "error": str(exc), "pq": 0.0})
            continue
        differ = sum(not f.identical for f in result.frames)
        rows.append({"drive": drive, "pq": result.pq, "frames": len(result.frames), "differ": differ,
                     "only_in_a": len(result.only_in_a), "only_in_b": len(result.only_in_b),
                     "identical": result.identical})
    rows.extend({"drive": d, "error": f"done only in {out_a if d in done_a else out_b}", "pq": 0.0}
                for d in sorted(done_a ^ done_b))
    return sorted(rows, key=lambda r: (r["pq"], r["drive"]))
