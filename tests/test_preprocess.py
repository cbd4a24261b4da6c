"""The preprocessor's planar fast path gives the tensor of the textbook formula, for every input spec."""

from __future__ import annotations

import numpy as np
import pytest

from perception.models.card import InputSpec
from perception.models.preprocess import Preprocessor


def textbook(spec: InputSpec, resized_bgr: np.ndarray) -> np.ndarray:
    """(x * scale - mean) / std per channel in the model's colour order, as separate numpy passes."""
    img = resized_bgr[..., ::-1] if spec.color == "RGB" else resized_bgr
    x = img.astype(np.float64) * spec.scale
    x = (x - np.asarray(spec.mean)) / np.asarray(spec.std)
    if spec.layout == "NCHW":
        x = x.transpose(2, 0, 1)
    return x[None].astype(np.dtype(spec.dtype))


SPECS = [
    InputSpec("image", 320, 192),
    InputSpec("image", 320, 192, color="BGR"),
    InputSpec("images", 64, 64, resize="letterbox"),
    InputSpec("image", 96, 64, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
    InputSpec("image", 96, 64, scale=1.0),
    InputSpec("image", 96, 64, dtype="float16", mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4)),
    InputSpec("image", 96, 64, layout="NHWC", mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4)),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.layout}-{s.color}-{s.dtype}-{s.resize}-{s.scale:g}-{s.std}")
@pytest.mark.parametrize("source", [(192, 320), (90, 160), (73, 131)])
def test_tensor_equals_the_formula_of_the_card(spec: InputSpec, source: tuple[int, int]) -> None:
    rng = np.random.default_rng(source[0])
    bgr = rng.integers(0, 256, (*source, 3), np.uint8)
    pre = Preprocessor(spec)
    tensor, geometry = pre(bgr)
    resized, same_geometry = pre.resize(bgr)
    assert geometry == same_geometry
    expected = textbook(spec, resized)
    assert tensor.shape == expected.shape and tensor.dtype == expected.dtype
    assert tensor.flags.c_contiguous
    tolerance = 2e-3 if spec.dtype == "float16" else 1e-5
    np.testing.assert_allclose(tensor.astype(np.float64), expected.astype(np.float64), rtol=tolerance,
                               atol=tolerance)


def test_each_call_returns_its_own_tensor() -> None:
    """The capture thread prepares frame N+1 while the engine still reads frame N's tensor."""
    pre = Preprocessor(InputSpec("image", 32, 32))
    first, _ = pre(np.zeros((32, 32, 3), np.uint8))
    second, _ = pre(np.full((32, 32, 3), 255, np.uint8))
    assert first.max() == 0.0 and second.min() == 1.0
