"""Prometheus /metrics and /healthz of a running node, read over real HTTP on loopback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from perception.runtime.config import override
from perception.runtime.node import Node
from perception.wire.subscriber import Subscriber
from tests.node_helpers import run_cli, write_launch
from tests.ops_support import NodeThread, get, node_config
from tests.waiting import wait_until


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, frozenset({"camera": "cam0", **labels}.items()))]


def test_healthz_turns_200_after_warm_up_and_metrics_count_what_flows(tmp_path: Path) -> None:
    config = node_config(tmp_path, metrics="127.0.0.1:0")
    # the node holds in warming_up until a subscriber joins, so the 503 before ready is certain
    config = override(config, "publish", wait_subscribers=1, wait_timeout_s=30.0)
    node = Node.from_config(config)
    with NodeThread(node):
        server = wait_until(lambda: node.ops.server, what="metrics server")
        base = f"http://127.0.0.1:{server.address.port}"
        code, reason = wait_until(lambda: (r := get(base + "/healthz")) and "warming_up" in r[1] and r,
                                  what="a warming_up answer")
        assert code == 503
        assert reason.startswith("node is warming_up")
        with Subscriber(config.publish.endpoint, "cam0", topics=("frame",)) as sub:
            wait_until(lambda: get(base + "/healthz")[0] == 200, what="healthz 200")
            assert get(base + "/healthz")[1].strip() == "ok"
            wait_until(lambda: sub.recv(timeout=0.1), what="a frame")
            samples = _samples(get(base + "/metrics")[1])
            wait_until(lambda: _value(_samples(get(base + "/metrics")[1]),
                                      "perception_frames_processed_total") >= 5, what="5 processed frames")
            samples = _samples(get(base + "/metrics")[1])
            assert _value(samples, "perception_frames_read_total") >= _value(samples,
                                                                             "perception_frames_processed_total")
            assert _value(samples, "perception_frames_dropped_total", cause="stale") == 0
            assert _value(samples, "perception_subscriptions", topic="frame") == 1
            assert ("perception_queue_depth", frozenset({"camera": "cam0", "queue": "capture"}.items())) in samples
            assert _value(samples, "perception_node_state", state="ready") == 1
            assert _value(samples, "perception_node_state", state="warming_up") == 0
            assert _value(samples, "perception_node_info", engine="onnxruntime", model="tiny",
                          source="fake:?fps=30", precision="fp32", version=__import__("perception").__version__) == 1
            inference = _value(samples, "perception_stage_latency_seconds_count", stage="inference")
            assert inference >= 5
            assert _value(samples, "perception_stage_latency_seconds_bucket", stage="inference", le="+Inf") == inference
            assert _value(samples, "perception_end_to_end_latency_seconds_count") >= 5
            assert _value(samples, "perception_source_reconnects_total") == 0
        # the subscriber closed: its subscriptions come back as unsubscribes
        wait_until(lambda: _value(_samples(get(base + "/metrics")[1]), "perception_subscriptions",
                                  topic="frame") == 0, what="subscription gauge back to 0")
        assert get(base + "/nothing")[0] == 404


def test_healthz_says_why_when_the_camera_is_lost(tmp_path: Path) -> None:
    config = node_config(tmp_path, "fake:?fps=30&lose_after=10&fail_opens=1000", metrics="127.0.0.1:0")
    node = Node.from_config(config)
    with NodeThread(node):
        server = wait_until(lambda: node.ops.server, what="metrics server")
        url = f"http://127.0.0.1:{server.address.port}/healthz"
        code, reason = wait_until(lambda: (r := get(url)) and "source_lost" in r[1] and r, what="source_lost")
        assert code == 503
        assert reason.startswith("node is source_lost (")


def test_metrics_port_in_use_is_one_line_exit_2(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        launch = write_launch(tmp_path, "fake:?fps=30", f"ipc://{tmp_path}/n.sock")
        result = run_cli("run", str(launch), "--metrics", f"127.0.0.1:{port}", "--quiet")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert lines == [f"perception run: error: metrics address 127.0.0.1:{port} is in use: "
                     "choose another port, or stop the process that holds it"]


@pytest.mark.parametrize(("value", "message"), [
    ("0.0.0.0:9108", "refusing to serve metrics on non-loopback address 0.0.0.0:9108"),
    ("127.0.0.1:http", "has no valid port"),
    ("127.0.0.1:70000", "has no valid port"),
])
def test_bad_metrics_addresses_are_refused(tmp_path: Path, value: str, message: str) -> None:
    launch = write_launch(tmp_path, "fake:?fps=30", f"ipc://{tmp_path}/n.sock")
    result = run_cli("run", str(launch), "--metrics", value, "--quiet")
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
