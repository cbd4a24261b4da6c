"""How much OpenCV, FFmpeg and ONNX Runtime print of their own (they write to stderr from C++, not through Python).

At our default level nothing: every failure they report also reaches the user as our own
one-line error ("video file x.mp4 cannot be decoded: ..."), and their lines ("moov atom not
found", "[ WARN:0@0.6] global cap.cpp ...") only bury it. `perception --log-level debug` shows
their warnings and errors again for diagnosis. Both libraries read their level from the
environment when they start, so it is set before cv2 is imported, and on cv2 itself if it is;
ONNX Runtime takes it per session (onnxruntime_severity).
"""

from __future__ import annotations

import os
import sys

# our --log-level -> (OpenCV's OPENCV_LOG_LEVEL, FFmpeg's av_log level as OPENCV_FFMPEG_LOGLEVEL)
_QUIET = ("SILENT", -8)
LEVELS = {"debug": ("WARNING", 24), "info": _QUIET, "warning": _QUIET, "error": _QUIET}


# ONNX Runtime's own severity (0 verbose .. 4 fatal) for the sessions opened after this is set: a run
# error reaches the user as our one line (EngineFailed), so ORT's copy of it is shown only for debug
ORT_SEVERITY = {"debug": 2, "info": 4, "warning": 4, "error": 4}
_current = {"onnxruntime": 3}  # a library user who never set a level keeps ORT's errors


def onnxruntime_severity() -> int:
    return _current["onnxruntime"]


def set_native_log_level(level: str) -> None:
    _current["onnxruntime"] = ORT_SEVERITY[level]
    opencv, ffmpeg = LEVELS[level]
    os.environ["OPENCV_LOG_LEVEL"] = opencv
    os.environ["OPENCV_FFMPEG_LOGLEVEL"] = str(ffmpeg)
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:  # already loaded (e.g. in a test process): its logger takes the level at once
        cv2.utils.logging.setLogLevel(getattr(cv2.utils.logging, f"LOG_LEVEL_{opencv}"))
