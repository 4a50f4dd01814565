"""`lesion-lightning synthetic --out DIR`: write a deterministic synthetic dataset in an official layout.

Examples:
    lesion-lightning synthetic --out data/synth                    # 20 ISIC-2018-layout training pairs
    lesion-lightning synthetic --out data/synth --subsets train=40,val=10,test=10 --size 384 512
    lesion-lightning synthetic --out data/ph2 --layout ph2 --num-images 12
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lesion_lightning.data.synthetic import LAYOUTS, write_dataset


def _subsets(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in text.split(","):
        name, _, count = part.partition("=")
        if not count.strip().isdigit():
            raise argparse.ArgumentTypeError(f"--subsets: expected NAME=COUNT items like train=16,val=4, got {part!r}")
        out[name.strip()] = int(count)
    return out


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="folder to write the dataset into (created)")
    parser.add_argument("--layout", choices=LAYOUTS, default="isic2018",
                        help="official folder layout (default isic2018)")
    parser.add_argument("--num-images", type=int, default=20, metavar="N", help="number of pairs (default 20)")
    parser.add_argument("--subsets", type=_subsets, default=None, metavar="train=N,val=N,test=N",
                        help="ISIC layouts only: pairs per official subset (overrides --num-images)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same files (default 0)")
    parser.add_argument("--size", type=int, nargs=2, default=(192, 256), metavar=("H", "W"),
                        help="image height and width in pixels (default 192 256)")


def run(args: argparse.Namespace) -> int:
    if args.num_images < 1:
        print("lesion-lightning synthetic: --num-images must be >= 1", file=sys.stderr)
        return 2
    if min(args.size) < 16:
        print("lesion-lightning synthetic: --size must be at least 16 16", file=sys.stderr)
        return 2
    try:
        root = write_dataset(args.out, args.layout, args.num_images, seed=args.seed,
                             image_size=tuple(args.size), subsets=args.subsets)
    except ValueError as exc:
        print(f"lesion-lightning synthetic: {exc}", file=sys.stderr)
        return 2
    total = sum(args.subsets.values()) if args.subsets else args.num_images
    print(f"wrote {total} synthetic {args.layout} pairs ({args.size[0]}x{args.size[1]}) to {root}")
    return 0
