"""Text table of a PanopticReport, as `perception eval` prints it."""

from __future__ import annotations

from perception.evaluation.pq import PanopticReport


def format_report(report: PanopticReport, title: str = "") -> str:
    d = report.to_dict()
    lines = [title] if title else []
    lines.append(f"{'':14s} {'PQ':>6s} {'SQ':>6s} {'RQ':>6s} {'TP':>5s} {'FP':>5s} {'FN':>5s} {'IoU':>6s}")
    for which in ("all", "things", "stuff"):
        s = d[which]
        lines.append(f"{which + ' (' + str(s['classes']) + ')':14s} {s['pq']:6.1f} {s['sq']:6.1f} {s['rq']:6.1f}")
    lines.append("")
    for name, s in d["per_class"].items():
        kind = "thing" if s["thing"] else "stuff"
        lines.append(f"{name:14s} {s['pq']:6.1f} {s['sq']:6.1f} {s['rq']:6.1f} {s['tp']:5d} {s['fp']:5d} "
                     f"{s['fn']:5d} {s['iou']:6.1f}  {kind}")
    lines.append("")
    lines.append(f"semantic mIoU {d['miou']:.1f} over {report.frames} frames")
    return "\n".join(lines)
