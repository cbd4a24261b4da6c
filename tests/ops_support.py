"""Shared by the operations tests: an in-process node in a thread, plain HTTP GETs."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from perception.runtime.config import NodeConfig, load_launch, override
from perception.runtime.node import Node, RunReport
from tests.node_helpers import write_launch


def node_config(tmp_path: Path, source: str = "fake:?fps=30", **ops: Any) -> NodeConfig:
    config = load_launch(write_launch(tmp_path, source, f"ipc://{tmp_path}/node.sock"))
    config = override(config, "ops", **ops)
    return override(config, "run", summary=False)


class NodeThread:
    """Runs Node.run() in a thread; stop() ends it and returns its report (or raises its error)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.report: RunReport | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.report = self.node.run()
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> NodeThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> RunReport | None:
        self.node.stop()
        self._thread.join(timeout=20)
        assert not self._thread.is_alive(), "node did not stop"
        return self.report


def get(url: str) -> tuple[int, str]:
    """Status and body of a GET; 4xx/5xx are answers, not exceptions."""
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
