"""What the wire accepts and how much it buffers: every bound a hostile or slow peer could push on.

docs/protocol.md ("Limits") documents these numbers; a reader in another language should use
the same ones.
"""

from __future__ import annotations

from typing import Any

# A subscriber's freshness budget: older frames are worse than none for a planner (~15 frames at 30 fps).
DEFAULT_MAX_AGE_MS = 500.0

# Largest id map a subscriber accepts (pixels, any dtype): 8192 x 8192, i.e. at most 256 MiB
# (uint32) is ever allocated for one message, decided from the header before any decompression.
MAX_ID_MAP_SIDE = 8192
MAX_ID_MAP_PIXELS = MAX_ID_MAP_SIDE * MAX_ID_MAP_SIDE

# A header is a few KiB (segments table of a busy street scene: ~40 KiB); 16 MiB is generous.
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_STR_BYTES = 1024 * 1024  # model card text, status detail
MAX_ARRAY_ITEMS = 1 << 20  # segments per frame
MAX_MAP_ITEMS = 1 << 16  # classes, stamps, metadata keys
MAX_SEGMENTS = MAX_ARRAY_ITEMS

# Largest message part a subscriber's socket takes in (ZMQ_MAXMSGSIZE): the biggest legal id map
# uncompressed, plus room for a compressor's framing of incompressible data.
MAX_MESSAGE_PART_BYTES = MAX_ID_MAP_PIXELS * 4 + 1024 * 1024

# Class ids are int32 on the wire; a decimal key longer than this is not a class id (and Python's
# int() refuses > 4300 digits with a ValueError, which no reader should ever meet).
MAX_CLASS_ID_DIGITS = 11

# What the node's XPUB socket accepts from a subscriber: subscribe/unsubscribe messages of 1 flag
# byte + a topic prefix, and the handshake's commands (a CURVE INITIATE is ~260 bytes plus its
# metadata). A longer inbound frame drops that peer's connection in libzmq before it is buffered.
MAX_TOPIC_BYTES = 128
MAX_INBOUND_MESSAGE_BYTES = 4096
# A connection that has not finished the ZeroMQ handshake by then is closed (libzmq default: 30 s).
HANDSHAKE_TIMEOUT_MS = 5_000

# Kernel socket buffers: hold about this much of the stream (or one message, if larger), so a
# slow reader's backlog sits in ZeroMQ's counted queues where it is dropped and seen as a gap,
# not in TCP buffers where it grows old unseen.
KERNEL_BUFFER_S = 0.1
MIN_KERNEL_BUFFER_BYTES = 16 * 1024
MAX_KERNEL_BUFFER_BYTES = 8 * 1024 * 1024
# A compressed VGA id map with its header is 5-30 KB; 64 KiB covers HD scenes with many segments.
TYPICAL_MESSAGE_BYTES = 64 * 1024
TYPICAL_FPS = 30.0


def kernel_buffer_bytes(message_bytes: int = TYPICAL_MESSAGE_BYTES, fps: float = TYPICAL_FPS) -> int:
    """SO_SNDBUF / SO_RCVBUF for a stream of `message_bytes` messages at `fps`: ~0.1 s of it."""
    fps = fps if fps > 0 else TYPICAL_FPS
    wanted = max(message_bytes, int(message_bytes * fps * KERNEL_BUFFER_S))
    return max(MIN_KERNEL_BUFFER_BYTES, min(MAX_KERNEL_BUFFER_BYTES, wanted))


def unpack_limits(nbytes: int) -> dict[str, Any]:
    """msgpack.unpackb keyword limits for a header of `nbytes` (never more than the message holds)."""
    return {
        "max_str_len": min(nbytes, MAX_STR_BYTES),
        "max_bin_len": min(nbytes, MAX_STR_BYTES),
        "max_array_len": min(nbytes, MAX_ARRAY_ITEMS),
        "max_map_len": min(nbytes // 2, MAX_MAP_ITEMS),
        "max_ext_len": 0,
    }
