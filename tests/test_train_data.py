"""Training data on the device: the scene store and the Panoptic-DeepLab targets built from it."""

from __future__ import annotations

from dataclasses import astuple

import numpy as np
import pytest

from perception.train.staging import Scenes

torch = pytest.importorskip("torch")

from perception.train.data import CENTER_CHUNK, CENTER_SIGMA, MIN_CENTER_SIGMA, SceneStore, make_batch  # noqa: E402


def _scene(instances: np.ndarray, thing_class: int = 5) -> Scenes:
    semantic = np.where(instances > 0, thing_class, 0).astype(np.uint8)
    rgb = np.zeros((*instances.shape, 3), np.uint8)
    return Scenes(rgb[None], semantic[None], instances[None].astype(np.uint16))


def test_store_appends_in_arrival_order_up_to_capacity() -> None:
    store = SceneStore.allocate(2, 4, 6, torch.device("cpu"))
    a = np.zeros((4, 6), np.uint16)
    a[1, 1] = 3
    store.add(_scene(a))
    b = np.zeros((4, 6), np.uint16)
    b[2, 2] = 7
    both = Scenes(*(np.concatenate(pair) for pair in zip(astuple(_scene(b)), astuple(_scene(a)), strict=True)))
    store.add(both)  # only one of the two fits
    assert store.filled == 2
    assert int(store.instances[1, 2, 2]) == 7 and store.max_instance == 7
    store.add(_scene(a))
    assert store.filled == 2


def test_targets_for_more_instances_than_one_centre_chunk() -> None:
    instances = np.zeros((48, 96), np.uint16)
    count = CENTER_CHUNK + 5  # the heatmap is built chunk by chunk: more instances than one chunk
    for k in range(count):
        y, x = 4 + 20 * (k % 2), 2 + 4 * k
        instances[y:y + 3, x:x + 3] = k + 1
    store = SceneStore.allocate(1, 48, 96, torch.device("cpu"))
    store.add(_scene(instances))
    batch = make_batch(store, torch.tensor([0]), torch.tensor([False]))
    heat = batch.center[0, 0].numpy()
    ys, xs = np.mgrid[0:48, 0:96]
    expected = np.zeros((48, 96))
    for k in range(count):
        cy, cx = 5 + 20 * (k % 2), 3 + 4 * k  # centroid of the 3x3 square
        expected = np.maximum(expected, np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * CENTER_SIGMA**2)))
        assert heat[cy, cx] == pytest.approx(1.0)
        # offsets point from each pixel of the square to its centroid
        assert batch.offsets[0, 0, cy - 1, cx + 1].item() == pytest.approx(1.0)
        assert batch.offsets[0, 1, cy - 1, cx + 1].item() == pytest.approx(-1.0)
    np.testing.assert_allclose(heat, expected, atol=1e-6)
    # every thing here is small: semantic and offset losses weigh its pixels up
    assert batch.pixel_weight[0, 5, 3].item() > 1.0 and batch.pixel_weight[0, 40, 40].item() == 1.0


def test_centre_gaussians_sized_by_instance_keep_close_small_things_apart() -> None:
    instances = np.zeros((64, 96), np.uint16)
    instances[10:15, 10:16] = 1  # 30 px
    instances[10:15, 17:23] = 2  # 30 px, centre 7 px to the right
    instances[30:60, 40:80] = 3  # 1200 px
    store = SceneStore.allocate(1, 64, 96, torch.device("cpu"))
    store.add(_scene(instances))
    fixed = make_batch(store, torch.tensor([0]), torch.tensor([False])).center[0, 0].numpy()
    sized = make_batch(store, torch.tensor([0]), torch.tensor([False]), sigma_per_side=0.2).center[0, 0].numpy()
    cy, left, right, between = 12, 12, 20, 16  # rounded centroids: rows 12; columns 12.5 -> 12, 19.5 -> 20
    # one wide Gaussian each: the gap between the two small cars stays hot (a smeared pair)
    assert fixed[cy, between] > 0.6
    # sigma = 0.2 * sqrt(30) ~ 1.1 px: two separate peaks
    assert sized[cy, left] == pytest.approx(1.0) and sized[cy, right] == pytest.approx(1.0)
    assert sized[cy, between] < 0.05
    sigma_small = max(MIN_CENTER_SIGMA, 0.2 * np.sqrt(30))
    assert sized[cy, left + 1] == pytest.approx(np.exp(-1 / (2 * sigma_small**2)), rel=1e-5)
    # a large thing keeps the full Gaussian (sigma capped at CENTER_SIGMA)
    # centre (44.5, 59.5) rounds to (44, 60)
    assert sized[44, 60 + 3] == pytest.approx(np.exp(-9 / (2 * CENTER_SIGMA**2)), rel=1e-5)
    np.testing.assert_allclose(sized[30:, 30:], fixed[30:, 30:], atol=1e-5)  # the small cars are far


def test_flip_mirrors_image_labels_and_offsets() -> None:
    instances = np.zeros((8, 16), np.uint16)
    instances[2:5, 1:4] = 1
    store = SceneStore.allocate(1, 8, 16, torch.device("cpu"))
    store.add(_scene(instances))
    plain = make_batch(store, torch.tensor([0]), torch.tensor([False]))
    flipped = make_batch(store, torch.tensor([0]), torch.tensor([True]))
    assert torch.equal(flipped.semantic, plain.semantic.flip(-1))
    assert torch.equal(flipped.center, plain.center.flip(-1))
    # dy unchanged, dx mirrored
    assert torch.allclose(flipped.offsets[:, 0], plain.offsets[:, 0].flip(-1))
    assert torch.allclose(flipped.offsets[:, 1], -plain.offsets[:, 1].flip(-1))
