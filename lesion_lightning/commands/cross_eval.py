"""`lesion-lightning cross-eval`: score a trained model on other datasets, with no retraining (LANET Table 9).

    lesion-lightning cross-eval --ckpt runs/demo/r1 --datasets isic2017,isic2018,ph2 [--exclude-overlap]
    lesion-lightning cross-eval --jobs experiments/cross_eval/lanet_table9.yaml

The method is `lesion_lightning.evaluation.cross_dataset`. Outputs in `--output` (default
results/cross_eval/<run name>): `cross_eval.json` (everything), `cross_eval.csv` (one row per dataset and
image set), `cross_eval.md`, `per_image_<dataset>.csv` (with a `seen` column) and, with `--save-predictions`,
the binary predictions and the compared masks as PNG (`<dataset>/pred/<id>.png`,
`<dataset>/gt/<id>_segmentation.png`) so that `lesion-lightning evaluate --pred ... --gt ...` reproduces the
numbers. Exit status 0, 1 when a job or a dataset failed, 2 for bad options.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lesion_lightning.evaluation.cross_options import DEFAULT_OUTPUT_ROOT, RESOLUTIONS, TEST_DATASETS


def configure(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", default=None, metavar="RUN_OR_CKPT",
                     help="trained run folder (its best checkpoint), a .ckpt file, or published weights "
                     "(weights/<name>.safetensors or <name>)")
    src.add_argument("--jobs", type=Path, default=None, metavar="YAML",
                     help="batch mode: a YAML file listing jobs (see experiments/cross_eval/lanet_table9.yaml)")
    parser.add_argument("--datasets", default="isic2017,isic2018,ph2", metavar="A,B,...",
                        help=f"test datasets, of {', '.join(TEST_DATASETS)} (default isic2017,isic2018,ph2)")
    parser.add_argument("--data-roots", default="", metavar="NAME=DIR,...",
                        help="dataset roots, e.g. isic2018=/data/isic2018,ph2=/data/PH2 (default: the embedded "
                        "sample in ../shared/data; a dataset with neither is an error unless --synthetic)")
    parser.add_argument("--synthetic", action="store_true",
                        help="score a dataset with no root and no embedded sample on its synthetic stand-in "
                        "(marked SYNTHETIC in every output)")
    parser.add_argument("--subsets", default=None, metavar="S,...",
                        help="official subsets of ISIC test datasets to use (train,val,test; default: all labelled)")
    parser.add_argument("--exclude-overlap", action="store_true",
                        help="headline = unseen images only (both numbers are always reported)")
    parser.add_argument("--train-root", type=Path, default=None,
                        help="root of the training dataset (default: the run's data.root, else the embedded data)")
    parser.add_argument("--seen", default="train", metavar="S,...",
                        help="subsets of the run's split.json that count as seen in training (default train; "
                        "use train,val to also leave out the model-selection images)")
    parser.add_argument("--resolution", default="working", choices=RESOLUTIONS,
                        help="compare at the run's working size (default, as validation) or at each image's own size")
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    parser.add_argument("--tta", action="store_true", help="6-fold test-time augmentation (flips, rotations)")
    parser.add_argument("--backend", choices=("auto", "eager", "onnx"), default="auto",
                        help="network in eager PyTorch or ONNX Runtime (auto: ONNX Runtime on CPU where the "
                        "cached export verifies; default auto)")
    parser.add_argument("--cache", default=None, metavar="DIR",
                        help="decode cache / synthetic data folder (default $LESION_LIGHTNING_CACHE or .cache/lesion-lightning)")
    parser.add_argument("--save-predictions", action="store_true",
                        help="write the binary predictions and compared masks as PNG under the output folder")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="allow full unpickling of the checkpoint (only for files you trust)")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"output folder (default {DEFAULT_OUTPUT_ROOT}/<run name>; batch mode: "
                        f"{DEFAULT_OUTPUT_ROOT}/<jobs file name>)")
    parser.add_argument("--json", action="store_true", help="print the JSON document instead of the tables")


def _evaluate(args: argparse.Namespace) -> tuple[list[dict], Path]:
    from lesion_lightning.evaluation.cross_dataset import cross_evaluate
    from lesion_lightning.evaluation.cross_jobs import default_name, run_jobs
    from lesion_lightning.evaluation.cross_options import (
        CrossEvalOptions,
        parse_data_roots,
        parse_datasets,
        parse_subsets,
    )
    from lesion_lightning.evaluation.cross_report import write_outputs

    options = CrossEvalOptions(
        datasets=parse_datasets(args.datasets), data_roots=parse_data_roots(args.data_roots),
        subsets=parse_subsets(args.subsets, "--subsets"), exclude_overlap=args.exclude_overlap,
        train_root=args.train_root, seen=parse_subsets(args.seen, "--seen"), resolution=args.resolution,
        batch_size=args.batch_size, device=args.device, tta=args.tta, backend=args.backend, cache=args.cache,
        trust_checkpoint=args.trust_checkpoint, synthetic=args.synthetic)
    if args.jobs is not None:
        return run_jobs(args.jobs, options, args.output, args.save_predictions)
    out = args.output or DEFAULT_OUTPUT_ROOT / default_name(args.ckpt)
    doc = cross_evaluate(args.ckpt, options, save_predictions_to=out / "predictions" if args.save_predictions else None)
    write_outputs(out, doc)
    return [doc], out


def run(args: argparse.Namespace) -> int:
    from lesion_lightning.data.errors import DataError
    from lesion_lightning.evaluation.cross_options import CrossEvalError
    from lesion_lightning.evaluation.cross_report import print_tables

    try:
        docs, out = _evaluate(args)
    except (CrossEvalError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(docs[0] if args.jobs is None else docs, indent=2, default=str))
    else:
        for d in docs:
            if "error" in d:
                print(f"job {d['name']}: error: {d['error']}")
            else:
                print_tables(d)
        print(f"wrote {out}")
    failed = [d for d in docs if "error" in d or any("error" in r for r in d.get("results", []))]
    for d in docs:
        for r in d.get("results", []):
            if "error" in r:
                print(f"error: {d['name']}: {r['dataset']}: {r['error']}", file=sys.stderr)
    return 1 if failed else 0
