"""Options several commands share (not a command: `lesion_lightning.cli` registers only the COMMANDS table)."""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from lesion_lightning.data.readers import DATASETS, FOLDER_DEFAULTS


def add_reader_options(parser: argparse.ArgumentParser) -> None:
    """--dataset/--root and the `folder` reader's options (`check-data`, `split`)."""
    parser.add_argument("--dataset", required=True, choices=DATASETS, help="dataset layout")
    parser.add_argument("--root", required=True, help="dataset root folder (the official layout)")
    group = parser.add_argument_group("folder dataset options")
    group.add_argument("--image-dir", default=FOLDER_DEFAULTS["image_dir"], help="image folder under the root")
    group.add_argument("--mask-dir", default=FOLDER_DEFAULTS["mask_dir"], help="mask folder under the root")
    group.add_argument("--mask-pattern", default=FOLDER_DEFAULTS["mask_pattern"],
                       help="mask file name, with {id} for the image id (default: %(default)s)")
    group.add_argument("--reader-options", default=None, metavar="YAML",
                       help="any other folder reader options as a YAML mapping, as data.reader_options of fit, e.g. "
                       "'{subset_dirs: {train: [trainx, trainy]}, image_pattern: imgx{id}.jpg, "
                       "mask_pattern: imgy{id}.jpg, ids_per_subset: true}' (docs/datasets.md)")


def reader_options(args: argparse.Namespace) -> dict[str, Any]:
    """The folder reader's options of the command line; ValueError (one line) for a --reader-options that is
    not a YAML mapping."""
    if args.dataset != "folder":
        return {}
    options: dict[str, Any] = {"image_dir": args.image_dir, "mask_dir": args.mask_dir, "mask_pattern": args.mask_pattern}
    if args.reader_options:
        try:
            extra = yaml.safe_load(args.reader_options)
        except yaml.YAMLError as exc:
            raise ValueError(f"--reader-options: not YAML: {str(exc).splitlines()[0]}") from exc
        if not isinstance(extra, dict):
            raise ValueError(f"--reader-options: expected a mapping such as '{{ids_per_subset: true}}', "
                             f"got {args.reader_options!r}")
        options.update(extra)
    return options


def add_checkpoint_options(parser: argparse.ArgumentParser, device_default: str = "auto") -> None:
    """--ckpt, --device and --trust-checkpoint of the commands that load a trained model."""
    parser.add_argument("--ckpt", required=True, metavar="RUN_OR_CKPT",
                        help="run folder (its best checkpoint, else last.ckpt), a .ckpt file, or published weights: "
                        "weights/<name>.safetensors or just <name> (e.g. scsonet_isic2018_128)")
    parser.add_argument("--device", default=device_default,
                        help="cpu, cuda, cuda:1, ... (default: cuda when available)" if device_default == "auto"
                        else f"cpu, cuda[:N] or auto (default {device_default})")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="allow full unpickling of the checkpoint (can execute code: trusted files only)")


def input_files(inputs: list, recursive: bool, what: str = "input images") -> list | None:
    """The image files of --input (warning about each unusable path); None, said in one line, when none."""
    import sys

    from lesion_lightning.inference.files import collect_inputs

    files, problems = collect_inputs(inputs, recursive=recursive)
    for path, problem in problems:
        print(f"warning: --input {path}: {problem}", file=sys.stderr)
    if not files:
        print(f"error: no {what}", file=sys.stderr)
        return None
    return files

