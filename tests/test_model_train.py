"""Training end to end on a tiny budget: progress, checkpoint, resume, ONNX export checked with ORT."""

from __future__ import annotations

import argparse
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
from perception.runtime.pipeline import Pipeline, PipelineSpec


def test_train_resume_and_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    common = ["train", "--out", str(out), "--scenes", "4", "--batch", "2", "--threads", "1", "--log-every-s", "0"]
    assert main([*common, "--iterations", "2"]) == 0
    first = capsys.readouterr().out
    assert "it 1 |" in first and "eta" in first and "semantic" in first
    assert "argmax agreement 100.000%" in first
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["iteration"] == 2
    assert main([*common, "--iterations", "3", "--resume"]) == 0
    second = capsys.readouterr().out
    assert "resumed from" in second and "iteration 2" in second
    assert torch.load(out / "checkpoint.pt", weights_only=True)["iteration"] == 3
    # the export runs in the node's own pipeline with the shipped card's contract
    card = tmp_path / "card.toml"
    shipped = (Path(__file__).resolve().parent.parent / "engines" / "panoptic-tiny.toml").read_text()
    card.write_text(shipped.replace('onnx = "panoptic-tiny.onnx"', f'onnx = "{out / "model.onnx"}"'))
    with Pipeline.open(PipelineSpec(card)) as pipeline:
        seg = pipeline.process(np.zeros((192, 320, 3), np.uint8))
    assert seg.id_map.shape == (192, 320)


def test_same_seed_same_weights(tmp_path: Path) -> None:
    from perception.train.cli import add_arguments, run

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    weights = []
    for name in ("a", "b"):
        args = parser.parse_args(["--out", str(tmp_path / name), "--scenes", "2", "--batch", "2", "--threads", "1",
                                  "--iterations", "2", "--log-every-s", "0"])
        assert run(args) == 0
        weights.append(torch.load(tmp_path / name / "checkpoint.pt", weights_only=True)["model"])
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key


def test_training_without_a_budget_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--out", str(tmp_path / "x")]) == 2
    assert "budget" in capsys.readouterr().err


SMALL = ["--widths", "8,8,8,8", "--decoder", "8", "--scenes", "2", "--batch", "2", "--threads", "1",
         "--iterations", "1", "--log-every-s", "0"]


