"""What the node tells its operators, in one object the node reports to.

The node calls describe / state / frame from its output loop and tick once per loop turn;
this object turns them into Prometheus metrics and /healthz (when --metrics is given),
systemd notifications (when NOTIFY_SOCKET is set) and the live status line (on a terminal).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from perception.core.result import FrameResult
from perception.ops.health import Health
from perception.ops.http import OpsServer
from perception.ops.listen import ListenAddress
from perception.ops.live_status import LiveStatus
from perception.ops.liveness import Liveness
from perception.ops.metrics import NodeMetrics
from perception.ops.notify import SystemdNotifier
from perception.ops.progress import Progress
from perception.ops.sample import NodeSample

if TYPE_CHECKING:
    from perception.ops.foxglove_live import FoxgloveLive

log = logging.getLogger(__name__)

STATUS_INTERVAL_S = 1.0  # STATUS= to systemd
LIVE_INTERVAL_S = 0.5  # the terminal line

Probe = Callable[[], NodeSample]


class Operations:
    """cameras: the node's, the first is the default camera (the live line, systemd, /healthz are node-wide)."""

    def __init__(self, cameras: Sequence[str], *, metrics: ListenAddress | None = None, allow_public: bool = False,
                 notifier: SystemdNotifier | None = None, live: LiveStatus | None = None,
                 stall_s: float = 2.0, replay_progress: bool = False, foxglove: ListenAddress | None = None) -> None:
        self.cameras = list(cameras)
        self.camera = self.cameras[0]
        self.health = Health(stall_s)
        self.notifier = notifier
        self.live = live
        self.server: OpsServer | None = None
        self._metrics_address, self._allow_public = metrics, allow_public
        self._probe: Probe | None = None
        self.metrics: NodeMetrics | None = None
        self._liveness = Liveness()
        self._ready_sent = False
        self._logged_state = ""
        self.progress: Progress | None = None
        self._replay_progress = replay_progress  # a person (terminal) or a journal reads this run's progress
        self._replaying = False
        self._foxglove_address = foxglove
        self.foxglove: FoxgloveLive | None = None
        self._next_stats = 0.0
        self._replay_total: int | None = None
        self._stopping_sent = False
        self._next_status = self._next_live = self._next_watchdog = 0.0

    @classmethod
    def quiet(cls, cameras: Sequence[str]) -> Operations:
        """Reports to no one: tests and embedded use."""
        return cls(cameras)

    def start(self, probe: Probe) -> None:
        """Serve /metrics and /healthz (a busy or public port without allow_public raises OpsError)."""
        self._probe = probe
        if self._metrics_address is not None:
            self.metrics = NodeMetrics(self.cameras, probe, lambda: self.health.current_state)
            self.server = OpsServer(self._metrics_address, self.metrics, self.health, allow_public=self._allow_public)
            log.info("metrics on http://%s/metrics, health on /healthz", self.server.address)
        if self._foxglove_address is not None:
            from perception.ops.foxglove_live import FoxgloveLive

            self.foxglove = FoxgloveLive(self._foxglove_address, self.cameras, allow_public=self._allow_public)
            log.info("Foxglove on ws://%s", self.foxglove.address)

    def replaying(self, length: int | None, max_frames: int = 0) -> None:
        """A lossless replay: show a progress bar (terminal) or periodic lines (journal) instead of the live line."""
        if not self._replay_progress:
            return
        known = [n for n in (length, max_frames) if n]
        self._replay_total = min(known) if known else None
        self._replaying = True  # the bar starts with the first frames, after the start-up log lines
        self.live = None

    def describe(self, info: Mapping[str, str], camera: str | None = None) -> None:
        """Engine, model, source, version of a camera (default: the first): its `perception_node_info` series."""
        if self.metrics is not None:
            self.metrics.describe(info, camera)

    def state(self, state: str, detail: str = "") -> None:
        if state != self._logged_state:  # transitions only: the heartbeat repeats states every second
            self._logged_state = state
            # start-up steps pass in seconds on every run, and before a start-up error they would
            # stand above its one line: debug; the states an operator acts on stay visible
            start_up = state in ("starting", "warming_up") or (state == "stopped" and detail == "not_started")
            level = (logging.DEBUG if start_up else
                     logging.WARNING if state in ("source_lost", "error") else logging.INFO)
            log.log(level, "state %s%s", state, f" ({detail})" if detail else "",
                    extra={"camera": self.camera, "state": state})
        self.health.state(state, detail)
        if self.notifier is not None and state == "ready" and not self._ready_sent:
            self._ready_sent = True  # READY=1 once: after warm-up, when frames start flowing
            self.notifier.ready(f"ready{': ' + detail if detail else ''}")

    def camera_state(self, camera: str, state: str, detail: str = "") -> None:
        """A status one camera published: on its own Foxglove status channel."""
        if self.foxglove is not None:
            self.foxglove.status(camera, state, detail)

    def frame(self, stamps: Mapping[str, int], camera: str | None = None) -> None:
        self.health.frame()
        if self.metrics is not None:
            self.metrics.observe(stamps, camera)

    def result(self, image: np.ndarray, result: FrameResult, class_names: Sequence[str]) -> None:
        """A published frame with its picture: for the live Foxglove streams."""
        if self.foxglove is not None:
            self.foxglove.frame(image, result, class_names)

    def tick(self) -> None:
        """Once per output-loop turn: pet the watchdog while frames move, refresh STATUS= and the live line."""
        if self._probe is None or (self.notifier is None and self.live is None and not self._replaying
                                   and self.foxglove is None):
            return
        if self._replaying and self.progress is None:
            self.progress = Progress("replaying", self._replay_total)
        now = time.monotonic()
        sample: NodeSample | None = None
        if self.foxglove is not None and now >= self._next_stats:
            self._next_stats = now + STATUS_INTERVAL_S
            sample = self._probe()
            for camera, own in (dict(sample.cameras) or {self.camera: sample}).items():
                self.foxglove.stats(camera, {**own.latency, "counters": dict(own.counters)})
        state = self.health.current_state
        notifier = self.notifier
        if notifier is not None and notifier.watchdog_interval_s and now >= self._next_watchdog:
            # checked twice per interval, so one turn without progress never misses the deadline
            self._next_watchdog = now + notifier.watchdog_interval_s / 2
            sample = self._probe()
            if self._liveness.progressing(sample):
                notifier.watchdog()
        if notifier is not None and now >= self._next_status:
            self._next_status = now + STATUS_INTERVAL_S
            sample = sample or self._probe()
            notifier.status(sample.summary(state))
        if (self.live is not None or self.progress is not None) and now >= self._next_live:
            self._next_live = now + LIVE_INTERVAL_S
            sample = sample or self._probe()
            if self.progress is not None:
                self.progress.postfix(sample.summary(state).split(": ", 1)[1])
                self.progress.update(int(sample.counters.get("read", 0)))
            elif self.live is not None:
                self.live.show(state, sample)

    def stopping(self, reason: str = "stopping") -> None:
        """STOPPING=1 as soon as shutdown begins (systemd then waits TimeoutStopSec, no watchdog)."""
        if self.notifier is not None and not self._stopping_sent:
            self._stopping_sent = True
            self.notifier.stopping(reason)

    def close(self) -> None:
        self.stopping()
        if self.live is not None:
            self.live.close()
        if self.progress is not None:
            if self._probe is not None:  # the count at the end, not at the last tick
                self.progress.update(int(self._probe().counters.get("read", 0)))
            self.progress.close()
            self.progress = None
        if self.server is not None:
            self.server.close()
            self.server = None
        if self.foxglove is not None:
            self.foxglove.close()
            self.foxglove = None
        if self.notifier is not None:
            self.notifier.close()


def operations_for(cameras: Sequence[str], metrics: str, *, allow_public: bool, notify: bool, live_status: bool,
                   stall_s: float, foxglove: str = "") -> Operations:
    """From launch settings: metrics 'HOST:PORT' or '' (off), systemd if asked and present, live line on a tty."""
    from perception.ops.listen import parse_listen

    return Operations(
        cameras,
        metrics=parse_listen(metrics, "--metrics") if metrics else None,
        allow_public=allow_public,
        notifier=SystemdNotifier.from_environment() if notify else None,
        live=LiveStatus.for_stream(sys.stderr) if live_status else None,
        stall_s=stall_s,
        replay_progress=live_status,
        foxglove=parse_listen(foxglove, "--foxglove") if foxglove else None,
    )
