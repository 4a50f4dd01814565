"""Decode-once cache benchmark: images/s decoding + resizing with and without a warm cache.

Runs on the real samples in ../shared/data (ISIC 2017: full-size 3008x2000 JPEGs; HAM10000:
600x450), or, where they are absent, on synthetic 3000x2000 and 600x450 JPEGs written to a temporary
folder. Each set is measured on the same files: decode + validate + resize with no cache, then
through a DecodeCache warmed by one pass. Target: cached >= 5x.

    .venv/bin/python benchmarks/cache_benchmark.py [--size 256 256] [--seconds 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lesion_lightning.data.cache import DecodeCache, decode_pair  # noqa: E402
from lesion_lightning.data.io import read_image_size  # noqa: E402
from lesion_lightning.data.synthetic import make_sample  # noqa: E402
from lesion_lightning.paths import sample_dataset_root  # noqa: E402

TARGET = 5.0


def _real_sets() -> dict[str, list[tuple[Path, Path]]]:
    sets = {}
    isic = sample_dataset_root("isic2017")
    if isic is not None:
        gt = isic / "ISIC-2017_Test_v2_Part1_GroundTruth"
        sets["isic2017 (real)"] = [(p, gt / f"{p.stem}_segmentation.png")
                                   for p in sorted((isic / "ISIC-2017_Test_v2_Data").glob("ISIC_*.jpg"))]
    ham = sample_dataset_root("ham10000")
    if ham is not None:
        gt = ham / "HAM10000_segmentations_lesion_tschandl"
        sets["ham10000 (real)"] = [(p, gt / f"{p.stem}_segmentation.png")
                                   for p in sorted(ham.glob("HAM10000_images_part_*/ISIC_*.jpg"))]
    return {k: v for k, v in sets.items() if v}


def _synthetic_set(folder: Path, name: str, n: int, size: tuple[int, int]) -> list[tuple[Path, Path]]:
    import cv2
    from PIL import Image

    folder.mkdir(parents=True)
    pairs = []
    for i in range(n):
        image, mask = make_sample(np.random.default_rng(i), size)
        img_path, mask_path = folder / f"{name}_{i}.jpg", folder / f"{name}_{i}_segmentation.png"
        cv2.imwrite(str(img_path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        Image.fromarray(mask * 255).save(mask_path)
        pairs.append((img_path, mask_path))
    return pairs


def _rate(load, pairs, min_seconds: float) -> float:
    """Images per second over whole passes of `pairs`, running for at least min_seconds (and 2 passes)."""
    done, start = 0, time.perf_counter()
    while True:
        for image_path, mask_path in pairs:
            load(image_path, mask_path)
        done += len(pairs)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds and done >= 2 * len(pairs):
            return done / elapsed


def run(image_size: tuple[int, int], min_seconds: float) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory(prefix="ll-cache-bench-") as tmp:
        tmp_path = Path(tmp)
        sets = _real_sets()
        if not sets:
            print("real samples not found (../shared/data): using synthetic JPEGs", file=sys.stderr)
            sets = {"synthetic 3000x2000": _synthetic_set(tmp_path / "large", "large", 4, (2000, 3000)),
                    "synthetic 600x450": _synthetic_set(tmp_path / "small", "small", 16, (450, 600))}
        for name, pairs in sets.items():
            cache = DecodeCache(tmp_path / "cache" / name.split()[0], image_size)
            uncached = _rate(lambda i, m: decode_pair(i, m, image_size), pairs, min_seconds)
            fill_start = time.perf_counter()
            for image_path, mask_path in pairs:  # warm the cache (cold pass: decode + write)
                cache.load_pair(image_path, mask_path)
            fill = len(pairs) / (time.perf_counter() - fill_start)
            cached = _rate(cache.load_pair, pairs, min_seconds)
            for image_path, mask_path in pairs:  # the warm pass must equal a fresh decode
                a, b = cache.load_pair(image_path, mask_path), decode_pair(image_path, mask_path, image_size)
                assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]), image_path
            h, w = read_image_size(pairs[0][0])
            results.append({"set": name, "files": len(pairs), "source_size": f"{w}x{h}",
                            "uncached_img_per_s": uncached, "cold_fill_img_per_s": fill,
                            "cached_img_per_s": cached, "speedup": cached / uncached})
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"), help="working size")
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum timing per measurement (default 2)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    results = run(tuple(args.size), args.seconds)
    if args.json:
        print(json.dumps({"image_size": list(args.size), "target_speedup": TARGET, "results": results}, indent=2))
        return 0
    h, w = args.size
    print(f"decode-once cache benchmark: decode + validate + resize to {h}x{w}, same files with and without cache")
    print(f"{'set':<22}{'files':>6}{'source':>11}{'no cache img/s':>16}{'cold fill img/s':>17}"
          f"{'warm cache img/s':>18}{'speed-up':>10}")
    for r in results:
        print(f"{r['set']:<22}{r['files']:>6}{r['source_size']:>11}{r['uncached_img_per_s']:>16.1f}"
              f"{r['cold_fill_img_per_s']:>17.1f}{r['cached_img_per_s']:>18.1f}{r['speedup']:>9.1f}x")
    worst = min(r["speedup"] for r in results)
    print(f"lowest speed-up {worst:.1f}x (target >= {TARGET:.0f}x): {'met' if worst >= TARGET else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
