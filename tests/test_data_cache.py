"""Decode-once cache: hits equal fresh decodes, invalidation, atomic concurrent writes, errors."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lesion_lightning.data.cache import DecodeCache, decode_pair, default_cache_dir, load_pair
from lesion_lightning.data.errors import DataError
from lesion_lightning.data.synthetic import write_dataset


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> list[tuple[Path, Path]]:
    root = write_dataset(tmp_path_factory.mktemp("synth"), "folder", 3, seed=4, image_size=(90, 120))
    return [(p, root / "masks" / f"{p.stem}_segmentation.png") for p in sorted((root / "images").glob("*.jpg"))]


def _assert_same(a, b):
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0].dtype == b[0].dtype == np.uint8
    if b[1] is None:
        assert a[1] is None
    else:
        np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("image_size", [(64, 64), (40, 56), (128, 160), None])
def test_hit_equals_fresh_decode(tmp_path, pairs, image_size):
    cache = DecodeCache(tmp_path / "cache", image_size)
    first = [cache.load_pair(i, m) for i, m in pairs]
    assert (cache.hits, cache.misses) == (0, len(pairs))
    again = [cache.load_pair(i, m) for i, m in pairs]
    assert (cache.hits, cache.misses) == (len(pairs), len(pairs))
    for (i, m), a, b in zip(pairs, first, again):
        fresh = decode_pair(i, m, image_size)
        _assert_same(a, fresh)
        _assert_same(b, fresh)
        expected_hw = image_size or (90, 120)
        assert b[0].shape == (*expected_hw, 3) and b[1].shape == expected_hw
        assert set(np.unique(b[1])) <= {0, 1}
        assert b[0].flags.c_contiguous and b[1].flags.c_contiguous and b[0].flags.writeable
    assert len(list((tmp_path / "cache").glob("*.npy"))) == len(pairs)
    assert not list((tmp_path / "cache").glob(".*.tmp"))


def test_real_ham10000_cached_equals_fresh(tmp_path, ham10000_root):
    images = sorted((ham10000_root / "HAM10000_images_part_1").glob("*.jpg"))[:3]
    seg = ham10000_root / "HAM10000_segmentations_lesion_tschandl"
    cache = DecodeCache(tmp_path, (96, 128))
    for p in images:
        m = seg / f"{p.stem}_segmentation.png"
        cache.load_pair(p, m)
        _assert_same(cache.load_pair(p, m), decode_pair(p, m, (96, 128)))
    assert cache.hits == 3


def test_pair_without_mask(tmp_path, pairs):
    cache = DecodeCache(tmp_path, (32, 32))
    image, mask = cache.load_pair(pairs[0][0], None)
    assert mask is None and image.shape == (32, 32, 3)
    _assert_same(cache.load_pair(pairs[0][0], None), (image, None))
    assert cache.hits == 1


def test_source_change_invalidates(tmp_path, pairs):
    src = tmp_path / "img.png"
    mask = tmp_path / "mask.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(src)
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(mask)
    cache = DecodeCache(tmp_path / "c", (10, 15))
    assert cache.load_pair(src, mask)[0].max() == 0
    Image.fromarray(np.full((20, 30, 3), 200, np.uint8)).save(src)
    os.utime(src, ns=(1, 1_000_000_000))  # a different mtime even on coarse-clock filesystems
    image, _ = cache.load_pair(src, mask)
    assert image.min() == 200 and cache.misses == 2
    # A different working size is a different entry; the first one stays valid.
    other = DecodeCache(tmp_path / "c", (8, 8))
    assert other.load_pair(src, mask)[0].shape == (8, 8, 3) and other.misses == 1


def test_corrupt_entry_is_redecoded(tmp_path, pairs):
    cache = DecodeCache(tmp_path, (24, 24))
    image_path, mask_path = pairs[0]
    good = cache.load_pair(image_path, mask_path)
    cache.entry_path(image_path, mask_path).write_bytes(b"garbage")
    _assert_same(cache.load_pair(image_path, mask_path), good)
    assert cache.misses == 2
    _assert_same(cache.load_pair(image_path, mask_path), good)  # and rewritten
    assert cache.hits == 1


def test_concurrent_fill_is_atomic(tmp_path, pairs):
    image_path, mask_path = pairs[1]
    reference = decode_pair(image_path, mask_path, (48, 48))

    def worker(_):
        return DecodeCache(tmp_path, (48, 48)).load_pair(image_path, mask_path)

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(worker, range(12)))
    for r in results:
        _assert_same(r, reference)
    assert len(list(tmp_path.glob("*.npy"))) == 1 and not list(tmp_path.glob(".*.tmp"))


def test_mask_size_checked_before_resize(tmp_path):
    img, mask = tmp_path / "a.png", tmp_path / "a_segmentation.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(img)
    Image.fromarray(np.zeros((20, 31), np.uint8)).save(mask)
    cache = DecodeCache(tmp_path / "c", (16, 16))
    with pytest.raises(DataError, match=r"a_segmentation.png: mask size 31x20 != image size 30x20"):
        cache.load_pair(img, mask)
    assert not (tmp_path / "c").exists() or not list((tmp_path / "c").glob("*.npy"))
    with pytest.raises(DataError, match="not found"):
        cache.load_pair(tmp_path / "missing.jpg", mask)


def test_load_pair_function_and_defaults(tmp_path, pairs, monkeypatch):
    image_path, mask_path = pairs[2]
    direct = load_pair(image_path, mask_path, (30, 40))
    cache = DecodeCache(tmp_path, (30, 40))
    _assert_same(load_pair(image_path, mask_path, (30, 40), cache=cache), direct)
    with pytest.raises(ValueError, match="image_size"):
        load_pair(image_path, mask_path, (31, 40), cache=cache)
    monkeypatch.setenv("LESION_LIGHTNING_CACHE", str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env" and DecodeCache().cache_dir == tmp_path / "env"
    monkeypatch.delenv("LESION_LIGHTNING_CACHE")
    monkeypatch.chdir(tmp_path)
    assert default_cache_dir() == tmp_path / ".cache" / "lesion-lightning"
    assert cache.clear() == 1 and not list(tmp_path.glob("*.npy"))
