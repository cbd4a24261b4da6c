"""The training loop: seeded, time- or iteration-budgeted cosine schedule, progress, checkpoints, resume."""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import torch
import torch.nn.functional as F  # noqa: N812

from perception.synth.classes import NUM_CLASSES
from perception.synth.scene import DEFAULT_HEIGHT, DEFAULT_WIDTH, TRAIN_SEED_BASE, VOID_CLASS
from perception.train.data import SMALL_INSTANCE_WEIGHT, Batch, SceneStore, make_batch
from perception.train.model import Arch, TinyPanoptic, count_parameters
from perception.train.onnx_weights import state_from_onnx
from perception.train.staging import RenderPool

CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class TrainConfig:
    out: Path
    scenes: int = 4000
    seed_base: int = TRAIN_SEED_BASE
    budget_s: float = 0.0  # 0 = no time limit; the schedule then follows iterations
    iterations: int = 0  # 0 = no iteration limit; the schedule then follows the time budget
    batch: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup: int = 100
    workers: int = 1
    device: str = "cpu"
    threads: int = 0  # torch CPU threads (0 = torch default)
    amp: bool = False
    seed: int = 0
    hard_pixel_ratio: float = 0.2
    w_center: float = 200.0  # weight of the centre MSE; the focal loss weighs 1 (CenterNet's scale)
    center_loss: str = "mse"  # "mse" (Panoptic-DeepLab) or "focal" (see focal_center_loss)
    w_offset: float = 0.1
    checkpoint_every_s: float = 60.0
    log_every_s: float = 10.0
    resume: bool = False
    arch: Arch = field(default_factory=Arch)  # ignored on resume: the checkpoint's architecture is rebuilt
    init_from: Path | None = None  # a checkpoint whose weights start a new run (layers it lacks start fresh)
    # > 0: each instance's centre Gaussian has sigma = this * sqrt(area), clamped (see make_batch)
    center_sigma_per_side: float = 0.0
    # weight of the pixels of things under SMALL_INSTANCE_PIXELS in the semantic and offset losses
    small_weight: float = SMALL_INSTANCE_WEIGHT
    # top-level layers to train (e.g. ("instance_head",)); the others stay frozen, their batch-norm
    # statistics too. Empty = train everything
    train_only: tuple[str, ...] = ()
    # every batch-norm layer keeps its statistics (eval mode) while its affine weights still learn:
    # a fine-tune from an exported ONNX (batch norm folded into the convolutions) then starts exact
    # instead of renormalising on its first batches
    freeze_batch_norm: bool = False


def losses(model_out: tuple[torch.Tensor, torch.Tensor, torch.Tensor], batch: Batch,
           cfg: TrainConfig) -> dict[str, torch.Tensor]:
    semantic, center, offsets = (o.float() for o in model_out)
    pixel = F.cross_entropy(semantic, batch.semantic, ignore_index=VOID_CLASS, reduction="none") * batch.pixel_weight
    # void pixels have loss 0 (ignore_index), so they rank last; k from the full size keeps the
    # device free of a host sync (void is ~1% of pixels)
    k = max(1, int(pixel.numel() * cfg.hard_pixel_ratio))
    sem_loss = pixel.flatten().topk(k).values.mean()
    if cfg.center_loss == "focal":
        ctr_loss = focal_center_loss(center, batch.center)
        w_center = 1.0
    else:
        ctr_loss = F.mse_loss(center, batch.center)
        w_center = cfg.w_center
    # small things weigh more here too: a 5 px offset error moves a small person onto its neighbour
    thing_weight = batch.thing_mask * batch.pixel_weight.unsqueeze(1)
    off_loss = ((offsets - batch.offsets).abs() * thing_weight).sum() / thing_weight.sum().clamp(min=1)
    total = sem_loss + w_center * ctr_loss + cfg.w_offset * off_loss
    return {"total": total, "semantic": sem_loss, "center": ctr_loss, "offset_px": off_loss}


