"""What a trained model looked at (`lesion-lightning explain`).

For each image, at the image's original size:
- `<id>_gradcam_<level>.png`: Grad-CAM (pytorch-grad-cam) of the **predicted lesion** on a chosen layer
  (LANET Fig. 12). The segmentation target is the lesion score (sigmoid logit, or lesion minus
  background logit for a softmax head) summed over the pixels the model predicts as lesion (the whole
  image when it predicts none), so the map shows which features drove the lesion prediction;
- `<id>_activation_<level>.png`: the mean absolute activation over channels of the early (shallow) and
  deep layers (LANET Fig. 11);
- `<id>_explain.png`: a panel of the input with the predicted contour and all maps above, downscaled;
- `explain.csv`: which layer each map comes from, its resolution, and the target used.

Layers: `--layers shallow,intermediate,deep` (default) picks, for any architecture, by one probe forward
pass at the working size over its convolutions (those with more than 2 output channels, i.e. not the
head): *shallow* = the first convolution run, *deep* = the last convolution at the coarsest resolution
(the bottleneck), *intermediate* = a convolution between the two whose resolution is closest to their
geometric mean. Any module name from `--list-layers` can be given instead (a module returning
(N, C, h, w) features).
"""

from __future__ import annotations

import csv
import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from lesion_lightning.inference.predictor import Predictor

LEVELS = ("shallow", "intermediate", "deep")
PANEL_SIDE = 384  # longest side of each panel tile


# -- layers ----------------------------------------------------------------------------------------
@dataclass
class LayerInfo:
    order: int  # position in the forward pass
    name: str
    kind: str
    channels: int
    height: int
    width: int


def probe_layers(model: nn.Module, size: tuple[int, int]) -> list[LayerInfo]:
    """Every module with a 4-D output, in the order the forward pass runs them, at input `size`."""
    import torch

    records: list[LayerInfo] = []
    handles = []
    seen: set[str] = set()

    def hook(name: str, module: nn.Module):
        def fn(_module, _inputs, output):
            if name in seen or not isinstance(output, torch.Tensor) or output.ndim != 4:
                return
            seen.add(name)
            records.append(LayerInfo(len(records), name, type(module).__name__, int(output.shape[1]),
                                     int(output.shape[2]), int(output.shape[3])))
        return fn

    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_hook(hook(name, module)))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, *size, device=next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
    return records


def _is_candidate_conv(layer: LayerInfo) -> bool:
    return layer.kind in ("Conv2d", "ConvTranspose2d") and layer.channels > 2


def default_layers(layers: list[LayerInfo]) -> dict[str, LayerInfo]:
    """shallow / intermediate / deep convolutions of a probed model (see the module docstring)."""
    convs = [layer for layer in layers if _is_candidate_conv(layer)] or [layer for layer in layers if layer.channels > 2]
    if not convs:
        raise ValueError("the model has no convolution with more than 2 output channels to explain")
    shallow = convs[0]
    coarsest = min(c.height * c.width for c in convs)
    deep = [c for c in convs if c.height * c.width == coarsest][-1]
    between = [c for c in convs if shallow.order < c.order < deep.order] or [shallow]
    target = math.sqrt(shallow.height * shallow.width * deep.height * deep.width)
    intermediate = min(between, key=lambda c: (abs(math.log(c.height * c.width / target)), -c.order))
    # the last conv at that resolution before the bottleneck (the end of that encoder stage)
    same = [c for c in between if (c.height, c.width) == (intermediate.height, intermediate.width)]
    return {"shallow": shallow, "intermediate": same[-1] if same else intermediate, "deep": deep}


def resolve_layers(model: nn.Module, spec: str, size: tuple[int, int]) -> list[tuple[str, LayerInfo]]:
    """[(label, layer)] for a `--layers` value; unknown names raise ValueError listing the choices."""
    probed = probe_layers(model, size)
    by_name = {layer.name: layer for layer in probed}
    defaults = default_layers(probed)
    out: list[tuple[str, LayerInfo]] = []
    for item in [s.strip() for s in spec.split(",") if s.strip()]:
        if item in LEVELS:
            out.append((item, defaults[item]))
        elif item in by_name:
            out.append((item.replace(".", "_"), by_name[item]))
        else:
            names = dict(model.named_modules())
            hint = " (it produces no (N, C, h, w) output)" if item in names else ""
            raise ValueError(f"--layers: unknown layer {item!r}{hint}; use {', '.join(LEVELS)} or a name from "
                             "--list-layers")
    if not out:
        raise ValueError("--layers: no layer given")
    return out


def _module(model: nn.Module, name: str) -> nn.Module:
    return dict(model.named_modules())[name]


# -- maps ------------------------------------------------------------------------------------------
class LesionTarget:
    """Grad-CAM target: the lesion score summed over a (h, w) mask of the working-size output."""

    def __init__(self, mask: torch.Tensor) -> None:
        self.mask = mask

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        score = output[0] if output.shape[0] == 1 else output[1] - output[0]
        return (score * self.mask.to(output.device, output.dtype)).sum()


def _normalise_map(arr: np.ndarray) -> np.ndarray:
    import numpy as np

    arr = np.nan_to_num(arr.astype(np.float32))
    lo, hi = float(arr.min()), float(arr.max())
    return (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)


