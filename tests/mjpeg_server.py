"""A loopback MJPEG camera (multipart/x-mixed-replace over HTTP, as IP cameras serve it) for fault tests.

Frame N is two flat grey halves whose levels spell N in base 25 (`picture`), so a reader can
tell each frame it got (and spot a black or repeated one) from the picture alone. The frame
counter runs across connections, like a camera that keeps capturing while its stream is down.
`drop_after(n)` kills the current connection after frame n; `down` makes the server answer 503
until it is cleared (a restart).
The server runs on a daemon thread and stops at the end of the `with` block.
"""

from __future__ import annotations

import http.server
import socket
import threading
import time
from types import TracebackType

import cv2
import numpy as np

WIDTH, HEIGHT = 64, 48
BOUNDARY = b"frame"


STEP, DIGITS = 8, 25  # levels 40, 48, ... 232: far enough apart that JPEG never confuses two


def picture(index: int) -> np.ndarray:
    image = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    image[:, :WIDTH // 2] = 40 + STEP * (index % DIGITS)
    image[:, WIDTH // 2:] = 40 + STEP * (index // DIGITS % DIGITS)
    return image


def frame_of(image: np.ndarray) -> int | None:
    """The frame index (of the first 625) a decoded picture shows; None for anything else (e.g. black)."""
    digits = []
    for half in (image[4:-4, 4:WIDTH // 2 - 4], image[4:-4, WIDTH // 2 + 4:-4]):
        digit = (float(half.mean()) - 40) / STEP
        if not (-0.3 < digit < DIGITS - 0.7) or abs(digit - round(digit)) > 0.3:
            return None
        digits.append(round(digit))
    return digits[0] + DIGITS * digits[1]


class MjpegCamera:
    def __init__(self, fps: float = 50.0) -> None:
        self.fps = fps
        self.served = 0  # frames sent, over all connections
        self.connections = 0
        self.refused = 0  # requests answered 503 while down
        self.down = threading.Event()
        self._drop_at: int | None = None
        self._lock = threading.Lock()
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                camera._serve(self)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/stream.mjpg"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def drop_after(self, frames: int) -> None:
        """Kill the connection once `frames` frames have been served in all; then stay down."""
        self._drop_at = frames

    def _serve(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        if self.down.is_set():
            with self._lock:
                self.refused += 1
            handler.send_error(503, "camera restarting")
            return
        with self._lock:
            self.connections += 1
        handler.send_response(200)
        handler.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}")
        handler.end_headers()
        try:
            while not self.down.is_set():
                with self._lock:
                    index = self.served
                    if self._drop_at is not None and index >= self._drop_at:
                        self._drop_at = None
                        self.down.set()
                        break
                    self.served += 1
                jpeg = cv2.imencode(".jpg", picture(index), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
                handler.wfile.write(b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\n"
                                    + f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                handler.wfile.flush()
                time.sleep(1.0 / self.fps)
        except (BrokenPipeError, ConnectionResetError):
            return
        # a camera that dies: the TCP connection is reset, not closed politely
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        handler.connection.close()

    def __enter__(self) -> MjpegCamera:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.down.set()
        self._server.shutdown()
        self._server.server_close()
