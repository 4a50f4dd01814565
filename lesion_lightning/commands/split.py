"""`lesion-lightning split`: write a reproducible split manifest (JSON) for a dataset.

Training reuses the manifest with `--data.split=FILE.json`. Exit 0 on success, 1 on a data
problem (empty dataset, duplicate ids), 2 on bad options.
"""

from __future__ import annotations

import argparse
import sys

from lesion_lightning.commands._options import add_reader_options, reader_options
from lesion_lightning.data.readers import SUBSETS
from lesion_lightning.data.splits import SCHEMES


def configure(parser: argparse.ArgumentParser) -> None:
    add_reader_options(parser)
    parser.add_argument("--scheme", required=True, choices=SCHEMES,
                        help="80-10-10 (LANET), 70-30 (SCSONet), 80-20 (SLSNet), official, kfold")
    parser.add_argument("--seed", type=int, default=42, help="split seed (default: %(default)s)")
    parser.add_argument("--folds", type=int, default=5, help="number of folds for kfold (default: %(default)s)")
    parser.add_argument("--fold", type=int, default=0, help="validation fold for kfold (default: %(default)s)")
    parser.add_argument("--pool", nargs="+", choices=SUBSETS, default=None,
                        help="official subsets to split (default: the scheme's paper protocol)")
    parser.add_argument("--out", required=True, help="manifest file to write (JSON)")


def run(args: argparse.Namespace) -> int:
    from lesion_lightning.data.errors import DataError
    from lesion_lightning.data.readers import scan_dataset
    from lesion_lightning.data.splits import make_split

    try:
        scan = scan_dataset(args.dataset, args.root, **reader_options(args))
        manifest = make_split(scan.records, args.scheme, seed=args.seed, fold=args.fold, folds=args.folds,
                              pool=args.pool, dataset=args.dataset)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = manifest.save(args.out)
    by_id = {r.id: r for r in scan.records}
    unlabelled = [i for i in manifest.ids if by_id[i].mask_path is None]
    sizes = ", ".join(f"{k} {len(v)}" for k, v in manifest.subsets.items())
    fold = f" fold {manifest.fold}/{manifest.folds}" if manifest.fold is not None else ""
    print(f"{args.dataset} {args.scheme}{fold} seed {args.seed}: {sizes} -> {path}")
    print(f"fingerprint {manifest.fingerprint}")
    if unlabelled:
        print(f"WARNING {len(unlabelled)} image(s) in the split have no mask (e.g. {by_id[unlabelled[0]].image_path}); "
              "run check-data", file=sys.stderr)
    if scan.problems:
        print(f"WARNING the dataset has {len(scan.problems)} structural problem(s); run check-data", file=sys.stderr)
    return 0