def test_fine_tune_adds_a_refinement_and_resume_keeps_the_layout(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    base, refined = tmp_path / "base", tmp_path / "refined"
    assert main(["train", "--out", str(base), *SMALL, "--fine", "8"]) == 0
    capsys.readouterr()
    assert main(["train", "--out", str(refined), *SMALL, "--fine", "8", "--refine", "4",
                 "--init-from", str(base / "checkpoint.pt")]) == 0
    out = capsys.readouterr().out
    assert "new layers: refine_features, refine_head, refine_image" in out
    state = torch.load(refined / "checkpoint.pt", weights_only=True)
    assert state["arch"]["refine"] == 4 and state["iteration"] == 1
    # resumed without the layout flags: the checkpoint's layout is rebuilt, not the defaults
    assert main(["train", "--out", str(refined), "--scenes", "2", "--batch", "2", "--threads", "1",
                 "--iterations", "2", "--log-every-s", "0", "--resume"]) == 0
    assert "stride-2 level 8 ch, full-resolution semantic refinement 4 ch" in capsys.readouterr().out


def test_init_from_a_checkpoint_of_another_layout_is_a_user_error(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--out", str(tmp_path / "a"), *SMALL]) == 0
    capsys.readouterr()
    wider = [*SMALL]
    wider[1] = "16,16,16,16"
    checkpoint = str(tmp_path / "a" / "checkpoint.pt")
    assert main(["train", "--out", str(tmp_path / "b"), *wider, "--init-from", checkpoint]) == 2
    err = capsys.readouterr().err
    assert "does not fit this architecture" in err and "--widths" in err
    assert main(["train", "--out", str(tmp_path / "c"), *SMALL, "--init-from", str(tmp_path / "missing.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_shipped_onnx_weights_load_back_into_its_layout() -> None:
    """The shipped model has no checkpoint: fine-tuning starts from its ONNX (BatchNorm folded)."""
    import onnxruntime as ort

    from perception.synth.scene import random_scene
    from perception.train.model import Arch, TinyPanoptic
    from perception.train.onnx_weights import state_from_onnx

    shipped = Path(__file__).resolve().parent.parent / "engines" / "panoptic-tiny.onnx"
    model = TinyPanoptic(8, Arch((32, 64, 128, 192), 64, 32, subpixel=16))
    model.load_state_dict(state_from_onnx(shipped, model), strict=False)
    model.eval()
    bgr, _ = random_scene(5_000_001)
    image = np.ascontiguousarray(bgr[:, :, ::-1].transpose(2, 0, 1)[None], np.float32) / 255.0
    expected = ort.InferenceSession(str(shipped), providers=["CPUExecutionProvider"]).run(None, {"image": image})
    with torch.no_grad():
        got = [t.numpy() for t in model(torch.from_numpy(image))]
    for want, have in zip(expected, got, strict=True):
        np.testing.assert_allclose(have, want, atol=1e-3)
    assert (expected[0].argmax(1) == got[0].argmax(1)).mean() > 0.999
    with pytest.raises(ValueError, match=r"lacks, e\.g\. fuse2"):
        state_from_onnx(shipped, TinyPanoptic(8, Arch((32, 64, 128, 192), 64, 0)))


def test_fine_tune_from_an_exported_onnx(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path / "base"
    assert main(["train", "--out", str(base), *SMALL, "--fine", "8"]) == 0
    capsys.readouterr()
    assert main(["train", "--out", str(tmp_path / "tuned"), *SMALL, "--fine", "8", "--refine", "4",
                 "--init-from", str(base / "model.onnx")]) == 0
    assert "new layers: refine_features, refine_head, refine_image" in capsys.readouterr().out
    # a layout the graph does not fit (no stride-2 level) is a user error, not a traceback
    assert main(["train", "--out", str(tmp_path / "other"), *SMALL, "--init-from", str(base / "model.onnx")]) == 2
    assert "lacks" in capsys.readouterr().err


def test_train_only_some_layers_leaves_the_rest_untouched(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, tuned = tmp_path / "base", tmp_path / "tuned"
    assert main(["train", "--out", str(base), *SMALL, "--fine", "8"]) == 0
    capsys.readouterr()
    assert main(["train", "--out", str(tuned), *SMALL, "--fine", "8", "--iterations", "2", "--train-only",
                 "instance_head", "--center-sigma-per-side", "0.2", "--init-from", str(base / "checkpoint.pt")]) == 0
    assert "training only instance_head" in capsys.readouterr().out
    before = torch.load(base / "checkpoint.pt", weights_only=True)["model"]
    after = torch.load(tuned / "checkpoint.pt", weights_only=True)["model"]
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    # frozen layers keep weights and batch-norm statistics; the trained head moves
    assert changed and all(k.startswith("instance_head.") for k in changed), sorted(changed)[:5]
    assert any(k.endswith("running_mean") for k in changed)  # the trained head's own statistics
    # resume and export keep the checkpoint's choice of layers (its optimizer holds only theirs)
    assert main(["train", "--out", str(tuned), "--threads", "1", "--iterations", "3", "--log-every-s", "0",
                 "--resume"]) == 0
    assert "training only instance_head" in capsys.readouterr().out
    assert main(["train", "--out", str(tuned), "--export-only"]) == 0
    assert main(["train", "--out", str(tmp_path / "x"), *SMALL, "--train-only", "centre_head"]) == 2
    assert "no layers ['centre_head']" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "y"), *SMALL, "--center-sigma-per-side", "-1"]) == 2
    assert "negative" in capsys.readouterr().err


def test_frozen_batch_norm_keeps_statistics_while_weights_learn(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    base, tuned = tmp_path / "base", tmp_path / "tuned"
    assert main(["train", "--out", str(base), *SMALL, "--fine", "8"]) == 0
    capsys.readouterr()
    assert main(["train", "--out", str(tuned), *SMALL, "--fine", "8", "--iterations", "2", "--freeze-batch-norm",
                 "--init-from", str(base / "model.onnx")]) == 0
    assert "batch norm frozen" in capsys.readouterr().out
    after = torch.load(tuned / "checkpoint.pt", weights_only=True)
    # the ONNX's folded batch norm loads as pass-through statistics (mean 0, variance 1 - eps), and stays so
    stats = {k: v for k, v in after["model"].items() if k.endswith(("running_mean", "running_var"))}
    assert stats and all(torch.allclose(v, torch.zeros_like(v) if k.endswith("mean") else torch.ones_like(v),
                                        atol=1e-4) for k, v in stats.items())
    before = torch.load(base / "checkpoint.pt", weights_only=True)["model"]
    assert not torch.equal(before["instance_head.1.weight"], after["model"]["instance_head.1.weight"])
    assert after["freeze_batch_norm"] is True
    assert main(["train", "--out", str(tuned), "--threads", "1", "--iterations", "3", "--log-every-s", "0",
                 "--resume"]) == 0
    assert "batch norm frozen" in capsys.readouterr().out


def test_average_of_two_runs_is_their_mean_and_exports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b, mean = tmp_path / "a", tmp_path / "b", tmp_path / "mean"
    assert main(["train", "--out", str(a), *SMALL, "--fine", "8"]) == 0
    assert main(["train", "--out", str(b), *SMALL, "--fine", "8", "--seed", "1"]) == 0
    capsys.readouterr()
    assert main(["train", "--out", str(mean), "--average-of", str(a / "checkpoint.pt"),
                 str(b / "checkpoint.pt")]) == 0
    out = capsys.readouterr().out
    assert "averaged 2 checkpoints" in out and "argmax agreement 100.000%" in out
    assert "resumed from" not in out
    wa, wb = (torch.load(p / "checkpoint.pt", weights_only=True)["model"] for p in (a, b))
    wm = torch.load(mean / "checkpoint.pt", weights_only=True)["model"]
    assert not torch.equal(wa["fuse2.0.weight"], wb["fuse2.0.weight"])  # two different runs
    for name, tensor in wm.items():
        if tensor.is_floating_point():
            assert torch.allclose(tensor, (wa[name] + wb[name]) / 2, atol=1e-6), name
    assert (mean / "model.onnx").is_file()
    # another layout, a single checkpoint or a missing file is a user error
    other = tmp_path / "other"
    assert main(["train", "--out", str(other), *SMALL]) == 0
    capsys.readouterr()
    assert main(["train", "--out", str(tmp_path / "x"), "--average-of", str(a / "checkpoint.pt"),
                 str(other / "checkpoint.pt")]) == 2
    assert "another layout" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "y"), "--average-of", str(a / "checkpoint.pt")]) == 2
    assert "at least two" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "z"), "--average-of", str(a / "checkpoint.pt"),
                 str(tmp_path / "nope.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_focal_centre_loss_is_per_centre_and_wants_every_peak() -> None:
    from perception.train.loop import focal_center_loss

    yy, xx = torch.meshgrid(torch.arange(48.0), torch.arange(64.0), indexing="ij")

    def gaussian(cy: float, cx: float, sigma: float) -> torch.Tensor:
        return torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))

    big, small = gaussian(20, 20, 4.0), gaussian(20, 27, 1.0)
    target = torch.maximum(big, small).view(1, 1, 48, 64)
    # what the loss wants: a peak of 1 at every centre and nothing elsewhere (not the Gaussians)
    ideal = (target >= 0.999).float()
    assert float(focal_center_loss(ideal, target)) < 1e-3 < float(focal_center_loss(target, target))
    # the small thing's centre left at its neighbour's slope, no peak of its own: costs per centre
    merged = ideal.clone()
    merged[0, 0, 20, 27] = big[20, 27]
    lost = float(focal_center_loss(merged, target))
    assert lost == pytest.approx(-(1 - float(big[20, 27])) ** 2 * np.log(float(big[20, 27])) / 2, rel=0.01)
    # divided by the centres, not the pixels: twice the empty image around them changes nothing
    wide_target, wide_merged = torch.zeros(1, 1, 48, 128), torch.zeros(1, 1, 48, 128)
    wide_target[..., :64], wide_merged[..., :64] = target, merged
    assert float(focal_center_loss(wide_merged, wide_target)) == pytest.approx(lost, rel=1e-3)


