"""Plan cache: key, atomic write, lock across processes, hash check, corrupted and foreign plans."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from perception.inference.plan_cache import (
    CorruptPlanError,
    PlanCache,
    PlanCacheError,
    PlanKey,
    atomic_write,
    default_cache_dir,
    file_lock,
)

REPO = Path(__file__).resolve().parents[1]


def make_key(**overrides: object) -> PlanKey:
    values: dict[str, object] = {
        "onnx_sha256": "ab" * 32,
        "tensorrt_version": "10.3.0",
        "gpu_name": "NVIDIA Orin",
        "compute_capability": "8.7",
        "precision": "fp16",
        "shapes": {"image": (1, 3, 192, 320)},
        "builder_options": {"workspace_mib": 1024, "opt_level": 3},
    }
    values.update(overrides)
    return PlanKey.create(**values)  # type: ignore[arg-type]


def test_key_is_order_independent_and_round_trips() -> None:
    a = PlanKey.create("00" * 32, "11.4.0", "H100", "9.0", "fp32",
                       {"b": (1, 2), "a": (3,)}, {"y": 1, "x": "2"})
    b = PlanKey.create("00" * 32, "11.4.0", "H100", "9.0", "fp32",
                       {"a": (3,), "b": (1, 2)}, {"x": "2", "y": 1})
    assert a == b
    assert a.digest() == b.digest()
    assert PlanKey.from_dict(json.loads(json.dumps(a.to_dict()))) == a


@pytest.mark.parametrize(("field_name", "value"), [
    ("onnx_sha256", "cd" * 32),
    ("tensorrt_version", "11.4.0"),
    ("gpu_name", "NVIDIA H100 80GB HBM3"),
    ("compute_capability", "9.0"),
    ("precision", "int8"),
    ("shapes", {"image": (1, 3, 384, 640)}),
    ("builder_options", {"workspace_mib": 2048, "opt_level": 3}),
])
def test_every_key_field_changes_the_digest(field_name: str, value: object) -> None:
    assert make_key(**{field_name: value}).digest() != make_key().digest()


def test_default_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "perception" / "engines"
    assert PlanCache().root == tmp_path / "perception" / "engines"


def test_build_once_then_hit(tmp_path: Path) -> None:
    cache = PlanCache(tmp_path)
    calls: list[int] = []

    def build() -> bytes:
        calls.append(1)
        return b"plan-bytes-" * 100

    first = cache.get_or_build(make_key(), build, source="m.onnx")
    second = cache.get_or_build(make_key(), build)
    assert (first.status, second.status) == ("built", "hit")
    assert second.plan == first.plan
    assert len(calls) == 1
    sidecar = json.loads(first.path.with_suffix(".json").read_text())
    assert sidecar["key"] == make_key().to_dict()
    assert sidecar["key_digest"] == make_key().digest() == first.path.stem
    assert sidecar["source"] == "m.onnx"
    # a different key is a miss, not the cached plan
    assert cache.load(make_key(precision="fp32")) is None


def test_truncated_plan_is_rebuilt_or_refused(tmp_path: Path) -> None:
    cache = PlanCache(tmp_path)
    path = cache.get_or_build(make_key(), lambda: b"x" * 4096).path
    path.write_bytes(path.read_bytes()[:1000])  # a copy interrupted half way
    with pytest.raises(CorruptPlanError, match="sha256"):
        cache.load(make_key())
    with pytest.raises(CorruptPlanError):
        cache.get_or_build(make_key(), lambda: b"new", rebuild_corrupt=False)
    rebuilt = cache.get_or_build(make_key(), lambda: b"y" * 4096)
    assert rebuilt.status == "rebuilt"
    assert cache.load(make_key()) == b"y" * 4096


def test_flipped_byte_is_detected(tmp_path: Path) -> None:
    cache = PlanCache(tmp_path)
    path = cache.get_or_build(make_key(), lambda: bytes(range(256)) * 16).path
    data = bytearray(path.read_bytes())
    data[1234] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptPlanError, match="corrupted or replaced"):
        cache.load(make_key())


def test_foreign_plan_under_the_right_name_is_refused(tmp_path: Path) -> None:
    """A plan copied from another machine under this key's file name is never trusted by name."""
    cache = PlanCache(tmp_path)
    other = make_key(gpu_name="NVIDIA GeForce RTX 4090", compute_capability="8.9")
    foreign = cache.get_or_build(other, lambda: b"built on another gpu").path
    target = cache.plan_path(make_key())
    os.replace(foreign, target)
    os.replace(foreign.with_suffix(".json"), target.with_suffix(".json"))
    with pytest.raises(CorruptPlanError, match="gpu_name"):
        cache.load(make_key())
    [entry] = cache.entries()
    assert entry.problem == "file name does not match its key"