def focal_center_loss(center: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss on the sigmoid heatmap, summed and divided by the
    number of centres (the MSE is a mean over pixels, so its scale shrinks with empty image).

    Centre pixels (target 1) learn towards 1, every other pixel towards 0, forgiven by
    (1 - target)^4 near a centre. On the synthetic drives it left fewer small things without a
    peak of their own than the MSE (training report, run 10).
    """
    p = center.clamp(1e-4, 1 - 1e-4)
    peak = (target >= 0.999).float()  # make_batch puts exactly 1 at each rounded centre
    pos = peak * (1 - p) ** 2 * torch.log(p)
    neg = (1 - peak) * (1 - target) ** 4 * p**2 * torch.log(1 - p)
    return -(pos + neg).sum() / peak.sum().clamp(min=1)


class Trainer:
    def __init__(self, cfg: TrainConfig, log: TextIO | None = None) -> None:
        self.cfg = cfg
        self.log = log or sys.stdout
        self.device = torch.device(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels
        state = None
        if cfg.resume and (cfg.out / CHECKPOINT).exists():
            state = torch.load(cfg.out / CHECKPOINT, map_location=self.device, weights_only=True)
        # a checkpoint knows its architecture, which layers it trains and its centre loss: resume and
        # export keep them
        arch = Arch.from_dict(state.get("arch", {})) if state is not None else cfg.arch
        if state is not None:
            self.cfg = cfg = replace(cfg, train_only=tuple(state.get("train_only", cfg.train_only)),
                                     freeze_batch_norm=bool(state.get("freeze_batch_norm", cfg.freeze_batch_norm)),
                                     center_loss=str(state.get("center_loss", cfg.center_loss)),
                                     small_weight=float(state.get("small_weight", cfg.small_weight)))
        self.model = TinyPanoptic(NUM_CLASSES, arch).to(self.device)
        self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        trainable = self._freeze(cfg.train_only)
        self.opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                     fused=self.device.type == "cuda")
        self.iteration = 0
        self.elapsed = 0.0  # training seconds over all runs (resumes add up)
        # losses summed on the device between progress lines (no per-iteration host sync)
        self._loss_sums: dict[str, torch.Tensor] = {}
        self._loss_count = 0
        cfg.out.mkdir(parents=True, exist_ok=True)
        if state is not None:
            self._load(state)
        elif cfg.init_from is not None:
            self._init_from(cfg.init_from)

    def _freeze(self, train_only: tuple[str, ...]) -> list[torch.nn.Parameter]:
        """Parameters to optimise: all, or those of the named top-level layers (the rest frozen)."""
        if not train_only:
            return list(self.model.parameters())
        layers = dict(self.model.named_children())
        unknown = sorted(set(train_only) - set(layers))
        if unknown:
            raise ValueError(f"this architecture has no layers {unknown} to train; it has {sorted(layers)}")
        for name, layer in layers.items():
            layer.requires_grad_(name in train_only)
        return [p for p in self.model.parameters() if p.requires_grad]

    def _train_mode(self) -> None:
        """Training mode for the trained layers only: frozen ones keep their batch-norm statistics."""
        self.model.train()
        if self.cfg.train_only:
            for name, layer in self.model.named_children():
                if name not in self.cfg.train_only:
                    layer.eval()
        if self.cfg.freeze_batch_norm:
            for module in self.model.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def _say(self, text: str) -> None:
        print(text, file=self.log, flush=True)

    def _load(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.iteration = int(state["iteration"])
        self.elapsed = float(state["elapsed"])
        self._say(f"resumed from {self.cfg.out / CHECKPOINT}: iteration {self.iteration}, "
                  f"{self.elapsed:.0f} s trained ({self.model.arch.describe()})")

    def _init_from(self, path: Path) -> None:
        """Start from another run's weights (a checkpoint, or an exported ONNX such as the shipped
        model): every tensor it has must fit; layers it lacks stay new."""
        if path.suffix == ".onnx":
            weights = state_from_onnx(path, self.model)
        else:
            weights = torch.load(path, map_location=self.device, weights_only=True)["model"]
        own = self.model.state_dict()
        misfit = [k for k, v in weights.items() if k not in own or own[k].shape != v.shape]
        if misfit:
            raise ValueError(f"{path} does not fit this architecture ({self.model.arch.describe()}): "
                             f"{len(misfit)} tensors differ, e.g. {misfit[0]}")
        self.model.load_state_dict({k: v.to(self.device) for k, v in weights.items()}, strict=False)
        fresh = sorted({k.split(".")[0] for k in own if k not in weights and not k.endswith("num_batches_tracked")})
        self._say(f"initialised from {path}: {len(weights)} tensors; new layers: {', '.join(fresh) or 'none'}")

    def save(self) -> Path:
        path = self.cfg.out / CHECKPOINT
        tmp = path.with_suffix(".tmp")
        torch.save({"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                    "iteration": self.iteration, "elapsed": self.elapsed,
                    "arch": self.model.arch.to_dict(), "train_only": list(self.cfg.train_only),
                    "freeze_batch_norm": self.cfg.freeze_batch_norm, "center_loss": self.cfg.center_loss,
                    "small_weight": self.cfg.small_weight,
                    "config": json.dumps({k: str(v) for k, v in asdict(self.cfg).items()})}, tmp)
        tmp.replace(path)
        return path

    def progress(self, run_elapsed: float) -> float:
        """Fraction of the schedule done, by whichever budget (time or iterations) is set."""
        fractions = []
        if self.cfg.budget_s > 0:
            fractions.append((self.elapsed + run_elapsed) / self.cfg.budget_s)
        if self.cfg.iterations > 0:
            fractions.append(self.iteration / self.cfg.iterations)
        return max(fractions) if fractions else 0.0

    def lr_at(self, fraction: float) -> float:
        if self.iteration < self.cfg.warmup:
            return self.cfg.lr * (self.iteration + 1) / self.cfg.warmup
        return self.cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, fraction)))

    def run(self) -> None:
        cfg = self.cfg
        if cfg.budget_s <= 0 and cfg.iterations <= 0:
            raise ValueError("set a time budget or an iteration count")
        store = SceneStore.allocate(cfg.scenes, DEFAULT_HEIGHT, DEFAULT_WIDTH, self.device)
        seeds = [cfg.seed_base + i for i in range(cfg.scenes)]
        pool = RenderPool(seeds, cfg.workers, DEFAULT_HEIGHT, DEFAULT_WIDTH).start()
        # batches drawn on the training device: a host-side draw copied over would sync every step
        gen = torch.Generator(device=self.device).manual_seed(cfg.seed + self.iteration)
        trained = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        only = f", training only {', '.join(cfg.train_only)} ({trained:,})" if cfg.train_only else ""
        only += ", batch norm frozen" if cfg.freeze_batch_norm else ""
        only += ", focal centre loss" if cfg.center_loss == "focal" else ""
        only += f", small things x{cfg.small_weight:g}" if cfg.small_weight != SMALL_INSTANCE_WEIGHT else ""
        self._say(f"model: {count_parameters(self.model):,} parameters ({self.model.arch.describe()}{only}); "
                  f"{cfg.scenes} scenes from seed {cfg.seed_base}, {cfg.workers} workers, device {self.device}, "
                  f"batch {cfg.batch}")
        start = time.monotonic()
        last_log = last_ckpt = start
        images_seen = 0
        run_start, first_fraction = start, self.progress(0.0)
        last_poll = 0.0
        min_fill = min(cfg.scenes, cfg.batch * 4)
        self._train_mode()
        try:
            while self.progress(time.monotonic() - start) < 1.0:
                # a copy to the device waits for queued work: take new scenes a few times a second only
                if store.filled < cfg.scenes and (store.filled < min_fill or time.monotonic() - last_poll >= 0.25):
                    last_poll = time.monotonic()
                    scenes = pool.poll()
                    if pool.error is not None:
                        raise pool.error
                    if scenes is not None:
                        store.add(scenes)
                if store.filled < min_fill:
                    time.sleep(0.05)
                    start += 0.05  # waiting for the first scenes is not training time
                    continue
                fraction = self.progress(time.monotonic() - start)
                for group in self.opt.param_groups:
                    group["lr"] = self.lr_at(fraction)
                index = torch.randint(0, store.filled, (cfg.batch,), generator=gen, device=self.device)
                flip = torch.rand(cfg.batch, generator=gen, device=self.device) < 0.5
                batch = make_batch(store, index, flip, cfg.center_sigma_per_side, cfg.small_weight)
                image = batch.image.contiguous(memory_format=torch.channels_last)
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.amp):
                    out = self.model(image)
                parts = losses(out, batch, cfg)
                self.opt.zero_grad(set_to_none=True)
                parts["total"].backward()
                self.opt.step()
                self.iteration += 1
                images_seen += cfg.batch
                for key, value in parts.items():
                    total = self._loss_sums.get(key)
                    self._loss_sums[key] = value.detach() if total is None else total + value.detach()
                self._loss_count += 1
                now = time.monotonic()
                if now - last_log >= cfg.log_every_s or self.iteration == 1:
                    self._progress_line(fraction, first_fraction, now - run_start, images_seen, store.filled)
                    last_log = now
                if now - last_ckpt >= cfg.checkpoint_every_s:
                    self.elapsed += now - start
                    start = now
                    self.save()
                    last_ckpt = now
        finally:
            pool.stop()
        self.elapsed += time.monotonic() - start
        path = self.save()
        self._say(f"done: iteration {self.iteration}, {self.elapsed:.0f} s trained; checkpoint {path}")

    def _progress_line(self, fraction: float, first_fraction: float, run_s: float, images: int,
                       filled: int) -> None:
        """One line: progress, throughput, mean losses since the previous line, ETA."""
        means = {k: float(v) / max(1, self._loss_count) for k, v in self._loss_sums.items()}
        self._loss_sums, self._loss_count = {}, 0
        rate = images / max(run_s, 1e-6)
        done = fraction - first_fraction
        eta = run_s * (1 - fraction) / done if done > 0 else float("nan")
        losses_text = " ".join(f"{k} {v:.4f}" for k, v in means.items())
        self._say(f"it {self.iteration} | {100 * min(fraction, 1):5.1f}% | {rate:6.1f} img/s | "
                  f"scenes {filled}/{self.cfg.scenes} | lr {self.opt.param_groups[0]['lr']:.2e} | "
                  f"{losses_text} | eta {eta:.0f} s")
