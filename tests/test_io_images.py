"""flashvsr.io.images: natural order, upright 8-bit RGB reading, sequences, writing with ICC."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flashvsr.io import MediaError, open_reader, probe
from flashvsr.io.images import ImageOutputSpec, natural_key, read_image, save_image

from .media_helpers import moving_pattern, write_images


def test_natural_order_puts_frame2_before_frame10():
    names = ["frame10.png", "frame2.png", "Frame1.png", "frame002b.png", "frame100.png"]
    ordered = [p.name for p in sorted(map(Path, names), key=natural_key)]
    assert ordered == ["Frame1.png", "frame2.png", "frame002b.png", "frame10.png", "frame100.png"]


def test_folder_is_a_sequence_in_natural_order(tmp_path):
    write_images(tmp_path / "seq", 12, 40, 30, names=[f"f{i}" for i in range(12)])
    (tmp_path / "seq" / "notes.txt").write_text("not an image")
    (tmp_path / "seq" / ".hidden.png").write_bytes(b"")
    info = probe(tmp_path / "seq")
    assert (info.kind, info.width, info.height, info.frames) == ("image sequence", 40, 30, 12)
    reader = open_reader(info)
    assert [p.name for p in reader.paths] == [f"f{i}.png" for i in range(12)]
    frames = list(reader.frames())
    assert [f.pts for f in frames] == list(range(12))
    np.testing.assert_array_equal(frames[10].image, moving_pattern(10, 40, 30))


def test_sequence_with_mixed_sizes_is_refused_with_the_file_named(tmp_path):
    write_images(tmp_path / "seq", 3, 40, 30)
    Image.new("RGB", (41, 30)).save(tmp_path / "seq" / "frame3.png")
    with pytest.raises(MediaError, match=r"frame3\.png.*41×30.*40×30"):
        probe(tmp_path / "seq")


def test_empty_folder_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MediaError, match="no images"):
        probe(tmp_path / "empty")


def test_exif_orientation_is_applied(tmp_path):
    pixels = moving_pattern(0, 40, 20)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90° clockwise
    Image.fromarray(pixels).save(tmp_path / "photo.jpg", exif=exif, quality=100)
    info = probe(tmp_path / "photo.jpg")
    assert (info.width, info.height) == (20, 40)
    image, _ = read_image(tmp_path / "photo.jpg")
    assert image.shape == (40, 20, 3)
    np.testing.assert_allclose(image.astype(float), np.rot90(pixels, -1).astype(float), atol=12)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "I;16"])
def test_any_mode_reads_as_rgb8(tmp_path, mode):
    gray = (np.arange(20 * 30).reshape(20, 30) % 256).astype(np.uint8)
    if mode == "I;16":
        img = Image.fromarray(gray.astype(np.uint16) * 257)  # a 16-bit greyscale image
    else:
        img = Image.fromarray(gray, "L").convert(mode)
    img.save(tmp_path / "x.png")
    image, _ = read_image(tmp_path / "x.png")
    assert image.shape == (20, 30, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[..., 0], gray)


def test_not_an_image_gives_a_clear_error(tmp_path):
    (tmp_path / "fake.png").write_bytes(b"\x89PNG but not really")
    with pytest.raises(MediaError, match="fake.png: not an image"):
        probe(tmp_path / "fake.png")


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif", ".bmp"])
def test_save_image_formats_and_icc(tmp_path, suffix):
    icc = Image.open(_srgb_png(tmp_path)).info.get("icc_profile")
    image = moving_pattern(3, 32, 24)
    save_image(image, tmp_path / f"out{suffix}", ImageOutputSpec(suffix, quality=90, icc_profile=icc))
    with Image.open(tmp_path / f"out{suffix}") as saved:
        assert saved.size == (32, 24)
        if suffix != ".bmp":
            assert saved.info.get("icc_profile") == icc
        if suffix in (".png", ".tif", ".bmp"):
            np.testing.assert_array_equal(np.asarray(saved.convert("RGB")), image)


def _srgb_png(folder: Path) -> Path:
    from PIL import ImageCms

    path = folder / "srgb.png"
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.new("RGB", (4, 4)).save(path, icc_profile=profile)
    return path
