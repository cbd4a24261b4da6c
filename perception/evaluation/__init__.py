"""Panoptic quality (PQ/SQ/RQ per COCO panopticapi rules) and semantic mIoU, and the eval runner."""

from perception.evaluation.pq import ClassStats, PanopticAccumulator, PanopticReport

__all__ = ["ClassStats", "PanopticAccumulator", "PanopticReport"]
