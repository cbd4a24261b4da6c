"""What the worker hands to the publisher and recorder for each processed frame."""

from __future__ import annotations

from dataclasses import dataclass, field

from perception.core.segmentation import Segmentation


@dataclass(frozen=True)
class FrameResult:
    """One processed frame. stamps: stage name -> CLOCK_MONOTONIC ns (see perception.core.frame.Stage)."""

    camera: str
    frame_index: int  # index of the frame in its source (gaps = frames dropped before inference)
    stamp_ns: int  # acquisition time in the source's clock
    width: int  # source resolution, the resolution of segmentation.id_map
    height: int
    segmentation: Segmentation
    stamps: dict[str, int] = field(default_factory=dict)