@pytest.mark.parametrize("sidecar_text", ["", "{not json", '{"format": 99}', '{"format": 1, "key": {}}'])
def test_bad_sidecar_is_a_typed_error(tmp_path: Path, sidecar_text: str) -> None:
    cache = PlanCache(tmp_path)
    path = cache.get_or_build(make_key(), lambda: b"plan").path
    path.with_suffix(".json").write_text(sidecar_text)
    with pytest.raises(CorruptPlanError) as info:
        cache.load(make_key())
    assert info.value.fix  # every error says what to do


def test_plan_without_sidecar_is_untrusted(tmp_path: Path) -> None:
    cache = PlanCache(tmp_path)
    cache.plan_path(make_key()).parent.mkdir(parents=True, exist_ok=True)
    cache.plan_path(make_key()).write_bytes(b"dropped in by hand")
    with pytest.raises(CorruptPlanError, match="no sidecar"):
        cache.load(make_key())
    assert cache.entries()[0].problem == "no sidecar"


def test_empty_plan_is_not_cached(tmp_path: Path) -> None:
    with pytest.raises(PlanCacheError, match="empty plan"):
        PlanCache(tmp_path).get_or_build(make_key(), lambda: b"")
    assert not PlanCache(tmp_path).plan_path(make_key()).exists()


def test_failed_build_leaves_nothing_behind(tmp_path: Path) -> None:
    cache = PlanCache(tmp_path)

    def build() -> bytes:
        raise RuntimeError("builder ran out of memory")

    with pytest.raises(RuntimeError):
        cache.get_or_build(make_key(), build)
    assert cache.load(make_key()) is None
    assert cache.entries() == []


def test_atomic_write_replaces_whole_file_and_leaves_no_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.bin"
    atomic_write(target, b"old" * 1000)
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.bin"]


def test_list_and_clear(tmp_path: Path) -> None:
    cache = PlanCache(tmp_path)
    cache.get_or_build(make_key(), lambda: b"a" * 10, source="one.onnx")
    cache.get_or_build(make_key(precision="int8"), lambda: b"b" * 20, source="two.onnx")
    entries = cache.entries()
    assert sorted(e.key.precision for e in entries if e.key) == ["fp16", "int8"]
    assert all(e.problem == "" for e in entries)
    assert sorted(e.plan_bytes for e in entries) == [10, 20]
    assert cache.clear() == 2
    assert cache.entries() == []
    assert list(tmp_path.iterdir()) == []
    assert PlanCache(tmp_path / "absent").clear() == 0


def test_lock_timeout_names_the_problem(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import fcntl, os, sys, time
            fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)
            fcntl.flock(fd, fcntl.LOCK_EX)
            print("locked", flush=True)
            sys.stdin.readline()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(PlanCacheError, match="another process holds"), file_lock(lock, timeout_s=0.2):
            pass
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
    with file_lock(lock, timeout_s=5):  # free again once the holder exits
        pass


_BUILDER = """
import sys, time
from pathlib import Path
from perception.inference.plan_cache import PlanCache, PlanKey
root, log, who = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
key = PlanKey.create("ef" * 32, "10.3.0", "NVIDIA Orin", "8.7", "fp16", {"image": (1, 3, 8, 8)})
def build():
    with open(log, "a") as f:
        f.write(who + " start\\n")
    time.sleep(0.5)  # long enough that the other process arrives while this one builds
    with open(log, "a") as f:
        f.write(who + " end\\n")
    return ("plan by " + who).encode()
result = PlanCache(root).get_or_build(key, build)
print(result.status, result.plan.decode())
"""


def test_two_processes_build_the_same_plan_once(tmp_path: Path) -> None:
    log = tmp_path / "builds.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", _BUILDER, str(tmp_path / "cache"), str(log), who],
                              stdout=subprocess.PIPE, text=True, env=env) for who in ("A", "B")]
    outputs = [p.communicate(timeout=60)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    statuses = sorted(o[0] for o in outputs)
    assert statuses == ["built", "hit"]
    assert outputs[0][1:] == outputs[1][1:]  # both got the same plan
    lines = log.read_text().split()
    assert len(lines) == 4  # one build: "X start", "X end"
