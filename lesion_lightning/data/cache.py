"""Decode-once cache: decode and resize each (image, mask) pair once, keep the arrays on disk.

Dermoscopy originals reach 6000x4000 JPEG; decoding one takes longer than a training step on it
at 256x256. The cache stores the resized pair as one uncompressed, memory-mappable `.npy` file:
a (4H, W) uint8 array whose first 3H rows are the (H, W, 3) image's bytes and whose last H rows are
the mask (3H rows when there is no mask). One file read, and both arrays come back as contiguous
views of it (no copy: copying dominated the read time). A hit returns exactly the arrays a fresh
decode + resize gives (the stored bytes are that result); any change to the source files (size or
modification time) or to the resize settings changes the key, so stale entries are never read.

Writes are atomic (unique temporary file, then `os.replace`), so DataLoader workers and DDP ranks
filling the same cache concurrently never see a half-written file; two writers of one key write
identical bytes, and the last rename wins.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from pathlib import Path

import cv2
import numpy as np

from lesion_lightning.data.io import load_image, load_mask
from lesion_lightning.data.sizes import parse_size

__all__ = ["CACHE_FORMAT_VERSION", "DecodeCache", "decode_pair", "default_cache_dir", "load_pair", "resize_pair"]

# Bump when the stored layout or the decode/resize code changes results: old entries are then ignored.
CACHE_FORMAT_VERSION = 2

# Image: area averaging when shrinking (no aliasing), bilinear when enlarging (INTER_AREA degrades to
# nearest-like blocks there). Mask: nearest-neighbour with exact pixel-centre alignment (cv2's plain
# INTER_NEAREST is shifted by half a pixel relative to INTER_AREA), so it stays binary and aligned.
IMAGE_SHRINK, IMAGE_ENLARGE, MASK_INTERP = cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_NEAREST_EXACT
_RESIZE_SETTINGS = "image:area-shrink/linear-enlarge;mask:nearest-exact"


def default_cache_dir() -> Path:
    """`$LESION_LIGHTNING_CACHE`, else `.cache/lesion-lightning` under the current directory."""
    env = os.environ.get("LESION_LIGHTNING_CACHE")
    return Path(env).expanduser() if env else Path.cwd() / ".cache" / "lesion-lightning"


def _check_size(image_size: tuple[int, int] | None) -> tuple[int, int] | None:
    return None if image_size is None else parse_size(tuple(image_size))


def resize_pair(
    image: np.ndarray, mask: np.ndarray | None, image_size: tuple[int, int] | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Resize to image_size = (H, W) with the cache's settings; None keeps the original size."""
    size = _check_size(image_size)
    if size is None or tuple(image.shape[:2]) == size:
        return image, mask
    h, w = size
    shrink = h <= image.shape[0] and w <= image.shape[1]
    image = cv2.resize(image, (w, h), interpolation=IMAGE_SHRINK if shrink else IMAGE_ENLARGE)
    if mask is not None:
        mask = cv2.resize(mask, (w, h), interpolation=MASK_INTERP)
    return image, mask


