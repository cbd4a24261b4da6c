"""Network and GStreamer sources against real servers on loopback / the real OpenCV build."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest

from perception.capture.errors import SourceError, SourceLost
from perception.capture.opencv_sources import _gstreamer_enabled
from perception.capture.source import open_source
from tests.node_helpers import video_file


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, http.server.ThreadingHTTPServer]]:
    video_file(tmp_path / "clip.avi", 20)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.shutdown()
        server.server_close()


def test_http_stream_is_read_as_a_live_source(http_server: tuple[str, object]) -> None:
    base, _ = http_server
    source = open_source(f"{base}/clip.avi")
    assert source.live
    source.open()
    frames = []
    lost = False
    while not lost:
        try:
            item = source.read()
        except SourceLost:  # a live stream that ends is a lost source, to be reconnected
            lost = True
        else:
            assert item is not None
            frames.append(item)
    source.close()
    assert len(frames) == 20
    assert frames[0][0].shape == (96, 128, 3)


def test_unreachable_stream_is_a_clear_error(http_server: tuple[str, object]) -> None:
    base, _ = http_server
    with pytest.raises(SourceError, match="cannot be opened"):
        open_source(f"{base}/missing.avi").open()


@pytest.mark.skipif(_gstreamer_enabled(), reason="this OpenCV has GStreamer; the refusal path does not apply")
def test_gstreamer_without_support_says_what_to_install() -> None:
    assert "GStreamer" in cv2.getBuildInformation()
    with pytest.raises(SourceError, match="no GStreamer support"):
        open_source("gst:videotestsrc ! videoconvert ! appsink").open()
