"""Published weights: `weights/<name>.safetensors` beside its model card `<name>.json` (and the training
split `<name>.split.json`), loaded as a trained task without a run folder or a Lightning checkpoint.

`--ckpt` accepts such a file, or its bare NAME (looked up in the repository's `weights/` folder), in
`predict`, `cross-eval`, `explain` and `export`. The card says how to rebuild the task (class and
constructor arguments), the preprocessing (working size and transform set) and the training data;
the file's SHA-256 must match the card's, so a card never describes other weights than the ones loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lesion_lightning.data.overlap import file_sha256
from lesion_lightning.paths import REPO_ROOT

WEIGHTS_DIR = REPO_ROOT / "weights"
SUFFIX = ".safetensors"


def published_names(folder: Path | None = None) -> list[str]:
    """Names of the weights published in `folder` (default WEIGHTS_DIR; those with a model card)."""
    folder = WEIGHTS_DIR if folder is None else folder
    return sorted(p.stem for p in folder.glob(f"*{SUFFIX}") if p.with_suffix(".json").is_file())


def find_published(run_or_ckpt: str | Path, folder: Path | None = None) -> Path | None:
    """The safetensors file meant by `--ckpt`: the file itself, or a bare name published in `folder`
    (default WEIGHTS_DIR)."""
    folder = WEIGHTS_DIR if folder is None else folder
    path = Path(run_or_ckpt).expanduser()
    if path.suffix == SUFFIX:
        return path
    text = str(run_or_ckpt)
    if not path.exists() and "/" not in text and (folder / f"{text}{SUFFIX}").is_file():
        return folder / f"{text}{SUFFIX}"
    return None



def read_card(weights: Path) -> dict[str, Any]:
    """The model card of `weights`, checked against the file (exists, names a task, same SHA-256)."""
    from lesion_lightning.inference.loaded import CheckpointError

    card_path = weights.with_suffix(".json")
    if not weights.is_file():
        names = ", ".join(published_names()) or "none"
        raise CheckpointError(f"--ckpt {weights}: no such weights file (published in {WEIGHTS_DIR}: {names})")
    if not card_path.is_file():
        raise CheckpointError(f"--ckpt {weights}: its model card {card_path.name} is missing beside it "
                              "(`lesion-lightning export --format safetensors` writes both)")
    try:
        card = json.loads(card_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{card_path}: unreadable model card: {exc}") from exc
    if not isinstance(card.get("task"), dict) or "class_path" not in card["task"]:
        raise CheckpointError(f"{card_path}: the card does not say how to rebuild the task (no task.class_path); "
                              "export it again with this version")
    expected = (card.get("file") or {}).get("sha256")
    if expected and expected != file_sha256(weights):
        raise CheckpointError(f"--ckpt {weights}: SHA-256 differs from its card {card_path.name}: "
                              "the weights were replaced or the card belongs to other weights")
    return card


def load_published(weights: Path, device: Any = "cpu") -> Any:
    """A `LoadedTask` from published weights and their card."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from lesion_lightning.data.sizes import size_or_none
    from lesion_lightning.inference.loaded import CheckpointError, LoadedTask, import_task_class
    from lesion_lightning.data.transforms import TRANSFORM_SET_NAMES
    from lesion_lightning.inference.preprocessing import Preprocessing, card_transform_set

    card = read_card(weights)
    cls = import_task_class(str(card["task"]["class_path"]))
    init_args = dict(card["task"].get("init_args") or {})
    try:
        task = cls(**init_args)
        task.model.load_state_dict(load_file(str(weights)), strict=True)
    except (TypeError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
        raise CheckpointError(f"--ckpt {weights}: cannot rebuild {card['task']['class_path']} from its card: "
                              f"{str(exc).splitlines()[0]}") from exc
    task.eval().to(device)
    model_input = card.get("input") or {}
    transform_set = card_transform_set(model_input.get("normalisation") or {})
    size = size_or_none(model_input.get("image_size"))
    if size is None or transform_set not in TRANSFORM_SET_NAMES:
        raise CheckpointError(f"{weights.with_suffix('.json')}: input.image_size / normalisation.transform_set "
                              "missing or unknown")
    split = weights.with_suffix(".split.json")
    return LoadedTask(task=task, checkpoint_path=weights, run_dir=None,
                      preprocessing=Preprocessing(size, transform_set, f"model card {weights.with_suffix('.json').name}"),
                      hparams=init_args, class_path=str(card["task"]["class_path"]),
                      datamodule_hparams=dict(card.get("training_data") or {}),
                      epoch=(card.get("checkpoint") or {}).get("epoch"),
                      global_step=(card.get("checkpoint") or {}).get("global_step"),
                      split_file=split if split.is_file() else None, card=card)
