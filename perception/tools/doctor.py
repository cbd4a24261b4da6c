"""What this machine can run: GPU, driver, CUDA, TensorRT, pycuda, ONNX Runtime providers, backends,
and whether the CPU runs int8 models exactly.

Every probe is read-only and bounded in time, and none of them fails the report: a missing
piece is a finding ("not found" plus how to get it), never an exception.
"""

from __future__ import annotations

import ctypes.util
import importlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from perception.inference.ort_gpu import GPU_PROVIDERS, ORT_GPU_INSTALL
from perception.inference.trt_build import TENSORRT_INSTALL_HINT

TEGRA_RELEASE = Path("/etc/nv_tegra_release")  # Jetson: L4T release, where there is no nvidia-smi
DRIVER_VERSION = Path("/proc/driver/nvidia/version")  # the kernel driver is loaded
CPUINFO = Path("/proc/cpuinfo")
# x86 instructions that multiply-add int8 straight into int32; without them ONNX Runtime's int8
# kernels sum u8 x s8 pairs into int16 first, which can saturate (OpenVINO's docs describe the same)
X86_INT8_DOT = ("avx512_vnni", "avx_vnni", "amx_int8")
PYCUDA_HINT = "pip install 'perception-node[tensorrt]' (builds against the CUDA toolkit; needs nvcc and cuda.h)"


