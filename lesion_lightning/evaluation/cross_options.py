"""Options of a cross-dataset evaluation (`lesion-lightning cross-eval`, its jobs files, the table runner)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lesion_lightning.data.datasets import SUBSETS, list_datasets

TEST_DATASETS = list_datasets(fixed_layout=True)  # addressable by name alone (not `folder`)
RESOLUTIONS = ("working", "original")
DEFAULT_OUTPUT_ROOT = Path("results") / "cross_eval"


class CrossEvalError(RuntimeError):
    """A bad option or input; the message names it."""


@dataclass
class CrossEvalOptions:
    """How one trained model is scored on other datasets (see `lesion_lightning.evaluation.cross_dataset`)."""

    datasets: list[str]
    data_roots: dict[str, Path] = field(default_factory=dict)
    subsets: list[str] | None = None  # official subsets of ISIC test datasets (None: every labelled image)
    exclude_overlap: bool = False  # headline = unseen images only
    train_root: Path | None = None
    seen: list[str] = field(default_factory=lambda: ["train"])
    resolution: str = "working"
    batch_size: int = 8
    device: str = "cpu"
    tta: bool = False
    backend: str = "auto"  # the network through ONNX Runtime on CPU where its export verifies (inference.onnx_backend)
    cache: str | None = None
    trust_checkpoint: bool = False
    synthetic: bool = False  # a test dataset with no root and no embedded sample: its synthetic stand-in

    def check(self) -> None:
        if self.resolution not in RESOLUTIONS:
            raise CrossEvalError(f"--resolution: {self.resolution!r}; choose one of {', '.join(RESOLUTIONS)}")
        if self.batch_size < 1:
            raise CrossEvalError(f"--batch-size: must be at least 1, got {self.batch_size}")
        if self.device not in ("cpu", "auto") and not str(self.device).startswith("cuda"):
            raise CrossEvalError(f"--device: {self.device!r}; use cpu, cuda[:N] or auto")
        if str(self.device).startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise CrossEvalError(f"--device {self.device}: no CUDA device is available here (use --device cpu)")


def parse_datasets(text: str | list[str], option: str = "--datasets") -> list[str]:
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if str(n).strip()]
    if not names:
        raise CrossEvalError(f"{option}: no dataset given")
    unknown = [n for n in names if n not in TEST_DATASETS]
    if unknown:
        raise CrossEvalError(f"{option}: unknown dataset(s) {', '.join(unknown)}; choose from {', '.join(TEST_DATASETS)}")
    return list(dict.fromkeys(names))


def _pairs(text: str, option: str) -> list[tuple[str, str]]:
    pairs = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if "=" not in part:
            raise CrossEvalError(f"{option}: {part!r} is not NAME=DIR (e.g. ph2=/data/PH2)")
        name, _, folder = part.partition("=")
        pairs.append((name.strip(), folder.strip()))
    return pairs


def parse_data_roots(text: str | dict[str, str] | None, option: str = "--data-roots") -> dict[str, Path]:
    if not text:
        return {}
    items = _pairs(text, option) if isinstance(text, str) else list(text.items()) if isinstance(text, dict) else []
    out: dict[str, Path] = {}
    for name, folder in items:
        if name not in TEST_DATASETS:
            raise CrossEvalError(f"{option}: unknown dataset {name!r}; choose from {', '.join(TEST_DATASETS)}")
        path = Path(str(folder)).expanduser()
        if not path.is_dir():
            raise CrossEvalError(f"{option}: {name}={path}: folder not found")
        out[name] = path
    return out


def parse_subsets(text: str | list[str] | None, option: str) -> list[str] | None:
    """A comma-separated list (or a list) of train, val, test; None stays None."""
    if text is None:
        return None
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else map(str, text)) if n.strip()]
    bad = [n for n in names if n not in SUBSETS]
    if not names or bad:
        raise CrossEvalError(f"{option}: {text!r}: use a comma-separated list of {', '.join(SUBSETS)}")
    return names