def test_train_with_focal_centre_loss_resumes_with_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "focal"
    assert main(["train", "--out", str(out), *SMALL, "--center-loss", "focal"]) == 0
    assert "focal centre loss" in capsys.readouterr().out
    assert torch.load(out / "checkpoint.pt", weights_only=True)["center_loss"] == "focal"
    # a resumed run keeps the checkpoint's loss even when the flag is not repeated
    assert main(["train", "--out", str(out), "--threads", "1", "--iterations", "3", "--log-every-s", "0",
                 "--resume"]) == 0
    assert "focal centre loss" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "--out", str(tmp_path / "x"), *SMALL, "--center-loss", "l2"])
    assert "invalid choice" in capsys.readouterr().err


def test_small_weight_weighs_small_things_and_is_kept_on_resume(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from perception.train.data import SMALL_INSTANCE_PIXELS, SceneStore, make_batch

    store = SceneStore.allocate(1, 32, 48, torch.device("cpu"))
    store.instances[0, 2:12, 2:12] = 1  # 100 px: small
    store.instances[0, 14:30, 20:40] = 2  # 320 px: not small
    store.semantic[0] = 0
    store.max_instance, store.filled = 2, 1
    assert 100 < SMALL_INSTANCE_PIXELS < 320
    index, flip = torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.bool)
    weight = make_batch(store, index, flip, small_weight=6.0).pixel_weight[0]
    assert float(weight[5, 5]) == 6.0 and float(weight[20, 30]) == 1.0 and float(weight[0, 0]) == 1.0
    assert float(make_batch(store, index, flip).pixel_weight[0, 5, 5]) == 3.0  # the default

    out = tmp_path / "heavy"
    assert main(["train", "--out", str(out), *SMALL, "--small-weight", "6"]) == 0
    assert "small things x6" in capsys.readouterr().out
    assert torch.load(out / "checkpoint.pt", weights_only=True)["small_weight"] == 6.0
    assert main(["train", "--out", str(out), "--threads", "1", "--iterations", "3", "--log-every-s", "0",
                 "--resume"]) == 0
    assert "small things x6" in capsys.readouterr().out
    assert main(["train", "--out", str(tmp_path / "x"), *SMALL, "--small-weight", "0"]) == 2
    assert "not positive" in capsys.readouterr().err
