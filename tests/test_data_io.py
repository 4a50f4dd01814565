"""Image/mask decoding: every encoding the datasets use, conversions with warnings, clear errors."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from lesion_lightning.data.errors import DataError, ImageConversionWarning
from lesion_lightning.data.io import load_image, load_mask, read_image_size


def _rgb(h: int = 12, w: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(im: Image.Image, path: Path, **kw) -> Path:
    im.save(path, **kw)
    return path


# --- real samples -----------------------------------------------------------------------------


def test_real_ham10000_image_and_mask(ham10000_root):
    image_path = next((ham10000_root / "HAM10000_images_part_1").glob("*.jpg"))
    mask_path = ham10000_root / "HAM10000_segmentations_lesion_tschandl" / f"{image_path.stem}_segmentation.png"
    image = load_image(image_path)
    assert image.shape == (450, 600, 3) and image.dtype == np.uint8 and image.flags.writeable
    mask = load_mask(mask_path, expected_hw=image.shape[:2])
    expected = np.asarray(Image.open(mask_path).convert("L")) > 127
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    np.testing.assert_array_equal(mask, expected)
    assert 0 < mask.mean() < 1


def test_real_ph2_one_bit_bmp_masks(ph2_root):
    masks = sorted(ph2_root.rglob("*_lesion.bmp"))
    assert masks
    for mask_path in masks[:4]:
        assert Image.open(mask_path).mode == "1"
        image_path = mask_path.parent.parent / f"{mask_path.parent.parent.name}_Dermoscopic_Image" / (
            f"{mask_path.parent.parent.name}.bmp")
        image = load_image(image_path)
        mask = load_mask(mask_path, expected_hw=image.shape[:2])
        np.testing.assert_array_equal(mask, np.asarray(Image.open(mask_path).convert("L")) > 127)
        assert 0.01 < mask.mean() < 0.99
        assert read_image_size(mask_path) == image.shape[:2]


def test_real_isic2017_fast_jpeg_path_is_bit_identical_to_pillow(isic2017_root):
    path = sorted((isic2017_root / "ISIC-2017_Test_v2_Data").glob("*.jpg"))[0]
    fast = load_image(path)  # complete RGB JPEG: OpenCV path
    reference = np.asarray(Image.open(path).convert("RGB"))
    assert fast.shape == reference.shape == (*read_image_size(path), 3)
    np.testing.assert_array_equal(fast, reference)


# --- conversions --------------------------------------------------------------------------------


def _load_warns(path: Path, fragment: str) -> np.ndarray:
    with pytest.warns(ImageConversionWarning, match=fragment) as record:
        out = load_image(path)
    assert any(str(path) in str(w.message) for w in record)
    return out


def test_grayscale_is_replicated_with_warning(tmp_path):
    gray = _rgb()[..., 0]
    path = _save(Image.fromarray(gray), tmp_path / "gray.png")
    out = _load_warns(path, "grayscale")
    assert out.shape == (12, 16, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_rgba_drops_alpha_with_warning(tmp_path):
    rgba = np.concatenate([_rgb(), np.full((12, 16, 1), 7, np.uint8)], axis=2)
    path = _save(Image.fromarray(rgba), tmp_path / "rgba.png")
    out = _load_warns(path, "alpha")
    np.testing.assert_array_equal(out, rgba[..., :3])  # colour kept as stored, not premultiplied


def test_palette_image_converted(tmp_path):
    rgb = _rgb()
    pal = Image.fromarray(rgb).quantize(colors=16)
    path = _save(pal, tmp_path / "pal.png")
    out = _load_warns(path, "palette")
    np.testing.assert_array_equal(out, np.asarray(pal.convert("RGB")))


def test_sixteen_bit_png_scaled_to_eight_bits(tmp_path):
    levels = np.array([[0, 257, 65535, 32896]], dtype=np.uint16).repeat(3, axis=0)
    path = tmp_path / "deep.png"
    Image.fromarray(levels).save(path)
    assert Image.open(path).mode.startswith("I")
    out = _load_warns(path, "16-bit")
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 255, 128])
    assert (out[..., 0] == out[..., 2]).all()


def test_cmyk_jpeg_converted(tmp_path):
    path = _save(Image.fromarray(_rgb()).convert("CMYK"), tmp_path / "cmyk.jpg", quality=95)
    out = _load_warns(path, "CMYK")
    assert out.shape == (12, 16, 3)


def test_plain_rgb_gives_no_warning(tmp_path):
    rgb = _rgb()
    path = _save(Image.fromarray(rgb), tmp_path / "rgb.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(load_image(path), rgb)


def test_exif_orientation_is_not_applied(tmp_path):
    rgb = _rgb(10, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = _save(Image.fromarray(rgb), tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    out = load_image(path)
    assert out.shape == (10, 30, 3)  # raw pixel grid, the one the dataset masks are drawn on
    np.testing.assert_array_equal(out, np.asarray(Image.open(path).convert("RGB")))


# --- errors -------------------------------------------------------------------------------------


def _truncated_jpeg(tmp_path: Path) -> Path:
    buf = io.BytesIO()
    Image.fromarray(_rgb(64, 64)).save(buf, format="JPEG", quality=95)
    path = tmp_path / "ISIC_0000001.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


def test_truncated_jpeg_raises_naming_the_file(tmp_path):
    path = _truncated_jpeg(tmp_path)
    with pytest.raises(DataError, match="truncated") as err:
        load_image(path)
    assert err.value.file == str(path) and "ISIC_0000001.jpg" in str(err.value)


def test_truncated_jpeg_raises_even_if_pillow_was_relaxed_globally(tmp_path, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(DataError, match="truncated"):
        load_image(_truncated_jpeg(tmp_path))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's setting is restored


def test_truncated_png_and_garbage_raise(tmp_path):
    png = tmp_path / "cut.png"
    Image.fromarray(_rgb(64, 64)).save(png)
    png.write_bytes(png.read_bytes()[:200])
    with pytest.raises(DataError, match="cut.png"):
        load_image(png)
    junk = tmp_path / "junk.jpg"
    junk.write_text("not an image")
    with pytest.raises(DataError, match="unreadable"):
        load_image(junk)
    with pytest.raises(DataError, match="junk.jpg"):
        read_image_size(junk)
    with pytest.raises(DataError, match="not found"):
        load_image(tmp_path / "missing.jpg")


# --- masks --------------------------------------------------------------------------------------


def _mask_pattern() -> np.ndarray:
    m = np.zeros((8, 10), bool)
    m[2:6, 3:8] = True
    return m


@pytest.mark.parametrize(
    "encoding", ["zero-one", "zero-255", "one-bit-bmp", "palette", "palette-red", "sixteen-bit", "rgb"]
)
def test_two_valued_mask_encodings(tmp_path, encoding):
    m = _mask_pattern()
    if encoding == "zero-one":
        im = Image.fromarray(m.astype(np.uint8))
    elif encoding == "zero-255":
        im = Image.fromarray(m.astype(np.uint8) * 255)
    elif encoding == "one-bit-bmp":
        im = Image.fromarray(m.astype(np.uint8) * 255).convert("1", dither=Image.Dither.NONE)
    elif encoding in ("palette", "palette-red"):
        im = Image.fromarray(m.astype(np.uint8), mode="P")
        im.putpalette([0, 0, 0, 255, 255, 255] if encoding == "palette" else [0, 0, 0, 128, 0, 0])
    elif encoding == "sixteen-bit":
        im = Image.fromarray(m.astype(np.uint16) * 65535)
    else:
        im = Image.fromarray(np.repeat(m[..., None].astype(np.uint8) * 255, 3, axis=2))
    path = _save(im, tmp_path / ("mask.bmp" if encoding == "one-bit-bmp" else "mask.png"))
    out = load_mask(path, expected_hw=(8, 10))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, m.astype(np.uint8))


def test_constant_masks(tmp_path):
    empty = _save(Image.fromarray(np.zeros((4, 5), np.uint8)), tmp_path / "empty.png")
    full = _save(Image.fromarray(np.full((4, 5), 255, np.uint8)), tmp_path / "full.png")
    assert load_mask(empty).sum() == 0
    assert load_mask(full).sum() == 20


def test_non_binary_mask_raises(tmp_path):
    m = np.zeros((6, 6), np.uint8)
    m[1:3] = 128
    m[3:5] = 255
    path = _save(Image.fromarray(m), tmp_path / "grey_segmentation.png")
    with pytest.raises(DataError, match="mask not binary: 3 distinct values") as err:
        load_mask(path)
    assert err.value.file == str(path)
    jpeg = _save(Image.fromarray(_mask_pattern().astype(np.uint8) * 255), tmp_path / "lossy.jpg", quality=50)
    with pytest.raises(DataError, match="mask not binary"):
        load_mask(jpeg)


def test_mask_size_mismatch_names_both_sizes(tmp_path):
    path = _save(Image.fromarray(_mask_pattern().astype(np.uint8) * 255), tmp_path / "m.png")
    with pytest.raises(DataError, match=r"mask size 10x8 != image size 12x8") as err:
        load_mask(path, expected_hw=(8, 12))
    assert err.value.file == str(path)


def test_read_image_size_from_header(tmp_path):
    path = _save(Image.fromarray(_rgb(7, 9)), tmp_path / "x.jpg")
    assert read_image_size(path) == (7, 9)


def test_zero_one_mask_that_is_lesion_everywhere_reads_as_all_lesion(tmp_path):
    full01 = _save(Image.fromarray(np.ones((4, 5), np.uint8)), tmp_path / "full01.png")
    assert load_mask(full01).sum() == 20  # auto: a file holding only 0/1 values is a 0/1 file
    assert load_mask(full01, encoding="0/1").sum() == 20
    assert load_mask(full01, encoding="0/255").sum() == 0  # declared 0/255: 1 is background
    full255 = _save(Image.fromarray(np.full((4, 5), 255, np.uint8)), tmp_path / "full255.png")
    with pytest.raises(DataError, match="not 0/1"):
        load_mask(full255, encoding="0/1")
    with pytest.raises(ValueError, match="mask encoding"):
        load_mask(full01, encoding="0-1")


def test_jpeg_mask_with_threshold_encoding(tmp_path):
    m = np.zeros((40, 48), np.uint8)
    m[8:30, 10:40] = 255
    jpeg = _save(Image.fromarray(m), tmp_path / "mask.jpg", quality=60)
    assert len(np.unique(np.asarray(Image.open(jpeg)))) > 2  # compression noise around both levels
    with pytest.raises(DataError, match="mask not binary"):
        load_mask(jpeg)
    np.testing.assert_array_equal(load_mask(jpeg, encoding="threshold"), (m > 127).astype(np.uint8))
