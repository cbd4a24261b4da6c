"""The sub-pixel semantic branch: draws what bilinear upsampling of stride-2 logits cannot, starts
as the network it joins, survives ONNX export and loads back from it for fine-tuning."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:  # the annotations name torch's types; at run time a missing torch skips the module
    import torch
else:
    torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from perception.cli import main

TINY = ((8, 8, 8, 8), 8, 8)


def _stripes() -> tuple[torch.Tensor, torch.Tensor]:
    """One-pixel stripes of two classes side by side (a fence, a far crowd's legs), bright and dark.

    Bilinear x2 upsampling of stride-2 logits cannot draw them: each output pixel mixes two cells
    3:1, so over a run of cells the even and the odd columns sum to the same logit difference and
    cannot take opposite signs throughout.
    """
    image = torch.full((1, 3, 32, 64), 0.2)
    target = torch.zeros(1, 32, 64, dtype=torch.long)
    image[:, :, 8:24, 16:48:2] = 0.9
    target[:, 8:24, 16:48:2] = 1
    return image, target


def _fit_semantics(subpixel: int) -> float:
    """Fit the semantic output to the stripes; return the bright stripes' IoU."""
    from perception.train.model import Arch, TinyPanoptic

    torch.manual_seed(0)
    model = TinyPanoptic(2, Arch(*TINY, subpixel=subpixel))
    image, target = _stripes()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(120):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(image)[0], target)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        predicted = model(image)[0].argmax(1)
    line, hit = target == 1, predicted == 1
    return float((line & hit).sum()) / float((line | hit).sum())


def test_the_branch_draws_one_pixel_stripes_that_bilinear_upsampling_cannot() -> None:
    without, with_branch = _fit_semantics(0), _fit_semantics(4)
    assert with_branch > 0.9, with_branch
    assert without < 0.6, without


@pytest.mark.parametrize("extra", [{"refine": 4}, {"subpixel": 4}])
def test_a_zero_initialised_branch_starts_as_the_network_it_joins(extra: dict[str, int]) -> None:
    from perception.train.model import Arch, TinyPanoptic

    torch.manual_seed(0)
    plain = TinyPanoptic(8, Arch(*TINY)).eval()
    grown = TinyPanoptic(8, dataclasses.replace(Arch(*TINY), **extra)).eval()  # type: ignore[arg-type]  # int fields only
    grown.load_state_dict(plain.state_dict(), strict=False)
    image = torch.rand(1, 3, 32, 64)
    with torch.no_grad():
        for a, b in zip(plain(image), grown(image), strict=True):
            assert torch.equal(a, b)


def test_an_exported_branch_loads_back_from_onnx(tmp_path: Path) -> None:
    """Fine-tuning a shipped model starts from its ONNX; the branch's weights must come back too."""
    from perception.train.export import check_export, export_onnx
    from perception.train.model import Arch, TinyPanoptic
    from perception.train.onnx_weights import state_from_onnx

    torch.manual_seed(0)
    model = TinyPanoptic(8, Arch(*TINY, subpixel=4)).eval()
    torch.nn.init.normal_(model.subpixel.draw.weight, std=0.5)  # not the zero start: a branch that draws
    for module in model.modules():  # trained statistics, as a real export has (fresh ones fold to nothing)
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.normal_(module.bias, std=0.1)
            torch.nn.init.normal_(module.running_mean, std=0.1)
    path = export_onnx(model, tmp_path / "model.onnx")
    assert check_export(model, path).argmax_agreement > 0.999
    loaded = TinyPanoptic(8, Arch(*TINY, subpixel=4))
    missing = loaded.load_state_dict(state_from_onnx(path, loaded), strict=False).missing_keys
    assert not [k for k in missing if k.startswith("subpixel.")], missing
    loaded.eval()
    image = torch.rand(1, 3, 32, 64)
    with torch.no_grad():
        for a, b in zip(model(image), loaded(image), strict=True):
            np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-4)


def test_train_only_the_branch_and_resume_keeps_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    small = ["--widths", "8,8,8,8", "--decoder", "8", "--fine", "8", "--scenes", "2", "--batch", "2", "--threads",
             "1", "--log-every-s", "0"]
    base, tuned = tmp_path / "base", tmp_path / "tuned"
    assert main(["train", "--out", str(base), *small, "--iterations", "1"]) == 0
    capsys.readouterr()
    assert main(["train", "--out", str(tuned), *small, "--iterations", "2", "--subpixel", "4", "--train-only",
                 "subpixel", "--init-from", str(base / "model.onnx")]) == 0
    out = capsys.readouterr().out
    assert "new layers: subpixel" in out and "sub-pixel semantic branch 4 ch, training only subpixel" in out
    after = torch.load(tuned / "checkpoint.pt", weights_only=True)
    assert after["arch"]["subpixel"] == 4
    assert not torch.equal(after["model"]["subpixel.draw.weight"], torch.zeros(4, 8, 2, 2))
    assert main(["train", "--out", str(tuned), "--threads", "1", "--iterations", "3", "--log-every-s", "0",
                 "--resume"]) == 0
    assert "sub-pixel semantic branch 4 ch" in capsys.readouterr().out
    assert main(["train", "--out", str(tmp_path / "bad"), *small, "--iterations", "1", "--subpixel", "-1"]) == 2
    assert "--subpixel" in capsys.readouterr().err
    heads_at_stride_4 = ["train", "--out", str(tmp_path / "s4"), "--widths", "8,8,8,8", "--decoder", "8",
                         "--iterations", "1", "--subpixel", "4"]
    assert main(heads_at_stride_4) == 2
    assert "--fine" in capsys.readouterr().err
