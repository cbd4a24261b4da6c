"""The training loop: seeded, time- or iteration-budgeted cosine schedule, progress, checkpoints, resume."""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

import torch
import torch.nn.functional as F  # noqa: N812

from perception.synth.classes import NUM_CLASSES
from perception.synth.scene import DEFAULT_HEIGHT, DEFAULT_WIDTH, TRAIN_SEED_BASE, VOID_CLASS
from perception.train.data import Batch, Producer, SceneBuffer, make_batch
from perception.train.model import TinyPanoptic, count_parameters

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
    w_center: float = 200.0
    w_offset: float = 0.1
    checkpoint_every_s: float = 60.0
    log_every_s: float = 10.0
    resume: bool = False


def losses(model_out: tuple[torch.Tensor, torch.Tensor, torch.Tensor], batch: Batch,
           cfg: TrainConfig) -> dict[str, torch.Tensor]:
    semantic, center, offsets = (o.float() for o in model_out)
    pixel = F.cross_entropy(semantic, batch.semantic, ignore_index=VOID_CLASS, reduction="none") * batch.pixel_weight
    valid = pixel[batch.semantic != VOID_CLASS]
    k = max(1, int(valid.numel() * cfg.hard_pixel_ratio))
    sem_loss = valid.topk(k).values.mean() if valid.numel() else pixel.sum() * 0
    ctr_loss = F.mse_loss(center, batch.center)
    n_thing = batch.thing_mask.sum().clamp(min=1)
    off_loss = ((offsets - batch.offsets).abs() * batch.thing_mask).sum() / n_thing
    total = sem_loss + cfg.w_center * ctr_loss + cfg.w_offset * off_loss
    return {"total": total, "semantic": sem_loss, "center": ctr_loss, "offset_px": off_loss}


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
        self.model = TinyPanoptic(NUM_CLASSES).to(self.device)
        self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.iteration = 0
        self.elapsed = 0.0  # training seconds over all runs (resumes add up)
        # losses summed on the device between progress lines (no per-iteration host sync)
        self._loss_sums: dict[str, torch.Tensor] = {}
        self._loss_count = 0
        cfg.out.mkdir(parents=True, exist_ok=True)
        if cfg.resume and (cfg.out / CHECKPOINT).exists():
            self._load(cfg.out / CHECKPOINT)

    def _say(self, text: str) -> None:
        print(text, file=self.log, flush=True)

    def _load(self, path: Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.iteration = int(state["iteration"])
        self.elapsed = float(state["elapsed"])
        self._say(f"resumed from {path}: iteration {self.iteration}, {self.elapsed:.0f} s trained")

    def save(self) -> Path:
        path = self.cfg.out / CHECKPOINT
        tmp = path.with_suffix(".tmp")
        torch.save({"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                    "iteration": self.iteration, "elapsed": self.elapsed,
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
        buffer = SceneBuffer.allocate(cfg.scenes, DEFAULT_HEIGHT, DEFAULT_WIDTH, self.device)
        seeds = [cfg.seed_base + i for i in range(cfg.scenes)]
        producer = Producer(buffer, seeds, cfg.workers).start()
        gen = torch.Generator(device="cpu").manual_seed(cfg.seed + self.iteration)
        self._say(f"model: {count_parameters(self.model):,} parameters; {cfg.scenes} scenes from seed "
                  f"{cfg.seed_base}, {cfg.workers} workers, device {self.device}, batch {cfg.batch}")
        start = time.monotonic()
        last_log = last_ckpt = start
        images_seen = 0
        run_start, first_fraction = start, self.progress(0.0)
        self.model.train()
        try:
            while self.progress(time.monotonic() - start) < 1.0:
                if producer.error is not None:
                    raise producer.error
                if buffer.filled < min(cfg.scenes, cfg.batch * 4):
                    time.sleep(0.05)
                    start += 0.05  # waiting for the first scenes is not training time
                    continue
                fraction = self.progress(time.monotonic() - start)
                for group in self.opt.param_groups:
                    group["lr"] = self.lr_at(fraction)
                index = torch.randint(0, buffer.filled, (cfg.batch,), generator=gen).to(self.device)
                flip = (torch.rand(cfg.batch, generator=gen) < 0.5).to(self.device)
                batch = make_batch(buffer, index, flip)
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
                    self._progress_line(fraction, first_fraction, now - run_start, images_seen, buffer.filled)
                    last_log = now
                if now - last_ckpt >= cfg.checkpoint_every_s:
                    self.elapsed += now - start
                    start = now
                    self.save()
                    last_ckpt = now
        finally:
            producer.stop()
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
