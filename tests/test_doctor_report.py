"""`perception doctor` with everything absent (this machine) and with a GPU stack faked in."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from perception.cli import main
from perception.tools import doctor
from perception.tools.doctor import diagnose
from tests import trt_fakes


@pytest.fixture
def bare(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No nvidia-smi/nvcc on PATH, no tensorrt, no pycuda: what a CPU-only robot looks like."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setattr(doctor, "TEGRA_RELEASE", tmp_path / "no-tegra")
    monkeypatch.setattr(doctor, "DRIVER_VERSION", tmp_path / "no-driver")
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)


@pytest.mark.usefixtures("bare")
def test_everything_absent_is_a_clear_report_and_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "-- gpu" in out and "no NVIDIA GPU found" in out
    assert "-- tensorrt" in out and "perception-node[tensorrt]" in out
    assert "-- pycuda" in out
    assert "ok onnxruntime      usable" in out
    assert "-- tensorrt         not usable: TensorRT is not installed; pycuda is not installed" in out
    assert "-- onnxruntime-gpu  not usable: no CUDA/TensorRT execution provider" in out


@pytest.mark.usefixtures("bare")
def test_json_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    usable = {b["name"]: b["usable"] for b in data["backends"]}
    assert usable == {"onnxruntime": True, "tensorrt": False, "onnxruntime-gpu": False}


def test_gpu_machine_with_tensorrt_and_pycuda(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA H100 80GB HBM3, 570.86.15, 9.0, 81559 MiB'\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{tmp_path / 'none'}")
    for name, module in trt_fakes.fake_pycuda().items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setitem(sys.modules, "tensorrt", trt_fakes.make_fake_tensorrt(version="11.4.0"))
    report = diagnose()
    assert report.gpus == [{"name": "NVIDIA H100 80GB HBM3", "driver": "570.86.15", "compute_capability": "9.0",
                            "memory": "81559 MiB"}]
    assert report.finding("tensorrt").detail.startswith("11.4.0 (strongly typed only")
    assert report.finding("pycuda").ok
    backends = {b.name: b for b in report.backends}
    assert backends["tensorrt"].usable, backends["tensorrt"].why
    assert not backends["onnxruntime-gpu"].usable  # CPU onnxruntime here: no GPU providers


def test_hanging_tool_does_not_hang_doctor(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def runner(argv: list[str]) -> str | None:
        calls.append(argv)
        return None  # what run_command returns for a tool that timed out

    report = diagnose(runner)
    assert calls and report.finding("gpu").detail.endswith("(nvidia-smi absent)")


def test_jetson_is_recognized_without_nvidia_smi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    release = tmp_path / "nv_tegra_release"
    release.write_text("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64\n")
    monkeypatch.setattr(doctor, "TEGRA_RELEASE", release)
    report = diagnose(lambda argv: None)
    assert report.finding("gpu").ok
    assert report.finding("gpu").detail.startswith("Jetson (R36 (release), REVISION: 4.3")


SKYLAKE_FLAGS = "fpu vme sse sse2 ssse3 fma avx avx2 avx512f avx512dq avx512cd avx512bw avx512vl"


@pytest.mark.parametrize(("arch", "flags", "ok", "says"), [
    ("x86_64", SKYLAKE_FLAGS, False, "no VNNI"),
    ("x86_64", SKYLAKE_FLAGS + " avx512_vnni", True, "avx512_vnni: int8 products accumulate in int32"),
    ("x86_64", "fpu sse avx avx2 avx_vnni", True, "avx_vnni"),
    ("aarch64", "fp asimd asimddp", True, "aarch64: not checked"),
])
def test_cpu_int8_finding_reads_the_instruction_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, arch: str,
                                                     flags: str, ok: bool, says: str) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: some CPU\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    monkeypatch.setattr(doctor, "CPUINFO", cpuinfo)
    monkeypatch.setattr(doctor.platform, "machine", lambda: arch)
    finding = diagnose(lambda argv: None).finding("cpu int8")
    assert (finding.ok, says in finding.detail) == (ok, True), finding
    if not ok:
        assert "TensorRT" in finding.fix  # where such a CPU's user should run INT8 instead


def test_unreadable_cpuinfo_is_a_finding_not_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(doctor, "CPUINFO", tmp_path / "absent")
    monkeypatch.setattr(doctor.platform, "machine", lambda: "x86_64")
    assert diagnose(lambda argv: None).finding("cpu int8").detail.startswith("unknown")
