"""The generator and the training code run on a bare GPU machine: they must not import the node's
transport and recording stack (ZeroMQ, msgpack, zstandard, MCAP)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCKED = ("zmq", "msgpack", "zstandard", "mcap")


def _import_with_blocked(modules: list[str]) -> subprocess.CompletedProcess[str]:
    code = "\n".join([
        "import sys",
        *(f"sys.modules[{name!r}] = None  # any import of it now raises ImportError" for name in BLOCKED),
        *(f"import {m}" for m in modules),
        "from perception.synth.scene import training_sample",
        "rgb, sem, inst = training_sample(1_000_001)",
        "print(rgb.shape, sem.shape, inst.shape)",
    ])
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)


def test_generator_imports_without_the_node_stack() -> None:
    result = _import_with_blocked(["perception.synth", "perception.synth.scene"])
    assert result.returncode == 0, result.stderr
    assert "(192, 320, 3) (192, 320) (192, 320)" in result.stdout


def test_training_code_imports_without_the_node_stack() -> None:
    pytest.importorskip("torch")
    modules = ["perception.train.cli", "perception.train.loop", "perception.train.export", "perception.train.data",
               "perception.train.model", "perception.train.__main__"]
    result = _import_with_blocked(modules)
    assert result.returncode == 0, result.stderr
