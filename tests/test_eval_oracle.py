"""The ground-truth path: perfect head outputs derived from ground truth, decoded by the node's
Panoptic-DeepLab decoder, must score PQ >= 99. If this fails, the decoder, the ground truth
or the PQ code is wrong, whatever any model does.

The decoder runs without its area filters and with a small NMS window: the ground truth keeps
stuff of any size and things from 20 px, which the shipped card's filters drop on purpose
(a second test measures what that costs, the ceiling of the shipped settings)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from perception.evaluation.runner import accumulator_for, add_frame
from perception.models.card import load_card
from perception.models.decoders.panoptic_deeplab import PanopticDeepLabDecoder
from perception.models.preprocess import Preprocessor
from perception.synth import Drive, SceneTruth

CARD = Path(__file__).resolve().parent.parent / "engines" / "panoptic-tiny.toml"
SIGMA = 4.0


def oracle_heads(truth: SceneTruth) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Semantic argmax, centre heatmap and offsets a perfect network would output."""
    semantic = truth.semantic().astype(np.int32)
    semantic[semantic == 255] = 0  # void: any class, PQ leaves void pixels out
    instances = truth.instances()
    h, w = semantic.shape
    heat = np.zeros((h, w), np.float32)
    offsets = np.zeros((2, h, w), np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for k in range(1, int(instances.max(initial=0)) + 1):
        mask = instances == k
        ys, xs = np.nonzero(mask)
        cy, cx = round(float(ys.mean())), round(float(xs.mean()))
        heat = np.maximum(heat, np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * SIGMA**2)))
        offsets[0][mask] = cy - ys
        offsets[1][mask] = cx - xs
    return semantic, heat, offsets


def oracle_report(params: dict[str, float]) -> dict[str, dict[str, float]]:
    card = load_card(CARD)
    card = dataclasses.replace(card, decoder_params={**card.decoder_params, **params})
    decoder = PanopticDeepLabDecoder(card)
    pre = Preprocessor(card.input)
    acc = accumulator_for(card)
    for seed in (31, 32):
        for frame in Drive(seed, frames=6, fps=2.0):
            semantic, heat, offsets = oracle_heads(frame.truth)
            geometry = pre.geometry(*frame.truth.id_map.shape)
            sure = np.ones(semantic.shape, np.float32)  # perfect heads are sure of every pixel's class
            add_frame(acc, frame.truth, decoder.decode_heads(semantic, heat, offsets, geometry, sure))
    return acc.report().to_dict()


def test_oracle_heads_through_the_decoder_score_pq_99() -> None:
    summary = oracle_report({"min_stuff_area": 1, "min_thing_area": 1, "nms_kernel": 3})
    assert summary["things"]["classes"] == 3
    assert summary["all"]["pq"] >= 99.0, summary
    assert summary["things"]["pq"] >= 98.0, summary


def test_shipped_decoder_settings_keep_a_high_ceiling() -> None:
    """With the shipped area filters, confidence rules and NMS window, perfect heads still score above 95."""
    summary = oracle_report({})
    assert summary["all"]["pq"] > 95.0, summary
