import json
import os
import struct
import zlib

import numpy as np
import PIL.Image
import pytest
import scipy.io
import tifffile
import torch

from deepprior.io import (ImageError, read_image, read_kernel, read_mask, to_numpy, to_tensor,
                          write_image, write_json_atomic)


def _levels(shape, bit_depth, seed=0):
    """Random pixels that lie exactly on the integer levels of the given depth."""
    top = 2 ** bit_depth - 1
    return np.random.default_rng(seed).integers(0, top + 1, shape) / top


def _smooth_rgb(h=48, w=64):
    y, x = np.mgrid[0:h, 0:w] / 32.0
    return np.stack([0.5 + 0.4 * np.sin(x), 0.5 + 0.4 * np.cos(y), 0.5 + 0.3 * np.sin(x + y)], axis=2)


# --------------------------------------------------------------------------- images

@pytest.mark.parametrize("bit_depth", [8, 16])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("with_alpha", [False, True])
@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_lossless_round_trip(tmp_path, ext, bit_depth, channels, with_alpha):
    pixels = _levels((7, 9, channels), bit_depth)
    alpha = _levels((7, 9), bit_depth, seed=1) if with_alpha else None
    path = tmp_path / f"im{ext}"
    write_image(path, pixels, bit_depth=bit_depth, alpha=alpha)
    image = read_image(path)
    top = 2 ** bit_depth - 1
    assert image.pixels.dtype == np.float32 and image.pixels.shape == (7, 9, channels)
    assert image.bit_depth == bit_depth and image.path == path
    assert np.array_equal(np.rint(image.pixels * top), np.rint(pixels * top))
    if with_alpha:
        assert np.array_equal(np.rint(image.alpha * top), np.rint(alpha * top))
    else:
        assert image.alpha is None


def test_gray_input_accepted_without_channel_axis_and_tensor_input(tmp_path):
    pixels = _levels((5, 6), 8)
    write_image(tmp_path / "a.png", pixels)
    write_image(tmp_path / "b.png", to_tensor(pixels))
    for name in ("a.png", "b.png"):
        assert np.allclose(read_image(tmp_path / name).pixels[:, :, 0], pixels, atol=1e-7)


def test_rounding_is_half_up_and_clipped(tmp_path):
    pixels = np.array([[-0.2, 0.5 / 255, 1.49 / 255, 1.51 / 255, 1.3]])
    write_image(tmp_path / "r.png", pixels)
    assert np.array_equal(np.asarray(PIL.Image.open(tmp_path / "r.png")), [[0, 1, 1, 2, 255]])


def test_png16_colour_is_a_valid_png_for_other_readers(tmp_path):
    pixels = _levels((6, 5, 3), 16)
    write_image(tmp_path / "c.png", pixels, bit_depth=16)
    # Pillow checks chunk CRCs and reads 16-bit colour truncated to the high byte
    eight_bit = np.asarray(PIL.Image.open(tmp_path / "c.png").convert("RGB"))
    assert np.array_equal(eight_bit, np.rint(pixels * 65535).astype(np.uint16) >> 8)


def _png16_with_every_filter(samples):
    """Reference encoder: row y uses PNG filter type y % 5 (None, Sub, Up, Average, Paeth)."""
    h, w, c = samples.shape
    bpp = 2 * c
    raw = samples.astype(">u2").view(np.uint8).reshape(h, w * bpp).astype(np.int64)
    lines = []
    for y in range(h):
        cur = raw[y]
        up = raw[y - 1] if y else np.zeros_like(cur)
        left = np.concatenate([np.zeros(bpp, np.int64), cur[:-bpp]])
        corner = np.concatenate([np.zeros(bpp, np.int64), up[:-bpp]])
        p = left + up - corner
        pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
        paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, corner))
        predictor = [0, left, up, (left + up) // 2, paeth][y % 5]
        lines.append(bytes([y % 5]) + ((cur - predictor) % 256).astype(np.uint8).tobytes())
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data
                                + struct.pack(">I", zlib.crc32(kind + data)))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"".join(lines))) + chunk(b"IEND", b""))


def test_png16_decoder_handles_all_filter_types(tmp_path):
    samples = np.random.default_rng(2).integers(0, 65536, (10, 7, 4)).astype(np.uint16)
    path = tmp_path / "filters.png"
    path.write_bytes(_png16_with_every_filter(samples))
    image = read_image(path)
    assert image.bit_depth == 16
    assert np.array_equal(np.rint(image.pixels * 65535), samples[..., :3])
    assert np.array_equal(np.rint(image.alpha * 65535), samples[..., 3])


