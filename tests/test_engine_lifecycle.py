"""engine = "tensorrt" with fallback = "onnxruntime": publish at once, build aside, swap between frames.

The node runs for real (image replay, ONNX Runtime, ZeroMQ over ipc); TensorRT and pycuda are
tests/trt_fakes.py, in this process and in the builder process the node starts. Every wait is
for a status the node publishes.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from perception.inference.plan_cache import PlanCache
from perception.wire.messages import Message, StatusMessage
from tests.lifecycle_support import (
    check_contiguous,
    frames_after,
    gpu_fakes,
    lifecycle_launch,
    serve_until,
    status_with,
)
from tests.node_helpers import run_cli

__all__ = ["gpu_fakes"]  # the fixture, used by name

Builder = Callable[..., None]


def test_no_tensorrt_serves_on_the_fallback_from_the_first_frame_and_says_why_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # not importable, also where it is installed
    config = lifecycle_launch(tmp_path, tmp_path / "cache", frames=30)
    with caplog.at_level(logging.WARNING, logger="perception"):
        heard = serve_until(config, lambda messages: sum(m.kind == "frame" for m in messages) >= 10)
    assert heard.error is None
    check_contiguous(heard)
    why = [d for d in heard.details() if "is not usable here" in d]
    assert len(why) == 1 and "'tensorrt' package" in why[0] and "serving on onnxruntime" in why[0]
    assert [r for r in caplog.records if "is not usable here" in r.getMessage()].__len__() == 1
    assert set(heard.engines()) == {"onnxruntime"}
    assert "serving on onnxruntime" in heard.details("ready")[-1]
    assert not PlanCache(tmp_path / "cache").failures(), "a missing TensorRT is not a build failure"


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_cli_without_tensorrt_says_why_once_on_stderr(tmp_path: Path) -> None:
    from tests.node_helpers import image_folder

    images = image_folder(tmp_path / "images", 5)
    from tests.onnx_models import tiny_panoptic

    card = tiny_panoptic(tmp_path / "model")
    done = run_cli("run", "--source", f"images:{images}", "--rate", "0", "--card", str(card),
                   "--engine", "tensorrt", "--fallback", "onnxruntime", "--cache-dir", str(tmp_path / "cache"),
                   "--endpoint", f"ipc://{tmp_path / 'cli.sock'}", "--quiet")
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("tensorrt is not usable here") == 1
    assert "pip install 'perception-node[tensorrt]'" in done.stderr


def test_builds_in_the_background_and_swaps_without_a_gap(tmp_path: Path, gpu_fakes: Builder) -> None:
    gpu_fakes(build_seconds=2.0)
    cache = tmp_path / "cache"
    heard = serve_until(lifecycle_launch(tmp_path, cache), frames_after("serving on tensorrt", 5))
    assert heard.error is None
    check_contiguous(heard)
    building = [d for d in heard.details("ready") if "plan building" in d]
    assert building and building[0].startswith("serving on onnxruntime; tensorrt plan building (")
    assert any(not d.endswith("(0%)") for d in building), "progress never moved"
    swap = heard.index_of(status_with("switched from onnxruntime to tensorrt"))
    first_frame = heard.index_of(lambda m: m.kind == "frame")
    assert first_frame < swap, "nothing was published before the plan was ready"
    assert heard.engines()[0] == "onnxruntime" and heard.engines()[-1] == "tensorrt"
    assert sum(m.kind == "frame" for m in heard.messages[swap:]) >= 5
    heartbeat = heard.index_of(status_with("serving on tensorrt"))
    assert swap < heartbeat, "the switch is announced before the heartbeat repeats it"
    assert [e for e in PlanCache(cache).entries() if not e.problem], "the plan was not cached"


def test_second_start_loads_the_cached_plan_directly(tmp_path: Path, gpu_fakes: Builder) -> None:
    cache = tmp_path / "cache"
    first = serve_until(lifecycle_launch(tmp_path / "first", cache), frames_after("switched from", 1))
    assert first.engines()[-1] == "tensorrt"
    gpu_fakes(crash=True)  # any build from here on would fail loudly
    second = serve_until(lifecycle_launch(tmp_path / "second", cache), lambda m: len(m) > 0 and sum(
        x.kind == "frame" for x in m) >= 5)
    assert second.error is None
    check_contiguous(second)
    assert set(second.engines()) == {"tensorrt"}
    assert not [d for d in second.details() if "building" in d or "switched" in d]
    assert "serving on tensorrt (cached plan)" in second.details("ready")


def test_a_disagreeing_plan_is_refused_and_not_rebuilt_next_start(tmp_path: Path, gpu_fakes: Builder) -> None:
    gpu_fakes(disagree=True)
    cache = tmp_path / "cache"
    heard = serve_until(lifecycle_launch(tmp_path / "first", cache), frames_after("disagrees with onnxruntime", 5))
    check_contiguous(heard)
    refused = heard.details("error")
    assert len(refused) == 1 and "of the image are not found in both" in refused[0]
    assert "perception engines prune" in refused[0]
    assert set(heard.engines()) == {"onnxruntime"}
    assert not PlanCache(cache).entries(), "a refused plan stays in the cache"
    assert PlanCache(cache).failures()
    gpu_fakes(crash=True)
    again = serve_until(lifecycle_launch(tmp_path / "second", cache), frames_after("not retried", 3))
    assert not [d for d in again.details() if "building" in d]
    assert any("disagrees" in d for d in again.details("error"))


def test_a_crashing_builder_leaves_the_node_serving(tmp_path: Path, gpu_fakes: Builder) -> None:
    gpu_fakes(crash=True)
    cache = tmp_path / "cache"
    heard = serve_until(lifecycle_launch(tmp_path, cache), frames_after("tensorrt failed (", 3))  # the heartbeat
    assert heard.error is None
    check_contiguous(heard)
    error = heard.details("error")
    assert len(error) == 1 and "killed by SIGSEGV" in error[0] and "perception doctor" in error[0]
    assert "tensorrt failed" in heard.details("ready")[-1]
    assert set(heard.engines()) == {"onnxruntime"}


def test_a_failure_is_retried_when_a_limit_is_raised(tmp_path: Path, gpu_fakes: Builder) -> None:
    gpu_fakes(build_seconds=60.0)
    cache = tmp_path / "cache"
    heard = serve_until(lifecycle_launch(tmp_path / "first", cache, build_timeout_s=1.0),
                        frames_after("did not finish within 1 s", 2))
    assert "--build-timeout" in heard.details("error")[0]
    same = serve_until(lifecycle_launch(tmp_path / "same", cache, build_timeout_s=1.0),
                       frames_after("not retried", 1))
    assert not [d for d in same.details() if "building" in d]
    gpu_fakes(build_seconds=0.5)
    raised = serve_until(lifecycle_launch(tmp_path / "raised", cache, build_timeout_s=120.0),
                         frames_after("switched from onnxruntime to tensorrt", 1))
    assert raised.engines()[-1] == "tensorrt"
    assert not PlanCache(cache).failures(), "a success forgets the failure"


def test_a_builder_over_its_memory_limit_is_stopped(tmp_path: Path, gpu_fakes: Builder) -> None:
    gpu_fakes(build_seconds=6.0, build_memory_mib=3000)
    heard = serve_until(lifecycle_launch(tmp_path, tmp_path / "cache", build_memory_mib=800),
                        frames_after("over its limit of 800 MiB", 2))
    assert heard.error is None
    assert "build_memory_mib" in heard.details("error")[0]


def test_a_plan_for_another_tensorrt_is_never_loaded(tmp_path: Path, gpu_fakes: Builder,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from perception.inference.engine import EngineOptions
    from perception.inference.tensorrt import TrtEngine
    from tests import trt_fakes
    from tests.onnx_models import tiny_panoptic

    cache = tmp_path / "cache"
    card = tiny_panoptic(tmp_path / "old" / "model")
    monkeypatch.setitem(sys.modules, "tensorrt", trt_fakes.make_fake_tensorrt(version="10.1.0"))
    from perception.models.card import load_card

    TrtEngine(load_card(card).model_file, EngineOptions(cache_dir=cache)).close()  # a plan an older TensorRT built
    monkeypatch.setitem(sys.modules, "tensorrt", trt_fakes.make_fake_tensorrt())
    heard = serve_until(lifecycle_launch(tmp_path, cache), frames_after("switched from", 1))
    stale = [d for d in heard.details() if "cached plan not loaded" in d]
    assert len(stale) == 1 and "'10.1.0' != '10.3.0'" in stale[0]
    assert heard.engines()[0] == "onnxruntime" and heard.engines()[-1] == "tensorrt"
    versions = sorted(e.key.tensorrt_version for e in PlanCache(cache).entries() if e.key)
    assert versions == ["10.1.0", "10.3.0"]


def test_stopping_the_node_stops_its_builder(tmp_path: Path, gpu_fakes: Builder) -> None:
    from perception.inference.plan_cache import file_lock

    gpu_fakes(build_seconds=30.0)
    cache = tmp_path / "cache"
    def building(messages: list[Message]) -> bool:  # the builder runs: it reported progress
        return any(isinstance(m, StatusMessage) and "plan building" in m.detail and "(0%)" not in m.detail
                   for m in messages)

    heard = serve_until(lifecycle_launch(tmp_path, cache), building)
    assert heard.error is None
    locks = list(cache.glob("*.lock"))
    assert locks, "the builder never took its plan lock"
    for lock in locks:
        with file_lock(lock, timeout_s=10.0):  # the builder's flock went with its process
            pass
    assert not PlanCache(cache).entries() and not PlanCache(cache).failures(), "a cancelled build is no failure"


def test_another_device_and_the_cache_dir_reach_the_builder(tmp_path: Path, gpu_fakes: Builder) -> None:
    heard = serve_until(lifecycle_launch(tmp_path, tmp_path / "plans", device=7),
                        lambda m: sum(x.kind == "frame" for x in m) >= 3)
    why = [d for d in heard.details() if "is not usable here" in d]
    assert len(why) == 1 and "GPU 7 does not exist" in why[0]
    assert not (tmp_path / "plans").exists(), "nothing is built for a GPU that is not there"


def test_fallback_and_build_limits_from_the_launch_file_and_the_cli(tmp_path: Path) -> None:
    from perception.cli import build_parser
    from perception.commands.run import build_config
    from perception.runtime.config import load_launch
    from tests.node_helpers import write_launch

    launch = write_launch(tmp_path, "images:x", f"ipc://{tmp_path}/c.sock")
    launch.write_text(launch.read_text().replace("[model]\n", '[model]\nengine = "tensorrt"\nfallback = '
                                                 '"onnxruntime"\nbuild_timeout_s = 600\nbuild_memory_mib = 4096\n'))
    m = load_launch(launch).model
    assert (m.engine, m.fallback, m.build_timeout_s, m.build_memory_mib) == ("tensorrt", "onnxruntime", 600.0, 4096)
    args = build_parser().parse_args(["run", str(launch), "--fallback", "onnxruntime-gpu", "--build-timeout", "60",
                                      "--build-memory-mib", "0"])
    m = build_config(args).model
    assert (m.fallback, m.build_timeout_s, m.build_memory_mib) == ("onnxruntime-gpu", 60.0, 0)


@pytest.mark.parametrize(("line", "message"), [
    ('fallback = "onnxruntime"', r"fallback = 'onnxruntime' is set but engine = 'onnxruntime'"),
    ('engine = "tensorrt"\nfallback = "tensorrt"', "not an engine that needs no plan"),
    ('engine = "tensorrt"\nbuild_timeout_s = -5', r"build_timeout_s = -5 is negative"),
])
def test_a_bad_fallback_is_a_config_error(tmp_path: Path, line: str, message: str) -> None:
    from perception.core.errors import ConfigError
    from perception.runtime.config import load_launch
    from tests.node_helpers import write_launch

    launch = write_launch(tmp_path, "images:x", f"ipc://{tmp_path}/c.sock")
    launch.write_text(launch.read_text().replace("[model]\n", f"[model]\n{line}\n"))
    with pytest.raises(ConfigError, match=message):
        load_launch(launch)


def test_fp16_is_checked_against_the_fp32_fallback(tmp_path: Path, gpu_fakes: Builder) -> None:
    """The fallback serves the card's FP32 model (ONNX Runtime on the CPU refuses FP16); the plan is
    built from the gated FP16 variant and compared with it. The tiny model's center head is a flat
    plateau: FP16 rounding (2e-4) splits each car into several instance peaks, which the check sees
    as segments the two engines do not share, so this plan, really converted, is refused."""
    import onnx

    from perception.inference.tensorrt import variant_path
    from perception.models.card import load_card
    from perception.tools.precision import convert_fp16

    cache = tmp_path / "cache"
    config = lifecycle_launch(tmp_path, cache, precision="fp16")
    missing = serve_until(config, frames_after("tensorrt failed (", 2))
    check_contiguous(missing)
    assert "perception build-engine" in missing.details("error")[0], "the variant comes from build-engine"
    assert set(missing.engines()) == {"onnxruntime"}
    fp32 = load_card(config.model.card).model_file
    variant = variant_path(fp32, "fp16", cache)
    variant.parent.mkdir(parents=True)
    onnx.save(convert_fp16(onnx.load(str(fp32))), str(variant))
    heard = serve_until(lifecycle_launch(tmp_path / "again", cache, precision="fp16"),
                        frames_after("tensorrt failed (", 2))
    check_contiguous(heard)
    [refused] = heard.details("error")
    assert "are not found in both (tolerance 0.3% for fp16)" in refused
    [(_, failure)] = PlanCache(cache).recorded_failures()
    assert failure is not None and "disagrees" in failure.cause
