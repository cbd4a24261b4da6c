"""Synthetic street drives with exact panoptic ground truth (numpy + OpenCV only).

Imports nothing from the node's transport stack, so training machines without ZeroMQ,
msgpack or MCAP can use it.
"""

from perception.synth.classes import CLASS_NAMES, NUM_CLASSES, THING_CLASSES
from perception.synth.scene import (
    GENERATOR_VERSION,
    Drive,
    SceneTruth,
    SynthFrame,
    TruthSegment,
    random_scene,
)

__all__ = ["CLASS_NAMES", "GENERATOR_VERSION", "NUM_CLASSES", "THING_CLASSES", "Drive", "SceneTruth",
           "SynthFrame", "TruthSegment", "random_scene"]
