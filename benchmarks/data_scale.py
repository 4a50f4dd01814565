"""Data pipeline at dataset scale: epoch times, peak memory and cache size as the dataset grows.

Measures the training data pipeline (records -> decode-once cache -> transforms -> DataLoader batches
of 16, one process, num_workers=0) on
- the complete ISIC 2018 Task 1 train + val set in ../shared/data/isic2018_128 (2694 pairs at 128x128),
  worked at 128x128, where that folder exists;
- a synthetic set of 600x450 JPEGs (HAM10000's size), worked at 256x256, at two sizes, to show how
  each figure grows with the number of images.
For each set: the first epoch (it fills the cache: decode + resize + write), the later epochs (read
from the cache), both in seconds per 1000 images, peak resident memory of the process above its
footprint after imports, and the cache's size on disk. Each set is measured in a fresh process, so
the peaks do not mix.

    .venv/bin/python benchmarks/data_scale.py            # quick (default): ISIC 2018 first 1000, synthetic 500 and 2000 (~3 min)
    .venv/bin/python benchmarks/data_scale.py --full     # ISIC 2018 all 2694, synthetic 1000 and 10000 (~25 min on 2 cores)

The synthetic images are written once under --work (default /tmp/lesion-lightning-data-scale) and
reused; each measurement starts from an empty cache.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BATCH_SIZE = 16
LATER_EPOCHS = 2
ISIC_ROOT = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "isic2018_128"
SYNTHETIC_SIZE = (450, 600)  # (H, W): HAM10000's images


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(dataset: str, root: Path, count: int, size: int, cache_dir: Path) -> dict:
    """Epoch times, memory and cache size for the first `count` records of `dataset` (this process)."""
    from torch.utils.data import DataLoader

    from lesion_lightning.data.cache import DecodeCache
    from lesion_lightning.data.dataset import LesionDataset
    from lesion_lightning.data.readers import read_dataset
    from lesion_lightning.data.transforms import build_transforms

    records = read_dataset(dataset, root)[:count]
    if len(records) < count:
        raise SystemExit(f"{root}: only {len(records)} images, {count} wanted")
    hw = (size, size)
    data = LesionDataset(records, transform=build_transforms("none", hw, train=True),
                         cache=DecodeCache(cache_dir, hw), image_size=hw)
    loader = DataLoader(data, batch_size=BATCH_SIZE, shuffle=True, num_workers=0)
    baseline = _rss_mb()
    epochs = []
    for _ in range(1 + LATER_EPOCHS):
        start = time.perf_counter()
        for batch in loader:
            batch["image"].sum()  # touch the batch as a training step would
        epochs.append(time.perf_counter() - start)
    cache_bytes = sum(p.stat().st_size for p in cache_dir.glob("*.npy"))
    per_1000 = 1000 / len(records)
    return {"images": len(records), "working_size": size, "first_epoch_s_per_1000": epochs[0] * per_1000,
            "later_epoch_s_per_1000": min(epochs[1:]) * per_1000, "baseline_rss_mb": baseline,
            "peak_rss_mb": _rss_mb(), "rss_growth_mb": _rss_mb() - baseline, "cache_mb": cache_bytes / 2**20,
            "cache_kb_per_image": cache_bytes / 1024 / len(records)}


def _synthetic_root(work: Path, count: int) -> Path:
    from lesion_lightning.data.synthetic import write_dataset

    root = work / f"synthetic-folder-{SYNTHETIC_SIZE[1]}x{SYNTHETIC_SIZE[0]}-n{count}"
    if not (root / ".complete").exists():
        print(f"writing {count} synthetic 600x450 images to {root} (once) ...", file=sys.stderr, flush=True)
        write_dataset(root, "folder", num_images=count, image_size=SYNTHETIC_SIZE)
        (root / ".complete").write_text("ok\n")
    return root


def _in_child(dataset: str, root: Path, count: int, size: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="ll-data-scale-cache-") as cache:
        job = json.dumps({"dataset": dataset, "root": str(root), "count": count, "size": size, "cache": cache})
        done = subprocess.run([sys.executable, __file__, "--child", job], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"measurement of {dataset} x{count} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(full: bool, work: Path) -> list[dict]:
    plan = []
    if ISIC_ROOT.is_dir():
        plan.append(("isic2018_128 (real)", "isic2018", ISIC_ROOT, 2694 if full else 1000, 128))
    else:
        print(f"{ISIC_ROOT} not found: the real set is left out", file=sys.stderr)
    small, large = (1000, 10000) if full else (500, 2000)
    synthetic = _synthetic_root(work, large)
    plan += [("synthetic 600x450", "folder", synthetic, n, 256) for n in (small, large)]
    results = []
    for label, dataset, root, count, size in plan:
        print(f"measuring {label} x{count} ...", file=sys.stderr, flush=True)
        results.append({"set": label, **_in_child(dataset, root, count, size)})
    return results


def _print(results: list[dict], full: bool) -> None:
    print(f"data pipeline at scale ({'full' if full else 'quick; --full for 1k vs 10k'}): batch {BATCH_SIZE}, "
          f"one process, cache filled in epoch 1, best of {LATER_EPOCHS} later epochs")
    print(f"{'set':<22}{'images':>7}{'work':>6}{'epoch 1 s/1k':>14}{'later s/1k':>12}{'peak RSS MB':>13}"
          f"{'growth MB':>11}{'cache MB':>10}{'KB/img':>8}")
    for r in results:
        print(f"{r['set']:<22}{r['images']:>7}{r['working_size']:>6}{r['first_epoch_s_per_1000']:>14.1f}"
              f"{r['later_epoch_s_per_1000']:>12.2f}{r['peak_rss_mb']:>13.0f}{r['rss_growth_mb']:>11.0f}"
              f"{r['cache_mb']:>10.0f}{r['cache_kb_per_image']:>8.0f}")
    small, large = [r for r in results if r["set"].startswith("synthetic")][-2:]
    ratio = large["images"] / small["images"]
    print(f"synthetic {small['images']} -> {large['images']} images (x{ratio:.0f}): epoch 1 per 1k "
          f"x{large['first_epoch_s_per_1000'] / small['first_epoch_s_per_1000']:.2f}, later epochs per 1k "
          f"x{large['later_epoch_s_per_1000'] / small['later_epoch_s_per_1000']:.2f}, memory growth "
          f"{small['rss_growth_mb']:.0f} -> {large['rss_growth_mb']:.0f} MB, cache "
          f"x{large['cache_mb'] / small['cache_mb']:.1f} on disk")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="2694 real and 1000/10000 synthetic images (slow)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "lesion-lightning-data-scale",
                        help="folder for the synthetic images (kept and reused)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        job = json.loads(args.child)
        print(json.dumps(measure(job["dataset"], Path(job["root"]), job["count"], job["size"], Path(job["cache"]))))
        return 0
    results = run(args.full, args.work)
    if args.json:
        print(json.dumps({"full": args.full, "batch_size": BATCH_SIZE, "results": results}, indent=2))
    else:
        _print(results, args.full)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
