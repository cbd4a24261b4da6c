"""The "none" tracker: instance ids stay 0 (tracking off)."""

from __future__ import annotations

from perception.core.segmentation import Segmentation


class Untracked:
    def __init__(self, **_settings: object) -> None:
        """Takes the [tracking] settings like every tracker, and needs none of them."""

    def update(self, segmentation: Segmentation) -> Segmentation:
        return segmentation