def decode_pair(
    image_path: str | Path, mask_path: str | Path | None, image_size: tuple[int, int] | None = None,
    mask_encoding: str = "auto",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode (and validate) an image and its mask, then resize; no cache involved.

    The mask size is checked against the image before any resizing (DataError naming the mask).
    """
    image = load_image(image_path)
    mask = None if mask_path is None else load_mask(mask_path, expected_hw=image.shape[:2], encoding=mask_encoding)
    return resize_pair(image, mask, image_size)


def _file_identity(path: Path) -> list:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


class DecodeCache:
    """Disk cache of decoded, resized (image, mask) pairs; see the module docstring.

    `hits` and `misses` count this process's lookups (each DataLoader worker has its own).
    """

    def __init__(self, cache_dir: str | Path | None = None, image_size: tuple[int, int] | None = None) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.image_size = _check_size(image_size)
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"DecodeCache({str(self.cache_dir)!r}, image_size={self.image_size})"

    def key(self, image_path: str | Path, mask_path: str | Path | None, mask_encoding: str = "auto") -> str:
        """sha1 over the source files' identity (resolved path, size, mtime_ns), the mask encoding and the
        resize settings."""
        image_path = Path(image_path)
        parts: dict = {
            "version": CACHE_FORMAT_VERSION,
            "image": _file_identity(image_path),
            "mask": None if mask_path is None else _file_identity(Path(mask_path)),
            "image_size": self.image_size,
            "resize": _RESIZE_SETTINGS,
        }
        if mask_encoding != "auto":  # "auto" keys stay those of the entries written before encodings existed
            parts["mask_encoding"] = mask_encoding
        return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def entry_path(self, image_path: str | Path, mask_path: str | Path | None, mask_encoding: str = "auto") -> Path:
        return self.cache_dir / f"{Path(image_path).stem}-{self.key(image_path, mask_path, mask_encoding)}.npy"

    def load_pair(
        self, image_path: str | Path, mask_path: str | Path | None, mask_encoding: str = "auto"
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(image uint8 (h, w, 3), mask uint8 (h, w) in {0, 1} or None), from the cache when possible.

        A missing source file raises the same DataError as a direct decode.
        """
        try:
            entry = self.entry_path(image_path, mask_path, mask_encoding)
        except FileNotFoundError:  # decode_pair raises the DataError naming the file
            return decode_pair(image_path, mask_path, self.image_size, mask_encoding)
        stored = self._read(entry, with_mask=mask_path is not None)
        if stored is not None:
            self.hits += 1
            return stored
        self.misses += 1
        image, mask = decode_pair(image_path, mask_path, self.image_size, mask_encoding)
        self._write(entry, image, mask)
        return image, mask

    def _read(self, entry: Path, with_mask: bool) -> tuple[np.ndarray, np.ndarray | None] | None:
        try:
            arr = np.load(entry, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None  # absent, or unreadable (e.g. foreign file): decode again and overwrite
        blocks = 4 if with_mask else 3
        if arr.dtype != np.uint8 or arr.ndim != 2 or arr.shape[0] % blocks or not arr.flags.c_contiguous:
            return None
        h, w = arr.shape[0] // blocks, arr.shape[1]
        if h == 0 or (self.image_size is not None and (h, w) != self.image_size):
            return None
        image = arr[: 3 * h].reshape(h, w, 3)
        mask = arr[3 * h :] if with_mask else None
        return image, mask

    def _write(self, entry: Path, image: np.ndarray, mask: np.ndarray | None) -> None:
        h, w = image.shape[:2]
        blocks = [np.ascontiguousarray(image).reshape(3 * h, w)]
        if mask is not None:
            blocks.append(mask)
        tmp = entry.with_name(f".{entry.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                np.save(f, np.concatenate(blocks, axis=0), allow_pickle=False)
            os.replace(tmp, entry)
        except OSError:
            # A read-only or full cache folder must not stop training: the decoded pair is still returned.
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    def clear(self) -> int:
        """Delete this cache folder's entries (all image sizes); returns how many files were removed."""
        removed = 0
        if self.cache_dir.is_dir():
            for path in self.cache_dir.glob("*.npy"):
                path.unlink(missing_ok=True)
                removed += 1
            for path in self.cache_dir.glob(".*.tmp"):
                path.unlink(missing_ok=True)
        return removed


def load_pair(
    image_path: str | Path,
    mask_path: str | Path | None,
    image_size: tuple[int, int] | None = None,
    cache: DecodeCache | None = None,
    mask_encoding: str = "auto",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode + resize a pair, through `cache` when given (its image_size must agree)."""
    if cache is None:
        return decode_pair(image_path, mask_path, image_size, mask_encoding)
    if image_size is not None and _check_size(image_size) != cache.image_size:
        raise ValueError(f"image_size {tuple(image_size)} differs from the cache's image_size {cache.image_size}")
    return cache.load_pair(image_path, mask_path, mask_encoding)
