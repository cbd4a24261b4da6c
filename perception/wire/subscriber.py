"""Client for planning modules: typed messages, gap and restart detection, latest-only mode,
and a freshness budget: a frame older than max_age_ms is dropped and counted, never handed over.

with Subscriber("tcp://127.0.0.1:5560", "cam0", latest_only=True) as sub:
    for msg in sub.messages(timeout=2.0):
        if isinstance(msg, FrameMessage):
            cars = [o for o in msg.objects if o.class_name == "car"]
            mask = msg.mask(cars[0].id) if cars else None
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType

import zmq

from perception.core.frame import monotonic_ns
from perception.wire.codec import decode_message
from perception.wire.curve import ClientKeys, load_client_keys
from perception.wire.endpoint import parse_endpoint
from perception.wire.errors import WireError
from perception.wire.limits import DEFAULT_MAX_AGE_MS, MAX_MESSAGE_PART_BYTES, kernel_buffer_bytes
from perception.wire.messages import FrameMessage, Message, MetadataMessage, StatusMessage
from perception.wire.payload import IdMapDecoder
from perception.wire.schema import DEFAULT_ENDPOINT, DEFAULT_KINDS, KINDS, Kind, check_camera, kind_of, topic
from perception.wire.sequence import GapEvent, RestartEvent, SequenceTracker, Totals

DEFAULT_RCVHWM = 16


class Subscriber:
    """Receives one camera's topics. Not thread-safe: use it from one thread.

    Decoding errors (garbage, wrong schema version, truncated payload) are counted in
    totals.decode_errors and passed to on_error; the loop goes on unless raise_errors=True.
    Latency properties on messages compare CLOCK_MONOTONIC stamps: same host only.

    Freshness: a frame whose age exceeds max_age_ms (None: no budget) when it would be handed
    over is dropped and counted in totals.stale. On the node's host (same_host, by default: the
    endpoint is ipc://, inproc:// or a loopback tcp address) the age is local CLOCK_MONOTONIC minus
    the frame's publish_ns; elsewhere it is local wall clock minus stamp_ns (the capture time of a
    live camera; needs synchronized clocks, and a replay's recorded stamps are always old, so a
    remote reader of a replay passes max_age_ms=None).
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        camera: str = "cam0",
        *,
        latest_only: bool = False,
        topics: Iterable[str | Kind] = DEFAULT_KINDS,
        rcvhwm: int = DEFAULT_RCVHWM,
        max_age_ms: float | None = DEFAULT_MAX_AGE_MS,
        same_host: bool | None = None,
        rcvbuf: int | None = None,
        curve_keys: str | os.PathLike[str] | ClientKeys | None = None,
        eager: bool = True,
        raise_errors: bool = False,
        on_gap: Callable[[GapEvent], None] | None = None,
        on_restart: Callable[[RestartEvent], None] | None = None,
        on_error: Callable[[WireError], None] | None = None,
    ) -> None:
        self.camera = check_camera(camera)
        self.kinds = frozenset(kind_of(str(getattr(t, "value", t))) for t in topics)
        if not self.kinds:
            raise WireError("subscriber asks for no topics", f"pass some of {', '.join(k.value for k in KINDS)}")
        parsed = parse_endpoint(endpoint)
        if max_age_ms is not None and not max_age_ms > 0:
            raise WireError(f"max_age_ms={max_age_ms} is not a usable budget", "pass milliseconds > 0, or None")
        self.endpoint = endpoint
        self.max_age_ns = None if max_age_ms is None else int(max_age_ms * 1e6)
        self.same_host = parsed.is_loopback if same_host is None else same_host
        self.latest_only = latest_only
        self.eager = eager
        self.raise_errors = raise_errors
        self.on_gap, self.on_restart, self.on_error = on_gap, on_restart, on_error
        self.totals = Totals()
        self.metadata: MetadataMessage | None = None
        # CLOCK_MONOTONIC of the last message of any topic: the node heartbeats at ~1 Hz, so
        # several seconds of silence mean it is gone (see silence_s).
        self.last_receive_ns: int | None = None
        self._class_names: Mapping[int, str] = {}
        self._tracker = SequenceTracker()
        self._decoder = IdMapDecoder()
        self._pending: deque[Message] = deque()
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.rcvhwm = rcvhwm
        # bounded kernel buffer: a backlog waits in the counted RCVHWM queue, not unseen in TCP
        self._socket.rcvbuf = rcvbuf if rcvbuf is not None else kernel_buffer_bytes()
        self._socket.linger = 0
        # a hostile or broken publisher cannot make us buffer more than one legal message part
        self._socket.maxmsgsize = MAX_MESSAGE_PART_BYTES
        if curve_keys is not None:
            keys = curve_keys if isinstance(curve_keys, ClientKeys) else load_client_keys(curve_keys)
            keys.apply(self._socket)
        # Metadata is always subscribed: frames need it to name their classes.
        for kind in self.kinds | {Kind.META}:
            self._socket.subscribe(topic(self.camera, kind))
        try:
            self._socket.connect(endpoint)
        except zmq.ZMQError as exc:
            self.close()
            raise WireError(f"cannot connect to {endpoint} ({exc.strerror})", "check the endpoint") from exc
        self._closed = False

    # -- receiving -------------------------------------------------------------------------------

    def recv(self, timeout: float | None = None) -> Message | None:
        """Next message, or None when `timeout` seconds pass without one (None: wait forever)."""
        deadline = None if timeout is None else monotonic_ns() + int(timeout * 1e9)
        while True:
            while self._pending:
                msg = self._pending.popleft()
                if not isinstance(msg, FrameMessage):
                    return msg
                if not self._too_old(msg):  # checked again at hand-over: it may have waited here
                    self.totals.frames_received += 1
                    return msg
            wait_ms = None if deadline is None else max(0, (deadline - monotonic_ns()) // 1_000_000)
            if not self._socket.poll(wait_ms, zmq.POLLIN):
                return None
            self._read_available()
            if deadline is not None and monotonic_ns() >= deadline and not self._pending:
                return None

    def messages(self, timeout: float | None = None, count: int | None = None) -> Iterator[Message]:
        """Yield messages until `count` were yielded or `timeout` seconds pass with none."""
        yielded = 0
        while count is None or yielded < count:
            msg = self.recv(timeout)
            if msg is None:
                return
            yield msg
            yielded += 1

    def __iter__(self) -> Iterator[Message]:
        return self.messages()

    def run(self, callback: Callable[[Message], object], timeout: float | None = None, count: int | None = None) -> int:
        """Callback mode: call `callback` for each message; returns how many were delivered."""
        delivered = 0
        for msg in self.messages(timeout, count):
            callback(msg)
            delivered += 1
        return delivered

    def _read_available(self) -> None:
        """Read one message, or in latest_only mode everything queued, keeping only the newest frame."""
        batch: list[Message] = []
        newest_frame = -1  # index in batch of the newest frame
        while True:
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            msg = self._decode([f.buffer for f in frames], monotonic_ns())
            if msg is not None:
                if isinstance(msg, FrameMessage):
                    if newest_frame >= 0:
                        self.totals.superseded += 1
                    newest_frame = len(batch)
                batch.append(msg)
            if not self.latest_only:
                break
        # arrival order is kept (a `stopped` status never overtakes the last frame); older frames are skipped
        for i, msg in enumerate(batch):
            if isinstance(msg, FrameMessage):
                if i == newest_frame:
                    self._accept_frame(msg)
            else:
                self._pending.append(msg)

    def silence_s(self) -> float | None:
        """Seconds since the last message arrived (None before the first one)."""
        if self.last_receive_ns is None:
            return None
        return (monotonic_ns() - self.last_receive_ns) / 1e9

    def _decode(self, parts: list[memoryview], receive_ns: int) -> Message | None:
        self.last_receive_ns = receive_ns
        try:
            msg = decode_message(parts, receive_ns=receive_ns, class_names=self._class_names, decoder=self._decoder)
        except WireError as exc:
            self._failed(exc)
            return None
        self.totals.received += 1
        gap, restart = self._tracker.observe(msg.camera, msg.kind, msg.epoch, msg.seq)
        if restart is not None:
            self.totals.restarts += 1
            if self.on_restart:
                self.on_restart(restart)
        if gap is not None:
            self.totals.gaps += 1
            self.totals.missed[gap.kind] += gap.missed
            if self.on_gap:
                self.on_gap(gap)
        if gap is not None or restart is not None:
            msg = dataclasses.replace(msg, missed=gap.missed if gap else 0, restarted=restart is not None)
        if isinstance(msg, StatusMessage):
            self._tail_loss(msg)
        if isinstance(msg, MetadataMessage):
            self.metadata = msg
            self._class_names = msg.class_names
        if msg.kind not in self.kinds:
            return None
        if isinstance(msg, FrameMessage) and not self.latest_only:
            self._accept_frame(msg)
            return None
        return msg

    def _tail_loss(self, status: StatusMessage) -> None:
        """A status says how many frames were published: ones after our last that never came are lost."""
        published = status.header.get("frames")
        if not isinstance(published, int) or isinstance(published, bool):
            return  # a node of an older version
        gap = self._tracker.published(status.camera, Kind.FRAME, status.epoch, published)
        if gap is not None:
            self.totals.gaps += 1
            self.totals.missed[Kind.FRAME] += gap.missed
            if self.on_gap:
                self.on_gap(gap)

    def _accept_frame(self, msg: FrameMessage) -> None:
        if self._too_old(msg):
            return  # not decompressed: a backlog of stale frames is skipped at header cost
        if self.eager:
            try:
                _ = msg.id_map  # decode now so a truncated payload is reported here, not in user code
            except WireError as exc:
                self.totals.rejected += 1
                self._failed(exc)
                return
        self._pending.append(msg)

    def age_ns(self, msg: FrameMessage) -> int:
        """How old a frame is now, by the clock the freshness budget uses (see the class doc)."""
        if self.same_host:
            return monotonic_ns() - msg.publish_ns
        return time.time_ns() - msg.stamp_ns

    def _too_old(self, msg: FrameMessage) -> bool:
        if self.max_age_ns is None or self.age_ns(msg) <= self.max_age_ns:
            return False
        self.totals.stale += 1
        return True

    def _failed(self, exc: WireError) -> None:
        self.totals.decode_errors += 1
        if self.on_error:
            self.on_error(exc)
        if self.raise_errors:
            raise exc

    # -- lifetime --------------------------------------------------------------------------------

    def close(self) -> None:
        if getattr(self, "_closed", False):
            return
        self._closed = True
        self._socket.close(linger=0)
        self._context.term()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