@dataclass(frozen=True)
class Finding:
    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Backend:
    name: str
    usable: bool
    why: str


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    backends: list[Backend] = field(default_factory=list)
    gpus: list[dict[str, str]] = field(default_factory=list)

    def finding(self, name: str) -> Finding:
        return next(f for f in self.findings if f.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {"findings": [asdict(f) for f in self.findings], "backends": [asdict(b) for b in self.backends],
                "gpus": self.gpus}

    def lines(self) -> list[str]:
        out = ["machine:"]
        for f in self.findings:
            mark = "ok " if f.ok else "-- "
            out.append(f"  {mark}{f.name:<14} {f.detail}")
            if not f.ok and f.fix:
                out.append(f"  {'':<18} fix: {f.fix}")
        out.append("backends:")
        for b in self.backends:
            state = "usable" if b.usable else "not usable"
            out.append(f"  {'ok ' if b.usable else '-- '}{b.name:<16} {state}: {b.why}")
        return out


Runner = Callable[[list[str]], "str | None"]


def run_command(argv: list[str]) -> str | None:
    """stdout of a tool, or None when it is absent, fails or hangs (5 s)."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _module_version(name: str) -> tuple[Any | None, str]:
    """(module or None, version or the import error)."""
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        return None, str(exc)
    return module, str(getattr(module, "__version__", getattr(module, "VERSION", "?")))


def diagnose(run: Runner = run_command) -> Report:
    report = Report()
    _gpu(report, run)
    _cuda(report, run)
    trt_ok = _tensorrt(report)
    pycuda_ok, devices = _pycuda(report)
    providers = _onnxruntime(report)
    _cpu_int8(report)
    have_gpu = bool(report.gpus) or devices > 0
    report.backends.append(Backend("onnxruntime", "CPUExecutionProvider" in providers or bool(providers),
                                   "ONNX Runtime CPU (always available)" if providers else "onnxruntime missing"))
    if trt_ok and pycuda_ok and devices > 0:
        report.backends.append(Backend("tensorrt", True, f"TensorRT + pycuda on {devices} CUDA device(s)"))
    else:
        why = [w for w, missing in (("TensorRT is not installed", not trt_ok), ("pycuda is not installed or "
               "cannot load", not pycuda_ok), ("no CUDA device", pycuda_ok and devices == 0)) if missing]
        report.backends.append(Backend("tensorrt", False, "; ".join(why)))
    gpu_eps = [p for p in GPU_PROVIDERS if p in providers]
    if gpu_eps and have_gpu:
        report.backends.append(Backend("onnxruntime-gpu", True, f"providers {', '.join(gpu_eps)}"))
    else:
        why_ort = "no CUDA/TensorRT execution provider (CPU onnxruntime installed)" if not gpu_eps else "no GPU found"
        report.backends.append(Backend("onnxruntime-gpu", False, why_ort))
    return report


def _gpu(report: Report, run: Runner) -> None:
    out = run(["nvidia-smi", "--query-gpu=name,driver_version,compute_cap,memory.total", "--format=csv,noheader"])
    if out:
        for line in out.strip().splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) >= 4:
                report.gpus.append({"name": parts[0], "driver": parts[1], "compute_capability": parts[2],
                                    "memory": parts[3]})
        text = "; ".join(f"{g['name']} (cc {g['compute_capability']}, {g['memory']}, driver {g['driver']})"
                         for g in report.gpus)
        report.findings.append(Finding("gpu", bool(report.gpus), text or "nvidia-smi gave no GPUs"))
        return
    tegra = TEGRA_RELEASE
    if tegra.exists():  # Jetson has no nvidia-smi; L4T names the platform
        first = tegra.read_text(errors="replace").splitlines()[:1]
        report.findings.append(Finding("gpu", True, f"Jetson ({first[0].strip('# ') if first else 'L4T'})"))
        return
    driver = DRIVER_VERSION
    detail = "NVIDIA kernel driver loaded but nvidia-smi missing" if driver.exists() else "no NVIDIA GPU found"
    report.findings.append(Finding("gpu", False, detail + " (nvidia-smi absent)",
                                   "install the NVIDIA driver, or use --engine onnxruntime (CPU)"))


def _cuda(report: Report, run: Runner) -> None:
    libcuda = ctypes.util.find_library("cuda")
    report.findings.append(Finding("driver lib", libcuda is not None, libcuda or "libcuda.so not found",
                                   "install the NVIDIA driver (libcuda comes with it)"))
    nvcc = run(["nvcc", "--version"])
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if nvcc:
        release = next((line.strip() for line in nvcc.splitlines() if "release" in line), "nvcc found")
        report.findings.append(Finding("cuda toolkit", True, release))
    else:
        report.findings.append(Finding("cuda toolkit", False, f"nvcc not on PATH (CUDA_HOME={home or 'unset'})",
                                       "needed only to build pycuda: install the CUDA toolkit"))


def _tensorrt(report: Report) -> bool:
    trt, version = _module_version("tensorrt")
    if trt is None:
        report.findings.append(Finding("tensorrt", False, f"not importable ({version})", TENSORRT_INSTALL_HINT))
        return False
    major = version.split(".")[0]
    typing = "strongly typed only" if major.isdigit() and int(major) >= 11 else "strongly typed via flag"
    report.findings.append(Finding("tensorrt", True, f"{version} ({typing}; precision comes from the ONNX)"))
    return True


def _pycuda(report: Report) -> tuple[bool, int]:
    from perception.core.errors import PerceptionError
    from perception.inference import cuda

    _, version = _module_version("pycuda")
    try:
        devices = cuda.device_count()
    except PerceptionError as exc:
        report.findings.append(Finding("pycuda", False, exc.problem, exc.fix or PYCUDA_HINT))
        return False, 0
    report.findings.append(Finding("pycuda", True, f"{version}, {devices} CUDA device(s)"))
    return True, devices


def _onnxruntime(report: Report) -> list[str]:
    ort, version = _module_version("onnxruntime")
    if ort is None:
        report.findings.append(Finding("onnxruntime", False, version, "pip install onnxruntime"))
        return []
    providers = list(ort.get_available_providers())
    installed = sorted(d for d in ("onnxruntime", "onnxruntime-gpu") if _installed(d))
    detail = f"{version} [{', '.join(installed) or 'unknown package'}]; providers: {', '.join(providers)}"
    clash = len(installed) > 1
    report.findings.append(Finding("onnxruntime", not clash, detail,
                                   "both packages share one module: " + ORT_GPU_INSTALL if clash else ""))
    return providers


def _cpu_int8(report: Report) -> None:
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64", "i686", "x86"):
        report.findings.append(Finding("cpu int8", True, f"{machine}: not checked (the int16 saturation is x86's)"))
        return
    try:
        text = CPUINFO.read_text(errors="replace")
    except OSError:
        report.findings.append(Finding("cpu int8", True, f"unknown ({CPUINFO} unreadable)"))
        return
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    found = [f for f in X86_INT8_DOT if f in flags]
    if found:
        report.findings.append(Finding("cpu int8", True, f"{', '.join(found)}: int8 products accumulate in int32"))
        return
    report.findings.append(Finding(
        "cpu int8", False, "no VNNI: ONNX Runtime's int8 kernels can saturate here and lose accuracy",
        "run INT8 variants with TensorRT and FP32/FP16 models on this CPU "
        "(the build-engine accuracy gate is not affected: it computes Q/DQ in float)"))


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True
