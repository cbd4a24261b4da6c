"""Failure records of background builds, and `perception engines list|prune` around them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from perception.cli import main
from perception.inference.plan_cache import PlanCache
from tests.test_plan_cache_store import make_key


def test_a_failure_is_kept_for_its_key_and_retried_only_with_looser_limits(tmp_path: Path) -> None:
    cache = PlanCache(tmp_path)
    key = make_key()
    cache.record_failure(key, "the builder crashed", "check the driver", {"timeout_s": 600.0, "memory_mib": 4096.0})
    failure = cache.failure(key)
    assert failure is not None and failure.cause == "the builder crashed" and failure.fix == "check the driver"
    assert cache.failure(make_key(tensorrt_version="10.4.0")) is None, "another TensorRT is another key"
    assert not failure.retry_allowed({"timeout_s": 600.0, "memory_mib": 4096.0})
    assert not failure.retry_allowed({"timeout_s": 300.0, "memory_mib": 4096.0})
    assert failure.retry_allowed({"timeout_s": 1200.0, "memory_mib": 4096.0})
    assert failure.retry_allowed({"timeout_s": 600.0, "memory_mib": 0.0}), "0 is no limit, the loosest"
    cache.forget_failure(key)
    assert cache.failure(key) is None


def test_a_damaged_failure_record_counts_as_none(tmp_path: Path) -> None:
    cache = PlanCache(tmp_path)
    key = make_key()
    cache.record_failure(key, "x", "y", {})
    next(tmp_path.glob("*.failure")).write_text("{not json")
    assert cache.failure(key) is None
    assert cache.recorded_failures() == [(key.digest(), None)]


def test_list_shows_failures_and_prune_removes_what_cannot_be_used(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = PlanCache(tmp_path)
    good, bad, failed = make_key(), make_key(precision="int8"), make_key(precision="fp32")
    good_path = cache.store(good, b"plan bytes", source="model.onnx")
    cache.store(bad, b"other plan").write_bytes(b"tampered")
    cache.record_failure(failed, "the TensorRT builder process was killed by SIGSEGV", "check", {})
    (tmp_path / f"{failed.digest()}.build.log").write_text("segfault\n")
    dead = tmp_path / f".{good_path.name}.999999999.tmp"  # a writer that died mid-write
    dead.write_bytes(b"half")
    mine = tmp_path / f".{good_path.name}.{os.getpid()}.tmp"  # a write in progress
    mine.write_bytes(b"half")
    assert main(["engines", "list", "--cache-dir", str(tmp_path)]) == 1
    listing = capsys.readouterr().out
    assert "1 recorded build failure(s)" in listing and "killed by SIGSEGV" in listing
    assert "2 plan(s)" in listing and "BAD: plan hash does not match" in listing
    assert good.digest()[:16] in listing

    assert main(["engines", "prune", "--cache-dir", str(tmp_path)]) == 0
    assert "pruned 4 file(s)" in capsys.readouterr().out  # the bad plan, its sidecar, the log, the dead temp
    assert [e.key for e in cache.entries()] == [good] and cache.failure(failed) is not None
    assert mine.exists() and not dead.exists()

    assert main(["engines", "prune", "--failures", "--cache-dir", str(tmp_path)]) == 0
    assert cache.failure(failed) is None and cache.entries()
    assert main(["engines", "prune", "--older-than", "0", "--cache-dir", str(tmp_path)]) == 0
    assert not cache.entries()


@pytest.mark.parametrize("args", [["list", "--failures"], ["clear", "--older-than", "3"],
                                  ["prune", "--older-than", "-1"]])
def test_prune_options_elsewhere_are_refused_in_one_line(args: list[str], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["engines", *args, "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "prune" in err


def test_clear_removes_failure_records_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = PlanCache(tmp_path)
    cache.record_failure(make_key(), "x", "y", {})
    assert main(["engines", "clear", "--cache-dir", str(tmp_path)]) == 0
    assert not cache.failures()