def test_jpeg_round_trip_is_close(tmp_path):
    pixels = _smooth_rgb()
    write_image(tmp_path / "im.jpg", pixels)
    image = read_image(tmp_path / "im.jpg")
    assert image.pixels.shape == pixels.shape and image.bit_depth == 8
    assert np.sqrt(np.mean((image.pixels - pixels) ** 2)) < 0.01
    write_image(tmp_path / "gray.jpeg", pixels[:, :, :1])
    assert read_image(tmp_path / "gray.jpeg").pixels.shape == (48, 64, 1)


@pytest.mark.parametrize("channels", [1, 3])
def test_bmp_round_trip(tmp_path, channels):
    pixels = _levels((5, 7, channels), 8)
    write_image(tmp_path / "im.bmp", pixels)
    image = read_image(tmp_path / "im.bmp")
    assert image.pixels.shape == pixels.shape
    assert np.array_equal(np.rint(image.pixels * 255), np.rint(pixels * 255))


def test_palette_and_gray_alpha_files(tmp_path):
    index = np.array([[0, 1], [2, 1]], np.uint8)
    palette = PIL.Image.fromarray(index, "P")
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    palette.save(tmp_path / "p.png")
    image = read_image(tmp_path / "p.png")
    assert image.pixels.shape == (2, 2, 3) and image.alpha is None
    assert np.array_equal(image.pixels[0, 1], [0, 1, 0])
    la = np.dstack([np.full((3, 3), 200, np.uint8), np.full((3, 3), 17, np.uint8)])
    PIL.Image.fromarray(la, "LA").save(tmp_path / "la.png")
    image = read_image(tmp_path / "la.png")
    assert image.pixels.shape == (3, 3, 1) and np.allclose(image.alpha, 17 / 255)


def test_float_tiff(tmp_path):
    values = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    tifffile.imwrite(tmp_path / "f.tif", values)
    assert np.array_equal(read_image(tmp_path / "f.tif").pixels[:, :, 0], values)
    values[1, 2] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", values)
    with pytest.raises(ImageError, match="nan.tif.*NaN"):
        read_image(tmp_path / "nan.tif")


def test_unsupported_channel_count(tmp_path):
    tifffile.imwrite(tmp_path / "five.tif", np.zeros((4, 4, 5), np.uint8), photometric="minisblack",
                     planarconfig="contig")
    with pytest.raises(ImageError, match="five.tif.*channel count 5"):
        read_image(tmp_path / "five.tif")


def test_missing_and_corrupt_files_name_the_path(tmp_path):
    with pytest.raises(ImageError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "garbage.png").write_bytes(b"this is not an image")
    write_image(tmp_path / "good.png", _levels((16, 16, 3), 8))
    data = (tmp_path / "good.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[:len(data) // 2])
    for name in ("garbage.png", "truncated.png"):
        with pytest.raises(ImageError, match=name) as info:
            read_image(tmp_path / name)
        assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- writing safely

def test_failed_write_leaves_directory_unchanged(tmp_path, monkeypatch):
    pixels = _levels((4, 4, 3), 8)
    with pytest.raises(ImageError, match="unsupported extension"):
        write_image(tmp_path / "out.gif", pixels)
    with pytest.raises(ImageError, match="16-bit JPEG"):
        write_image(tmp_path / "out.jpg", pixels, bit_depth=16)
    with pytest.raises(ImageError, match="alpha"):
        write_image(tmp_path / "out.jpg", pixels, alpha=pixels[:, :, 0])
    assert list(tmp_path.iterdir()) == []

    write_image(tmp_path / "out.png", pixels)
    before = (tmp_path / "out.png").read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(ImageError, match="No space left"):
        write_image(tmp_path / "out.png", 1 - pixels)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]
    assert (tmp_path / "out.png").read_bytes() == before


def test_refuses_to_overwrite_the_input(tmp_path):
    (tmp_path / "sub").mkdir()
    source = tmp_path / "in.png"
    write_image(source, _levels((4, 4, 3), 8))
    before = source.read_bytes()
    image = read_image(source)
    for target in (source, tmp_path / "sub" / ".." / "in.png"):
        with pytest.raises(ImageError, match="refusing to overwrite the input"):
            write_image(target, 1 - image.pixels, overwrite_protect=image.path)
    assert source.read_bytes() == before
    write_image(tmp_path / "out.png", image.pixels, overwrite_protect=image.path)


