"""Arguments and entry of `perception train` (also `python -m perception.train`, which needs no
ZeroMQ/msgpack/MCAP and so runs on a bare GPU machine).

torch is imported only when the command runs, so the node's CLI starts without it.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

from perception.core.errors import ConfigError, require

INSTALL = "pip install 'perception-node[train]' (PyTorch, onnx, onnxscript)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="run folder: checkpoint.pt, model.onnx")
    parser.add_argument("--scenes", type=int, default=4000, help="training scenes rendered (default 4000)")
    parser.add_argument("--seed-base", type=int, default=1_000_000, help="first training scene seed")
    parser.add_argument("--budget-s", type=float, default=0.0, help="training time budget in seconds")
    parser.add_argument("--iterations", type=int, default=0, help="iteration budget (instead of or with time)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--workers", type=int, default=1, help="scene rendering processes")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast (GPU)")
    parser.add_argument("--seed", type=int, default=0, help="weights and batch sampling seed")
    parser.add_argument("--w-offset", type=float, default=0.1)
    parser.add_argument("--widths", default="24,48,96,160", help="encoder stage widths (strides 2, 4, 8, 16)")
    parser.add_argument("--decoder", type=int, default=48, help="decoder channels at strides 8 and 4")
    parser.add_argument("--fine", type=int, default=0,
                        help="channels of a stride-2 decoder level carrying the heads, for small things "
                             "(0 = heads at stride 4); a resumed run keeps its checkpoint's layout")
    parser.add_argument("--checkpoint-every-s", type=float, default=60.0)
    parser.add_argument("--log-every-s", type=float, default=10.0)
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument("--init-from", type=Path, metavar="CHECKPOINT",
                        help="start a new run (fresh optimizer and schedule) from another run's weights: its "
                             "checkpoint.pt or its exported ONNX (e.g. engines/panoptic-tiny.onnx); layers the "
                             "given architecture adds (e.g. --refine) start fresh")
    parser.add_argument("--refine", type=int, default=0,
                        help="channels of a full-resolution semantic refinement from image edges (0 = none)")
    parser.add_argument("--subpixel", type=int, default=0,
                        help="channels of a stride-2 branch that corrects the semantic logits of each 2x2 "
                             "pixel block from the image (0 = none): outlines finer than the heads' stride")
    parser.add_argument("--center-sigma-per-side", type=float, default=0.0, metavar="K",
                        help="size each instance's centre Gaussian by the instance: sigma = K * sqrt(area) px, "
                             "1 to 4 px (0 = 4 px for all); keeps close small things apart, e.g. 0.2")
    parser.add_argument("--center-loss", choices=("mse", "focal"), default="mse",
                        help="centre heatmap loss: mse (Panoptic-DeepLab, weight 200) or focal (CenterNet's "
                             "penalty-reduced focal loss, weight 1: more small things beside big ones keep a peak of "
                             "their own; training report, run 10)")
    parser.add_argument("--small-weight", type=float, default=None, metavar="W",
                        help="weight of the pixels of things under 150 px in the semantic and offset losses "
                             "(default 3; a resumed run keeps its checkpoint's)")
    parser.add_argument("--train-only", default="", metavar="LAYERS",
                        help="train only these top-level layers (comma-separated, e.g. instance_head) and keep "
                             "the rest frozen, batch-norm statistics included; use with --init-from (a resumed "
                             "run keeps its checkpoint's choice)")
    parser.add_argument("--freeze-batch-norm", action="store_true",
                        help="keep every batch-norm layer's statistics (its scale and shift still learn); for "
                             "fine-tuning from an exported ONNX, whose batch norm is folded (a resumed run keeps "
                             "its checkpoint's choice)")
    parser.add_argument("--export-only", action="store_true", help="export OUT/checkpoint.pt to ONNX and stop")
    parser.add_argument("--average-of", nargs="+", type=Path, metavar="CHECKPOINT",
                        help="write OUT/checkpoint.pt as the mean of these runs' weights (same layout, e.g. a "
                             "fine-tune and the run it started from), export it and stop")
    parser.add_argument("--opset", type=int, default=18)


def run(args: argparse.Namespace) -> int:
    require("torch", "training", INSTALL)
    require("onnx", "ONNX export", INSTALL)
    if args.opset < 17:
        raise ConfigError(f"--opset {args.opset} is too old", "use 17 or newer")
    if args.average_of:
        _average(args.average_of, args.out)
        args.export_only = True
    if args.budget_s <= 0 and args.iterations <= 0 and not args.export_only:
        raise ConfigError("training needs a budget", "pass --budget-s SECONDS and/or --iterations N")
    from perception.train.data import SMALL_INSTANCE_WEIGHT
    from perception.train.export import check_export, export_onnx
    from perception.train.loop import CHECKPOINT, TrainConfig, Trainer
    from perception.train.model import Arch

    try:
        widths = tuple(int(w) for w in args.widths.split(","))
        arch = Arch.from_dict({"widths": widths, "decoder": args.decoder, "fine": args.fine, "refine": args.refine,
                               "subpixel": args.subpixel})
    except ValueError as exc:
        raise ConfigError(f"--widths {args.widths!r}: {exc}", "pass four integers, e.g. --widths 24,48,96,160") \
            from exc
    if min(*arch.widths, arch.decoder) <= 0 or min(arch.fine, arch.refine, arch.subpixel) < 0:
        raise ConfigError("layer widths must be positive (--fine, --refine and --subpixel may be 0)",
                          "e.g. --widths 24,48,96,160 --decoder 48")
    if arch.subpixel and not arch.fine:
        raise ConfigError("--subpixel draws 2x2 pixels per cell of a stride-2 head, and these heads are at stride 4",
                          "add --fine C (a stride-2 level, e.g. --fine 32) or leave --subpixel at 0")
    if args.center_sigma_per_side < 0:
        raise ConfigError(f"--center-sigma-per-side {args.center_sigma_per_side} is negative",
                          "pass 0 (one 4 px Gaussian for all) or a factor such as 0.2")
    if args.small_weight is not None and args.small_weight <= 0:
        raise ConfigError(f"--small-weight {args.small_weight} is not positive",
                          "pass a weight such as 3 (the default)")
    if args.init_from is not None and not args.init_from.is_file():
        raise ConfigError(f"--init-from {args.init_from} does not exist",
                          "point it at a run's checkpoint.pt or an ONNX exported by perception train")

    cfg = TrainConfig(out=args.out, scenes=args.scenes, seed_base=args.seed_base, budget_s=args.budget_s,
                      iterations=args.iterations, batch=args.batch, lr=args.lr, workers=args.workers,
                      device=args.device, threads=args.threads, amp=args.amp, seed=args.seed,
                      w_offset=args.w_offset, arch=arch, init_from=args.init_from,
                      center_sigma_per_side=args.center_sigma_per_side, center_loss=args.center_loss,
                      small_weight=SMALL_INSTANCE_WEIGHT if args.small_weight is None else args.small_weight,
                      train_only=tuple(n for n in args.train_only.split(",") if n),
                      freeze_batch_norm=args.freeze_batch_norm,
                      checkpoint_every_s=args.checkpoint_every_s, log_every_s=args.log_every_s,
                      resume=args.resume or args.export_only)
    if args.export_only and not (args.out / CHECKPOINT).exists():
        raise ConfigError(f"{args.out / CHECKPOINT} does not exist", "train first, or point --out at a run folder")
    try:
        # an average is loaded only to be exported: its first source's "resumed from ... iteration N"
        # line would describe a run it is not
        trainer = Trainer(cfg, log=io.StringIO() if args.average_of else None)
    except ValueError as exc:  # a checkpoint that does not fit the architecture asked for, or --train-only
        raise ConfigError(str(exc), "pass the --widths/--decoder/--fine the checkpoint was trained with, and "
                          "--train-only names from that list") from exc
    if not args.export_only:
        trainer.run()
    started = time.monotonic()
    onnx_path = export_onnx(trainer.model, args.out / "model.onnx", opset=args.opset)
    check = check_export(trainer.model, onnx_path)
    diffs = ", ".join(f"{k} {v:.2e}" for k, v in check.max_abs_diff.items())
    print(f"exported {onnx_path} ({onnx_path.stat().st_size:,} bytes, opset {args.opset}) in "
          f"{time.monotonic() - started:.1f} s; ONNX Runtime vs PyTorch max |diff|: {diffs}; "
          f"semantic argmax agreement {100 * check.argmax_agreement:.3f}%", flush=True)
    return 0


def _average(sources: list[Path], out: Path) -> None:
    from perception.train.average import average_checkpoints
    from perception.train.loop import CHECKPOINT

    missing = [str(s) for s in sources if not s.is_file()]
    if missing:
        raise ConfigError(f"--average-of: {', '.join(missing)} does not exist", "point it at runs' checkpoint.pt files")
    try:
        written = average_checkpoints(sources, out / CHECKPOINT)
    except ValueError as exc:
        raise ConfigError(f"--average-of: {exc}", "average checkpoints of one layout (same --widths/--decoder/"
                          "--fine/--refine), at least two") from exc
    print(f"averaged {len(sources)} checkpoints into {written}", flush=True)
