"""Arguments and entry of `perception train` (also `python -m perception.train`, which needs no
ZeroMQ/msgpack/MCAP and so runs on a bare GPU machine).

torch is imported only when the command runs, so the node's CLI starts without it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from perception.errors import ConfigError, require

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
    parser.add_argument("--checkpoint-every-s", type=float, default=60.0)
    parser.add_argument("--log-every-s", type=float, default=10.0)
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument("--export-only", action="store_true", help="export OUT/checkpoint.pt to ONNX and stop")
    parser.add_argument("--opset", type=int, default=18)


def run(args: argparse.Namespace) -> int:
    require("torch", "training", INSTALL)
    require("onnx", "ONNX export", INSTALL)
    if args.budget_s <= 0 and args.iterations <= 0 and not args.export_only:
        raise ConfigError("training needs a budget", "pass --budget-s SECONDS and/or --iterations N")
    if args.opset < 17:
        raise ConfigError(f"--opset {args.opset} is too old", "use 17 or newer")
    from perception.train.export import check_export, export_onnx
    from perception.train.loop import CHECKPOINT, TrainConfig, Trainer

    cfg = TrainConfig(out=args.out, scenes=args.scenes, seed_base=args.seed_base, budget_s=args.budget_s,
                      iterations=args.iterations, batch=args.batch, lr=args.lr, workers=args.workers,
                      device=args.device, threads=args.threads, amp=args.amp, seed=args.seed,
                      w_offset=args.w_offset, checkpoint_every_s=args.checkpoint_every_s,
                      log_every_s=args.log_every_s, resume=args.resume or args.export_only)
    if args.export_only and not (args.out / CHECKPOINT).exists():
        raise ConfigError(f"{args.out / CHECKPOINT} does not exist", "train first, or point --out at a run folder")
    trainer = Trainer(cfg)
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