def heat_overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """(H, W, 3) uint8 RGB image with a (h, w) map in [0, 1] resized to it as a JET heatmap."""
    import cv2
    import numpy as np
    from pytorch_grad_cam.utils.image import show_cam_on_image

    h, w = image.shape[:2]
    heat = cv2.resize(heat.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return show_cam_on_image(image.astype(np.float32) / 255.0, np.clip(heat, 0, 1), use_rgb=True, image_weight=alpha)


def activation_map(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> np.ndarray:
    """Mean absolute activation over channels of `layer` for input `x` (1, 3, h, w), normalised to [0, 1]."""
    import torch

    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return _normalise_map(captured[0][0].abs().mean(0).float().cpu().numpy())


def _panel_tile(image: np.ndarray, title: str) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    scale = PANEL_SIDE / max(h, w)
    tile = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    tile = tile.copy()
    cv2.putText(tile, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(tile, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def explain_image(predictor, image: np.ndarray, layers: list[tuple[str, LayerInfo]], activation_layers,
                  alpha: float = 0.5) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """{output suffix: RGB uint8 image at the input's size} and facts about the target, for one image."""
    import numpy as np
    import torch
    from pytorch_grad_cam import GradCAM

    from lesion_lightning.inference.predictor import resize_probabilities
    from lesion_lightning.metrics import binarize
    from lesion_lightning.utils.visualize import overlay_contours

    model = predictor.task.model
    x = predictor.preprocess(image).unsqueeze(0).to(predictor.device)
    probs = predictor.forward_batch(x)[0, 0]
    mask = binarize(probs, predictor.threshold).float()
    target_region = "predicted lesion"
    if mask.sum() == 0:
        mask = torch.ones_like(mask)
        target_region = "whole image (no lesion predicted)"
    full_probs = resize_probabilities(probs.cpu().numpy(), *image.shape[:2])
    full_mask = binarize(full_probs, predictor.threshold)
    images: dict[str, np.ndarray] = {"prediction": overlay_contours(image, pred=full_mask)}
    for label, layer in layers:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with GradCAM(model=model, target_layers=[_module(model, layer.name)]) as cam:
                grayscale = cam(input_tensor=x, targets=[LesionTarget(mask)])[0]
        images[f"gradcam_{label}"] = heat_overlay(image, grayscale, alpha)
    for label, layer in activation_layers:
        images[f"activation_{label}"] = heat_overlay(image, activation_map(model, _module(model, layer.name), x), alpha)
    return images, {"target_region": target_region, "lesion_fraction": float(full_mask.mean())}




def _write_maps(output: Path, key: str, image: np.ndarray, maps: dict[str, np.ndarray]) -> None:
    """Each map as `<key>_<map>.png` and all of them in one panel, `<key>_explain.png`."""
    import cv2

    from lesion_lightning.utils.visualize import make_grid

    tiles = [_panel_tile(image, "input")]
    for suffix, rgb in maps.items():
        if suffix != "prediction":
            cv2.imwrite(str(output / f"{key}_{suffix}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        tiles.append(_panel_tile(rgb, suffix.replace("_", " ")))
    cv2.imwrite(str(output / f"{key}_explain.png"), cv2.cvtColor(make_grid(tiles, ncols=4), cv2.COLOR_RGB2BGR))


def _csv_rows(key: str, kind: str, layers: list[tuple[str, LayerInfo]], facts: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"id": key, "map": f"{kind}_{label}", "layer": layer.name, "type": layer.kind,
             "resolution": f"{layer.height}x{layer.width}", **facts} for label, layer in layers]


def explain_files(predictor: Predictor, files: list[Path], output: Path, layers: list[tuple[str, LayerInfo]],
                  alpha: float = 0.5) -> tuple[int, list[str]]:
    """Explain every file into `output` (maps, panels, `explain.csv`); returns (images done, problems).
    A file that cannot be read or explained is a problem, never raised."""
    from tqdm.auto import tqdm

    from lesion_lightning.data.errors import DataError, ImageConversionWarning
    from lesion_lightning.data.io import load_image
    from lesion_lightning.inference.files import assign_ids

    activation_layers = activation_layers_of(predictor)
    output.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    for key, path in tqdm(list(zip(assign_ids(files), files)), desc="explain", unit="img", file=sys.stderr):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ImageConversionWarning)
                image = load_image(path)
            maps, facts = explain_image(predictor, image, layers, activation_layers, alpha)
        except DataError as exc:
            problems.append(str(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - one image's failure must not stop the others
            problems.append(f"{path}: explaining failed: {type(exc).__name__}: {exc}")
            continue
        _write_maps(output, key, image, maps)
        rows += _csv_rows(key, "gradcam", layers, facts) + _csv_rows(key, "activation", activation_layers, facts)
    if rows:
        with open(output / "explain.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return len({r["id"] for r in rows}), problems


def activation_layers_of(predictor: Predictor) -> list[tuple[str, LayerInfo]]:
    """The layers of the activation maps: the early (shallow) and deep defaults."""
    defaults = default_layers(probe_layers(predictor.task.model, predictor.preprocessing.image_size))
    return [("early", defaults["shallow"]), ("deep", defaults["deep"])]