def test_write_json_atomic(tmp_path):
    obj = {"psnr": np.float32(31.5), "n": np.int64(3), "values": np.arange(3), "nested": {"a": [1, 2]}}
    write_json_atomic(tmp_path / "r.json", obj)
    text = (tmp_path / "r.json").read_text()
    assert json.loads(text) == {"psnr": 31.5, "n": 3, "values": [0, 1, 2], "nested": {"a": [1, 2]}}
    assert text.startswith('{\n  "psnr"') and [p.name for p in tmp_path.iterdir()] == ["r.json"]


# --------------------------------------------------------------------------- tensors

def test_tensor_helpers():
    pixels = _levels((5, 6, 3), 8).astype(np.float32)
    t = to_tensor(pixels)
    assert t.shape == (1, 3, 5, 6) and t.dtype == torch.float32
    assert torch.equal(t[0, 2], torch.from_numpy(pixels[:, :, 2]))
    assert np.array_equal(to_numpy(t), pixels) and np.array_equal(to_numpy(t[0]), pixels)
    assert to_tensor(pixels[:, :, 0]).shape == (1, 1, 5, 6)
    with pytest.raises(ValueError):
        to_numpy(torch.zeros(2, 3, 4, 4))


# --------------------------------------------------------------------------- kernels

KERNEL = np.array([[0.0, 1.0, 2.0], [0.0, 3.0, 0.0], [0.0, 0.0, 4.0]])  # asymmetric: orientation shows


def _check_kernel(k):
    assert k.dtype == np.float32 and k.shape == (3, 3)
    assert k.sum() == pytest.approx(1.0, abs=1e-6)
    assert np.allclose(k, KERNEL / KERNEL.sum(), atol=1e-6)


def test_kernel_npy_txt_csv(tmp_path):
    np.save(tmp_path / "k.npy", KERNEL)
    np.savetxt(tmp_path / "k.txt", KERNEL)
    np.savetxt(tmp_path / "k.csv", KERNEL, delimiter=",")
    for name in ("k.npy", "k.txt", "k.csv"):
        _check_kernel(read_kernel(tmp_path / name))


def test_kernel_from_gray_image(tmp_path):
    PIL.Image.fromarray((KERNEL * 50).astype(np.uint8), "L").save(tmp_path / "k.png")
    _check_kernel(read_kernel(tmp_path / "k.png"))


def test_kernel_mat(tmp_path):
    scipy.io.savemat(tmp_path / "one.mat", {"kernel": KERNEL, "sigma": 2.0})
    _check_kernel(read_kernel(tmp_path / "one.mat"))  # the 1x1 scalar is not a candidate
    scipy.io.savemat(tmp_path / "two.mat", {"f": KERNEL, "g": KERNEL.T})
    with pytest.raises(ImageError, match=r"two.mat.*variables: f \(3, 3\), g \(3, 3\)"):
        read_kernel(tmp_path / "two.mat")
    _check_kernel(read_kernel(tmp_path / "two.mat", variable="f"))


def test_kernel_negative_entries_warn_and_clip(tmp_path):
    kernel = KERNEL.copy()
    kernel[0, 0] = -0.5  # 0.5 of 10.5 absolute mass
    np.save(tmp_path / "neg.npy", kernel)
    with pytest.warns(UserWarning, match=r"negative entries sum to -0.5 \(4.76% of the absolute mass\)"):
        k = read_kernel(tmp_path / "neg.npy")
    _check_kernel(k)


@pytest.mark.parametrize("bad, message", [
    (np.array([[1.0, np.nan]]), "NaN"),
    (np.zeros((2, 2)), "no positive mass"),
    (np.ones((2, 2, 2)), "2-D"),
    (np.ones((0, 3)), "2-D"),
])
def test_kernel_invalid(tmp_path, bad, message):
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(ImageError, match=message):
        read_kernel(tmp_path / "bad.npy")


# --------------------------------------------------------------------------- masks

def test_mask_threshold_and_size(tmp_path):
    gray = np.array([[0.0, 0.2, 0.49], [0.51, 0.9, 1.0]])
    write_image(tmp_path / "m.png", gray)
    assert np.array_equal(read_mask(tmp_path / "m.png"), [[0, 0, 0], [1, 1, 1]])
    write_image(tmp_path / "rgb.png", np.dstack([gray, gray, gray]))
    mask = read_mask(tmp_path / "rgb.png", shape=(2, 3, 3))
    assert mask.dtype == np.float32 and np.array_equal(mask, [[0, 0, 0], [1, 1, 1]])
    with pytest.raises(ImageError, match="mask .*m.png is 2x3 but the image is 3x2"):
        read_mask(tmp_path / "m.png", shape=(3, 2))
