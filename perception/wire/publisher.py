"""The node's side of the wire: one XPUB socket, for one camera or several, that never blocks the pipeline.

XPUB rather than PUB so the publisher sees subscriptions: a new subscriber to the metadata
topic gets the last metadata at once (class names, model) instead of waiting for a restart.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, NamedTuple

import zmq

from perception.core.frame import monotonic_ns
from perception.core.result import FrameResult
from perception.wire.codec import FrameEncoder, control_message, image_message, plain, status_body
from perception.wire.curve import ServerKeys
from perception.wire.endpoint import bind
from perception.wire.errors import LosslessTimeoutError, WireError
from perception.wire.limits import (
    HANDSHAKE_TIMEOUT_MS,
    MAX_INBOUND_MESSAGE_BYTES,
    MAX_TOPIC_BYTES,
    TYPICAL_FPS,
    TYPICAL_MESSAGE_BYTES,
    kernel_buffer_bytes,
)
from perception.wire.payload import Buffer
from perception.wire.schema import KINDS, Kind, check_camera, topic

Tap = Callable[[bytes, list[bytes]], None]

# Small on purpose: a slow subscriber loses frames (and sees the gap) instead of receiving stale ones.
DEFAULT_SNDHWM = 4
# Long enough for the last status/stats to leave on close, short enough never to hang shutdown.
CLOSE_LINGER_MS = 250


class PublishedFrame(NamedTuple):
    seq: int
    encode_ns: int  # CLOCK_MONOTONIC after the id map was compressed
    publish_ns: int  # CLOCK_MONOTONIC just before the send


def new_epoch() -> int:
    """Random nonzero uint64, new on every start, so subscribers can tell a restart from a gap."""
    epoch = 0
    while epoch == 0:
        epoch = secrets.randbits(64)
    return epoch


def drive_epoch(drive: str) -> int:
    """Nonzero uint64 from the drive's name (its source URIs): a deterministic replay of the same
    drive carries the same epoch on every run, so its recording is the same bytes."""
    epoch = int.from_bytes(hashlib.sha256(drive.encode()).digest()[:8], "big")
    return epoch or 1


class Publisher:
    """Publishes frames, metadata, status and stats of its cameras. Not thread-safe: one thread calls it.

    camera is one name or the node's camera names (the first is the default of every `camera=`
    argument). Sequence numbers are per camera and topic (frame, meta, status, stats of each
    camera count 0, 1, 2, ... within an epoch), so a subscriber to one camera's frames sees
    contiguous numbers and every gap is a lost frame.

    Delivery is per subscriber: when one subscriber's queue is full (SNDHWM) ZeroMQ drops the
    message for that subscriber only and does not tell us; that subscriber sees the gap. With
    nodrop=True the socket instead refuses a message that would overflow any subscriber, and the
    publisher counts it in `dropped` (exact, but one stalled subscriber then starves the others).
    With lossless_timeout_s set, nodrop sends block until every subscriber has room (lock-step
    regression runs); a send still blocked after the timeout raises LosslessTimeoutError.

    The kernel buffer under each connection (SO_SNDBUF) is bounded to ~0.1 s of the stream at
    `fps` with messages of `message_bytes`, so a slow subscriber's backlog stays in the counted
    SNDHWM queue. Inbound messages (subscriptions) longer than a topic are refused (ZMQ_MAXMSGSIZE).
    """

    def __init__(
        self,
        endpoint: str,
        camera: str | Sequence[str] = "cam0",
        *,
        compression: str = "zstd",
        sndhwm: int = DEFAULT_SNDHWM,
        allow_public: bool = False,
        tap: Tap | None = None,
        nodrop: bool = False,
        lossless_timeout_s: float | None = None,
        fps: float = TYPICAL_FPS,
        message_bytes: int = TYPICAL_MESSAGE_BYTES,
        curve: ServerKeys | None = None,
        epoch: int | None = None,
    ) -> None:
        """Bind now; a bad, public (without allow_public) or busy endpoint raises WireError.

        endpoint: tcp://HOST:PORT (PORT may be * for any free port; see self.endpoint),
        ipc://PATH or inproc://NAME. compression: zstd, lz4 or raw for the id map.
        tap: called after every send attempt with (topic, [topic, header, payload...]) as bytes,
        also for messages the socket refused, so a recording holds everything published.
        curve: serve only the clients of a CURVE key folder (perception.wire.curve); a non-loopback
        bind is then allowed without allow_public.
        epoch: a deterministic replay's (drive_epoch); None, as for every live node, draws a random one.
        """
        names = [camera] if isinstance(camera, str) else list(camera)
        self.cameras = tuple(check_camera(c) for c in names)
        if not self.cameras or len(set(self.cameras)) != len(self.cameras):
            raise WireError(f"publisher cameras {names} are empty or repeat a name", "give each camera its own name")
        self.camera = self.cameras[0]
        self._encoders = {c: FrameEncoder(c, compression) for c in self.cameras}
        if not 1 <= sndhwm <= 2**31 - 1:
            raise WireError(f"sndhwm={sndhwm} is not a usable high-water mark", "use a small positive number like 4")
        if lossless_timeout_s is not None and not lossless_timeout_s > 0:
            raise WireError(f"lossless_timeout_s={lossless_timeout_s} is not a timeout", "pass seconds > 0")
        self.compression = compression
        if epoch is not None and not 0 < epoch <= 2**64 - 1:
            raise WireError(f"epoch {epoch} is not a nonzero uint64", "use drive_epoch(), or None for a random one")
        self.epoch = new_epoch() if epoch is None else epoch
        self.dropped = 0  # messages the socket refused (nodrop mode); per-subscriber drops show as gaps
        self.sent = 0
        self.subscriptions: dict[Kind, int] = dict.fromkeys(KINDS, 0)  # subscribe messages ever seen
        self.open_subscriptions: dict[Kind, int] = dict.fromkeys(KINDS, 0)  # subscribed now (minus unsubscribes)
        self.tap: Tap | None = tap
        self._seq: dict[tuple[str, Kind], int] = {(c, k): 0 for c in self.cameras for k in KINDS}
        self._metadata: dict[str, dict[str, Any]] = {}
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.XPUB)
        self._socket.sndhwm = sndhwm
        self._socket.linger = CLOSE_LINGER_MS
        self._socket.sndbuf = kernel_buffer_bytes(message_bytes, fps)
        self._socket.maxmsgsize = MAX_INBOUND_MESSAGE_BYTES
        self._socket.handshake_ivl = HANDSHAKE_TIMEOUT_MS
        # Pass every subscribe and unsubscribe up, duplicates included, so each subscriber is
        # seen joining and leaving (a closed subscriber's subscriptions come back as unsubscribes).
        self._socket.setsockopt(zmq.XPUB_VERBOSER, 1)
        self.lossless_timeout_s = lossless_timeout_s
        self.lossless_timed_out = False
        if nodrop or lossless_timeout_s is not None:
            self._socket.setsockopt(zmq.XPUB_NODROP, 1)
        if lossless_timeout_s is not None:
            self._socket.sndtimeo = int(lossless_timeout_s * 1000)
        self._closed = False
        self._authenticator: Any = None
        try:
            if curve is not None:
                self._authenticator = curve.start_authenticator(self._context)
                curve.apply(self._socket)
            self.endpoint = bind(self._socket, endpoint, allow_public=allow_public or curve is not None)
        except (WireError, zmq.ZMQError) as exc:
            self._close_sockets(linger=0)
            if isinstance(exc, WireError):
                raise
            raise WireError(f"cannot set up the publisher on {endpoint} ({exc})", "check the endpoint") from exc

    # -- sending ---------------------------------------------------------------------------------

    def publish_frame(self, result: FrameResult) -> PublishedFrame:
        """Encode and send one frame without blocking; a message that cannot be queued is dropped."""
        if result.camera not in self._encoders:
            raise WireError(
                f"frame of camera {result.camera!r} sent to the publisher of {', '.join(self.cameras)}",
                "name every camera when creating the Publisher",
            )
        seq = self._next_seq(result.camera, Kind.FRAME)
        parts, encode_ns, publish_ns = self._encoders[result.camera].encode(result, epoch=self.epoch, seq=seq,
                                                                            clock=monotonic_ns)
        self._send(parts)
        return PublishedFrame(seq, encode_ns, publish_ns)

    def publish_image(self, frame_index: int, stamp_ns: int, width: int, height: int, data: bytes,
                      image_format: str = "jpeg", camera: str | None = None) -> None:
        """The input frame, compressed, for viewers (the `image` topic, opt-in on both sides)."""
        camera = self._camera(camera)
        seq = self._next_seq(camera, Kind.IMAGE)
        self._send(image_message(camera, epoch=self.epoch, seq=seq, publish_ns=monotonic_ns(),
                                 frame_index=frame_index, stamp_ns=stamp_ns, width=width, height=height,
                                 data=data, image_format=image_format))

    def publish_metadata(self, metadata: Mapping[str, Any], camera: str | None = None) -> None:
        """Model card, class names (`classes`: [{id, name, thing}]), input size, versions."""
        if not isinstance(metadata, Mapping):
            raise WireError(f"metadata must be a map, got {type(metadata).__name__}", "pass a dict")
        camera = self._camera(camera)
        self._metadata[camera] = plain(metadata)
        self._send_control(camera, Kind.META, {"metadata": self._metadata[camera]})

    def publish_status(self, state: str, counters: Mapping[str, Any], detail: str = "",
                       camera: str | None = None, errors: int = 0) -> None:
        """Heartbeat: the node calls this about once a second, also when nothing is detected.

        `frames` (frames published so far this epoch) lets a subscriber count losses at the tail;
        `errors` (an `error` status for failed frames) how many frames it stands for.
        """
        name = self._camera(camera)
        self._send_control(name, Kind.STATUS, {**status_body(state, counters, detail, errors),
                                               "frames": self._seq[name, Kind.FRAME]})

    def publish_stats(self, stats: Mapping[str, Any], camera: str | None = None) -> None:
        """Latency snapshot (perception.runtime.latency); an opaque msgpack-able map, see docs/protocol.md."""
        if not isinstance(stats, Mapping):
            raise WireError(f"stats must be a map, got {type(stats).__name__}", "pass a dict")
        self._send_control(self._camera(camera), Kind.STATS, {"stats": plain(stats)})

    def _camera(self, camera: str | None) -> str:
        if camera is None:
            return self.camera
        if camera not in self._encoders:
            raise WireError(f"camera {camera!r} is not one of this publisher's ({', '.join(self.cameras)})",
                            "name every camera when creating the Publisher")
        return camera

    def _send_control(self, camera: str, kind: Kind, body: Mapping[str, Any]) -> None:
        parts = control_message(
            kind, camera, epoch=self.epoch, seq=self._next_seq(camera, kind), publish_ns=monotonic_ns(), body=body
        )
        self._send(parts)

    def _next_seq(self, camera: str, kind: Kind) -> int:
        # Consumed even when the send is refused: the subscriber must see the hole.
        seq = self._seq[camera, kind]
        self._seq[camera, kind] = seq + 1
        return seq

    def _send(self, parts: list[Buffer]) -> None:
        self._check_open()
        # after one lossless timeout the run is over: the last status and stats must not wait again
        lossless = self.lossless_timeout_s is not None and not self.lossless_timed_out
        try:
            # copy=False hands big frames (the id map) to libzmq without a copy; pyzmq still copies
            # frames under zmq.COPY_THRESHOLD, where copying is cheaper than tracking.
            self._socket.send_multipart(parts, flags=0 if lossless else zmq.NOBLOCK, copy=False)
            self.sent += 1
        except zmq.Again:
            self.dropped += 1
            if lossless:
                self.lossless_timed_out = True
                raise LosslessTimeoutError(
                    f"lossless publishing: a message waited {self.lossless_timeout_s:g} s for the slowest of "
                    f"{self.open_subscriptions[Kind.FRAME]} frame subscriber(s) to make room",
                    "a subscriber stopped reading or left; restart the run, or raise --lossless-timeout",
                ) from None
        finally:
            # The recorder gets every message, also one the socket refused: a recording is complete
            # even when a stalled subscriber made the live stream lossy.
            if self.tap is not None:
                self.tap(bytes(parts[0]), [bytes(p) for p in parts])

    # -- subscriptions ---------------------------------------------------------------------------

    def service(self) -> None:
        """Read subscription messages; answer every new metadata subscription with the last metadata."""
        self._check_open()
        wants_metadata: set[str] = set()
        while True:
            try:
                event = self._socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            if not event or event[0] not in (0, 1):
                continue  # not a subscription message
            subscribed, prefix = event[0] == 1, event[1:]
            if len(prefix) > MAX_TOPIC_BYTES:  # cannot match a topic (MAXMSGSIZE normally stops it sooner)
                continue
            for kind in KINDS:
                # one subscription counts once per kind, however many cameras' topics it matches
                matched = [c for c in self.cameras if topic(c, kind).startswith(prefix)]
                if not matched:
                    continue
                if subscribed:
                    self.subscriptions[kind] += 1
                    self.open_subscriptions[kind] += 1
                    if kind is Kind.META:
                        wants_metadata.update(matched)
                else:
                    self.open_subscriptions[kind] = max(0, self.open_subscriptions[kind] - 1)
        for camera in self.cameras:
            if camera in wants_metadata and camera in self._metadata:
                self._send_control(camera, Kind.META, {"metadata": self._metadata[camera]})

    def wait_for_subscription(self, kind: Kind | str = Kind.FRAME, timeout_s: float = 5.0, count: int = 1) -> bool:
        """Service until `count` subscriptions that match `kind` were seen (slow joiners); False on timeout."""
        kind = Kind(getattr(kind, "value", kind))
        deadline = monotonic_ns() + int(timeout_s * 1e9)
        while True:
            self.service()
            if self.subscriptions[kind] >= count:
                return True
            remaining_ms = (deadline - monotonic_ns()) // 1_000_000
            if remaining_ms <= 0:
                return False
            self._socket.poll(min(remaining_ms, 50), zmq.POLLIN)

    # -- lifetime --------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise WireError(f"publisher on {self.endpoint} is closed", "create a new Publisher")

    def close(self) -> None:
        """Close with a short linger so the last messages still leave; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._close_sockets(linger=CLOSE_LINGER_MS)

    def _close_sockets(self, linger: int) -> None:
        self._socket.close(linger=linger)
        if self._authenticator is not None:
            self._authenticator.stop()
        self._context.term()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
