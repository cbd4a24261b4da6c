"""`perception fleet run|compare`: replay many drives through the node on Ray workers (perception/fleet/)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from perception.core.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fleet", help="replay many drives through the node on Ray workers",
                       description="Replay drives lock-step through the node's pipeline, spread over workers.")
    fleet = p.add_subparsers(dest="fleet_command", metavar="SUBCOMMAND", required=True)
    r = fleet.add_parser("run", help="replay drives, one recording each in --out",
                         description="Each drive (as `perception run --source` names it; a folder of them; "
                                     "@list.txt) runs like `perception run --rate 0 --record OUT/<drive>.mcap`.")
    r.add_argument("drives", nargs="+", help="mcap files, bags, rosbag2 folders, videos, synthetic:?seed=N, "
                                             "folders of them, @drives.txt")
    r.add_argument("--card", type=Path, help="model card (default: the launch file's)")
    r.add_argument("--launch", type=Path, help="launch file whose settings every drive runs with")
    r.add_argument("--out", type=Path, required=True, help="folder for <drive>.mcap, <drive>.json, summary.json")
    r.add_argument("--address", help="Ray cluster: ray://HEAD:10001 or auto (default: a local Ray)")
    r.add_argument("--backend", choices=("ray", "processes"), default="ray",
                   help="ray (needs the [fleet] extra), or processes: local processes only")
    r.add_argument("--workers", type=int, default=1, help="workers, one engine each (default 1)")
    r.add_argument("--cpus-per-worker", type=float, default=1.0, help="Ray CPUs each worker reserves")
    r.add_argument("--gpus-per-worker", type=float, default=0.0, help="Ray GPUs each worker reserves (e.g. 0.5)")
    r.add_argument("--resume", action="store_true", help="skip drives whose recording in --out is complete")
    r.add_argument("--json", action="store_true", help="print summary.json instead of the table")
    r.set_defaults(func=run)
    c = fleet.add_parser("compare", help="which drives changed most between two fleet runs")
    c.add_argument("a", type=Path, help="reference fleet --out folder")
    c.add_argument("b", type=Path, help="fleet --out folder to judge")
    c.add_argument("--json", action="store_true", help="print the rows as JSON")
    c.set_defaults(func=compare)


def run(args: argparse.Namespace) -> int:
    from perception.fleet.backends import Resources
    from perception.fleet.drives import expand
    from perception.fleet.fleet_run import format_summary, run_fleet
    from perception.fleet.replay import ReplaySettings

    if args.workers < 1 or args.cpus_per_worker <= 0 or args.gpus_per_worker < 0:
        raise ConfigError("--workers must be >= 1, --cpus-per-worker > 0, --gpus-per-worker >= 0",
                          "e.g. --workers 4 --cpus-per-worker 2")
    if args.backend == "processes" and (args.address or args.gpus_per_worker):
        raise ConfigError("--backend processes runs on this machine only",
                          "drop --address/--gpus-per-worker, or use --backend ray")
    summary = run_fleet(expand(args.drives), ReplaySettings(args.out.resolve(), args.card, args.launch),
                        Resources(args.workers, args.cpus_per_worker, args.gpus_per_worker, args.address),
                        backend=args.backend, resume=args.resume)
    print(json.dumps(summary, indent=1, default=str) if args.json else format_summary(summary))
    return 1 if summary["totals"]["failed"] else 0


def compare(args: argparse.Namespace) -> int:
    from perception.fleet.compare import compare_fleets

    rows = compare_fleets(args.a, args.b)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'drive':<32} {'PQ':>6} {'frames':>7} {'differ':>7}  note")
    for r in rows:
        note = r.get("error") or ("identical" if r["identical"] else
                                  f"only in A {r['only_in_a']}, only in B {r['only_in_b']}")
        print(f"{r['drive'][:32]:<32} {r['pq']:>6.3f} {r.get('frames', 0):>7} {r.get('differ', 0):>7}  {note}")
    return 0
