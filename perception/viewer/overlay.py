"""A frame message -> what the page draws over the picture: an RGBA mask layer (PNG) and labels.

Things (instances) are filled half-transparent and outlined in a colour of their track id, so
one car keeps its colour from frame to frame; stuff (road, sky) is left clear so the picture
stays readable. Labels are the class name, the track id and, where the tracker measured it,
the speed in id-map pixels per second.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from perception.wire.messages import FrameMessage

FILL_ALPHA = 120
# bright, mutually distinct colours (RGB); none is close to another or to grey
PALETTE = np.array([
    (0, 200, 255), (255, 220, 0), (0, 255, 120), (255, 0, 200), (120, 120, 255), (255, 140, 0),
    (0, 255, 255), (200, 255, 0), (160, 0, 255), (0, 160, 80), (255, 90, 120), (90, 200, 200),
], np.uint8)


def colour_of(instance_id: int, segment_id: int) -> tuple[int, int, int]:
    """By track id when tracked (stable across frames), else by segment id."""
    key = instance_id if instance_id > 0 else segment_id
    r, g, b = PALETTE[key % len(PALETTE)]
    return int(r), int(g), int(b)


def overlay_rgba(msg: FrameMessage) -> np.ndarray:
    """(H, W, 4) uint8 RGBA: thing masks filled, their outlines opaque, everything else transparent."""
    id_map = np.asarray(msg.id_map)
    s = msg.segments
    lut = np.zeros((int(id_map.max(initial=0)) + 1, 4), np.uint8)
    for i in np.flatnonzero(s.is_thing):
        seg_id = int(s.ids[i])
        if seg_id < len(lut):
            lut[seg_id, :3] = colour_of(int(s.instance_ids[i]), seg_id)
            lut[seg_id, 3] = FILL_ALPHA
    rgba = lut[id_map]
    edge = np.zeros(id_map.shape, bool)  # a pixel with a 4-neighbour of another segment
    across = id_map[:, 1:] != id_map[:, :-1]
    edge[:, 1:] |= across
    edge[:, :-1] |= across
    down = id_map[1:, :] != id_map[:-1, :]
    edge[1:, :] |= down
    edge[:-1, :] |= down
    outline = edge & (rgba[..., 3] > 0)
    rgba[outline, 3] = 255
    return rgba


def overlay_png(msg: FrameMessage) -> bytes:
    rgba = overlay_rgba(msg)
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    if not ok:
        raise ValueError("overlay could not be PNG-encoded")
    return data.tobytes()


def labels(msg: FrameMessage) -> list[dict[str, Any]]:
    """One label per thing: anchor (bbox top-left, id-map pixels), text and colour."""
    s = msg.segments
    tracks = getattr(s, "tracks", None)  # track columns, when the node's tracker sends them
    out = []
    for i in np.flatnonzero(s.is_thing):
        instance = int(s.instance_ids[i])
        text = msg.class_name(int(s.class_ids[i])) + (f" #{instance}" if instance else "")
        if tracks is not None and bool(tracks.velocity_valid[i]):
            vx, vy = (float(v) for v in tracks.velocity[i])
            text += f" {np.hypot(vx, vy):.0f} px/s"
        x0, y0, x1, y1 = (int(v) for v in s.bboxes[i])
        out.append({"x": x0, "y": y0, "w": x1 - x0, "h": y1 - y0, "text": text,
                    "colour": "rgb({},{},{})".format(*colour_of(instance, int(s.ids[i])))})
    return out
