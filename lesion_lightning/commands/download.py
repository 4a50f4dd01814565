"""`lesion-lightning download DATASET --root DIR`: fetch and extract an official dataset.

Resumable (run it again after an interruption), verified where sizes/checksums are known, and
extracted with a guard against archive members escaping DIR. Examples:

    lesion-lightning download isic2018 --root data/isic2018 --subsets val test
    lesion-lightning download ham10000 --root data/ham10000
    lesion-lightning download isic2017 --root data/isic2017 --base-url http://mirror.local/isic2017
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lesion_lightning.data.download import archives, download, downloadable
from lesion_lightning.data.errors import DataError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=downloadable(), help="dataset to download")
    parser.add_argument("--root", required=True, type=Path, help="folder to put the dataset in (created)")
    parser.add_argument("--subsets", nargs="+", choices=("train", "val", "test"), default=None,
                        help="ISIC only: official subsets to fetch (default: all)")
    parser.add_argument("--base-url", default=None, metavar="URL",
                        help="fetch every archive as URL/<file name> instead of the official address (a mirror)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--delete-archives", action="store_true", help="delete each archive once extracted")
    parser.add_argument("--list", action="store_true", help="print the files and URLs, download nothing")


def run(args: argparse.Namespace) -> int:
    if args.list:
        for archive in archives(args.dataset):
            subset = f" [{archive.subset}]" if archive.subset else ""
            print(f"{archive.filename}{subset}\t{archive.url}")
        return 0
    try:
        root = download(args.dataset, args.root, base_url=args.base_url, progress=not args.no_progress,
                        subsets=args.subsets, keep_archives=not args.delete_archives)
    except DataError as exc:
        print(f"lesion-lightning download: {exc}", file=sys.stderr)
        return 1
    print(f"{args.dataset} ready in {root} (check it with: lesion-lightning check-data --dataset {args.dataset} "
          f"--root {root})")
    return 0
