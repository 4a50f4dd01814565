"""`lesion-lightning explain`: Grad-CAM and activation maps at the input's size, layer choice for any model."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from lesion_lightning.cli import main
from lesion_lightning.inference.explain import LEVELS, default_layers, explain_image, probe_layers, resolve_layers
from lesion_lightning.models import create_model, list_models

from tiny_run import ham10000_or_skip

FAST_MODELS = {"simple_unet", "lanet", "egeunet"}


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A checkpoint written by a plain Trainer (no run folder, no `_class_path`): 2 steps of simple_unet at 64x64."""
    from lesion_lightning.data.datamodule import LesionDataModule
    from lesion_lightning.training.task import SegmentationTask

    ham = ham10000_or_skip()
    tmp = tmp_path_factory.mktemp("explain_ckpt")
    pl.seed_everything(0)
    task = SegmentationTask(model="simple_unet", model_kwargs={"base_width": 4})
    data = LesionDataModule(dataset="ham10000", root=str(ham), image_size=64, batch_size=4, cache=str(tmp / "cache"))
    trainer = pl.Trainer(max_steps=2, limit_val_batches=1, num_sanity_val_steps=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", default_root_dir=str(tmp))
    trainer.fit(task, datamodule=data)
    path = tmp / "tiny.ckpt"
    trainer.save_checkpoint(path)
    return path


def _ph2_image(ph2_root: Path) -> Path:
    return next(p for p in sorted(ph2_root.rglob("IMD*.bmp")) if not p.stem.endswith("_lesion"))


def test_explain_writes_heatmaps_of_the_input_size(tiny_ckpt, ph2_root, ham10000_root, tmp_path):
    inputs = [_ph2_image(ph2_root), sorted((ham10000_root / "HAM10000_images_part_1").glob("*.jpg"))[0]]
    out = tmp_path / "explain"
    assert main(["explain", "--ckpt", str(tiny_ckpt), "--input", *map(str, inputs), "--output", str(out)]) == 0
    for path in inputs:
        with Image.open(path) as im:
            size = im.size
        for level in LEVELS:
            heat = Image.open(out / f"{path.stem}_gradcam_{level}.png")
            assert heat.size == size and heat.mode == "RGB"
        for level in ("early", "deep"):
            act = np.asarray(Image.open(out / f"{path.stem}_activation_{level}.png"))
            assert act.shape == (size[1], size[0], 3)
            assert act.std() > 0  # a real map, not a flat image
        assert (out / f"{path.stem}_explain.png").exists()
    with open(out / "explain.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["map"] for r in rows} == {"gradcam_shallow", "gradcam_intermediate", "gradcam_deep",
                                        "activation_early", "activation_deep"}
    assert len(rows) == 5 * len(inputs)


def test_list_layers_and_named_layers(tiny_ckpt, ph2_root, tmp_path, capsys):
    assert main(["explain", "--ckpt", str(tiny_ckpt), "--list-layers"]) == 0
    listing = capsys.readouterr().out
    for level in LEVELS:
        assert level in listing
    assert "enc2.3" in listing and "bottleneck.3" in listing
    out = tmp_path / "named"
    image = _ph2_image(ph2_root)
    assert main(["explain", "--ckpt", str(tiny_ckpt), "--input", str(image), "--output", str(out),
                 "--layers", "enc2.3,deep"]) == 0
    assert (out / f"{image.stem}_gradcam_enc2_3.png").exists() and (out / f"{image.stem}_gradcam_deep.png").exists()
    assert main(["explain", "--ckpt", str(tiny_ckpt), "--input", str(image), "--output", str(out),
                 "--layers", "no.such.layer"]) == 2
    assert "no.such.layer" in capsys.readouterr().err


def test_gradcam_is_aligned_with_the_input():
    """Orientation/alignment of the maps on a non-square image: a model whose features respond to
    brightness gets its Grad-CAM and activation heat on the bright top-left patch of a dark image."""
    from torch import nn

    from lesion_lightning.inference import LoadedTask, Predictor, Preprocessing
    from lesion_lightning.training.task import SegmentationTask

    task = SegmentationTask(model="simple_unet", model_kwargs={"base_width": 4})

    class Brightness(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.head = nn.Conv2d(8, 1, 1)

        def forward(self, x):
            return self.head(torch.relu(self.conv(x))) + 5.0  # everything predicted lesion

    task.model = Brightness()
    with torch.no_grad():
        task.model.conv.weight.fill_(0.1)
        task.model.conv.bias.zero_()
        task.model.head.weight.fill_(1.0)
    loaded = LoadedTask(task=task.eval(), checkpoint_path=Path("x.ckpt"), run_dir=None,
                        preprocessing=Preprocessing((32, 32)), hparams={"model": "simple_unet"})
    image = np.zeros((40, 60, 3), np.uint8)
    image[:20, :30] = 220
    layer = resolve_layers(task.model, "conv", (32, 32))
    maps, facts = explain_image(Predictor(loaded), image, layer, [("early", layer[0][1])], alpha=0.0)
    assert facts["target_region"] == "predicted lesion"
    for key in ("gradcam_conv", "activation_early"):
        red = maps[key][..., 0].astype(float)  # JET colour map: hot = red, cold = blue
        inside, outside = red[2:18, 2:28].mean(), red[24:, 34:].mean()
        assert inside > outside + 100, (key, inside, outside)


@pytest.mark.parametrize("name", [n if n in FAST_MODELS else pytest.param(n, marks=pytest.mark.slow)
                                  for n in list_models()])
def test_default_layers_and_gradcam_for_every_registered_model(name):
    from lesion_lightning.inference import LoadedTask, Predictor, Preprocessing
    from lesion_lightning.training.task import SegmentationTask

    torch.manual_seed(0)
    task = SegmentationTask(model=name).eval()
    picks = default_layers(probe_layers(task.model, (64, 64)))
    shallow, inter, deep = picks["shallow"], picks["intermediate"], picks["deep"]
    assert shallow.order <= inter.order <= deep.order
    assert deep.height * deep.width <= inter.height * inter.width <= shallow.height * shallow.width
    loaded = LoadedTask(task=task, checkpoint_path=Path(f"{name}.ckpt"), run_dir=None,
                        preprocessing=Preprocessing((64, 64)), hparams={"model": name})
    image = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    layers = resolve_layers(task.model, "shallow,intermediate,deep", (64, 64))
    maps, _ = explain_image(Predictor(loaded), image, layers, [("early", shallow), ("deep", deep)])
    for key in ("gradcam_shallow", "gradcam_intermediate", "gradcam_deep", "activation_early", "activation_deep"):
        assert maps[key].shape == (50, 70, 3) and maps[key].dtype == np.uint8


def test_probe_layers_on_a_plain_model():
    layers = probe_layers(create_model("simple_unet", base_width=4), (32, 32))
    assert layers[0].name == "enc1.0" and layers[0].kind == "Conv2d"
