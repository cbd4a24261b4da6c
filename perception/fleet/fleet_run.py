"""A fleet run: skip finished drives, replay the rest on a backend, show progress, write summary.json."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from perception.core.errors import ConfigError
from perception.fleet.backends import ProcessWorkers, RayWorkers, Resources
from perception.fleet.drives import Drive
from perception.fleet.pool import Workers, run_pool
from perception.fleet.replay import ReplaySettings, completed
from perception.fleet.scoring import total
from perception.ops.progress import Progress

SUMMARY = "summary.json"


def run_fleet(drives: list[Drive], settings: ReplaySettings, resources: Resources, *, backend: str = "ray",
              resume: bool = False) -> dict[str, Any]:
    out = settings.out
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    todo = []
    for drive in drives:
        earlier = completed(drive, out) if resume else None
        if earlier is not None:
            results[drive.name] = {**earlier, "resumed": True}
        elif not resume and ((out / f"{drive.name}.mcap").exists() or (out / f"{drive.name}.json").exists()):
            raise ConfigError(f"{out / drive.name}.mcap already exists",
                              "pass --resume to keep finished drives, or choose another --out")
        else:
            todo.append(drive)
    started = time.monotonic()
    progress = Progress("fleet", len(todo), unit="drive")
    failed = 0
    try:
        workers: Workers[Any] | None = None
        if todo:
            workers = RayWorkers(settings, resources) if backend == "ray" else ProcessWorkers(settings)
        for n, result in enumerate(run_pool(workers, todo, resources.workers, out) if workers else (), start=1):
            results[result["drive"]] = result
            failed += result["status"] != "done"
            progress.postfix(f"done {n - failed}, failed {failed}, remaining {len(todo) - n}")
            progress.update(n)
    finally:
        progress.close()
        summary = summarise([results[d.name] for d in drives if d.name in results], time.monotonic() - started)
        (out / SUMMARY).write_text(json.dumps(summary, indent=1, default=str))
    return summary


def summarise(results: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    done = [r for r in results if r["status"] == "done"]
    return {"drives": results, "totals": {
        "drives": len(results), "done": len(done), "failed": len(results) - len(done),
        "frames": sum(r["frames"] for r in done), "objects": sum(r["objects"] for r in done),
        "score": total(r.get("score") for r in done), "wall_s": round(wall_s, 3)}}


def format_summary(summary: dict[str, Any]) -> str:
    rows = [f"{'drive':<28} {'status':<7} {'frames':>7} {'objects':>8} {'PQ':>5} {'SQ':>5} {'RQ':>5} {'IDF1':>5} "
            f"{'e2e p50':>8} {'e2e p99':>8}  stage p50 ms / error"]
    for r in summary["drives"]:
        latency = r.get("latency") or {}
        e2e = latency.get("end_to_end") or {}
        stages = " ".join(f"{k} {v['p50_ns'] / 1e6:.1f}" for k, v in (latency.get("stages") or {}).items())
        p50 = f"{e2e['p50_ns'] / 1e6:.1f}" if e2e else "-"
        p99 = f"{e2e['p99_ns'] / 1e6:.1f}" if e2e else "-"
        rows.append(f"{r['drive'][:28]:<28} {r['status']:<7} {r.get('frames', 0):>7} {r.get('objects', 0):>8} "
                    f"{_quality(r.get('score'))} {p50:>8} {p99:>8}  {r.get('error', stages)}")
    t = summary["totals"]
    rows.append(f"{'all drives':<28} {'':<7} {t['frames']:>7} {t['objects']:>8} {_quality(t.get('score'))}")
    scored = t.get("score")
    rows.append(f"{t['drives']} drives: {t['done']} done, {t['failed']} failed; {t['frames']} frames, "
                f"{t['objects']} objects in {t['wall_s']:.1f} s"
                + (f"; PQ/SQ/RQ over the {scored['drives']} drive(s) with ground truth" if scored else ""))
    return "\n".join(rows)


def _quality(score: dict[str, Any] | None) -> str:
    """PQ SQ RQ IDF1 (percent) of a drive with ground truth; dashes for one without."""
    if not score or "pq" not in score:
        return f"{'-':>5} {'-':>5} {'-':>5} {'-':>5}"
    idf1 = (score.get("tracking") or {}).get("idf1")
    idf1_text = f"{100 * idf1:>5.1f}" if isinstance(idf1, float) else f"{'-':>5}"
    return f"{score['pq']:>5.1f} {score['sq']:>5.1f} {score['rq']:>5.1f} {idf1_text}"


def load_summary(out: Path) -> dict[str, Any]:
    path = out / SUMMARY
    if not path.is_file():
        raise ConfigError(f"{out} has no {SUMMARY}", "give a folder written by `perception fleet run --out`")
    return dict(json.loads(path.read_text()))
