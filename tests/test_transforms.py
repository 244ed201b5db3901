"""Crop/resize against PIL (the reference readers' implementation) and hand-computed boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cutslots.data.transforms import (
    center_box,
    center_crop,
    center_crop_size,
    crop_box,
    image_to_tensor,
    resize_image,
    resize_mask,
)

# PIL resamples in two uint8 passes (horizontal, then vertical), each rounding by up to half a
# level, so it differs from the exact float result by at most about one grey level.
PIL_TOLERANCE = 1.01 / 255


def _hand_image(height: int, width: int) -> np.ndarray:
    """Deterministic uint8 (H, W, 3) image with edges, gradients and noise."""
    rows, cols = np.mgrid[0:height, 0:width]
    image = np.stack([(rows * 7) % 256, (cols * 3) % 256, ((rows // 9 + cols // 13) % 2) * 255], -1)
    noise = np.random.default_rng(0).integers(0, 40, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def test_crop_sizes_and_boxes_from_the_format_note() -> None:
    assert center_crop_size(240, 320, 0.8) == 192  # ClevrTex
    assert center_crop_size(128, 128, 0.8) == 102  # MOVi-A 128
    assert center_box(240, 320, 192) == (64, 24, 256, 216)  # PIL box given by ClevrTex


def test_center_crop_matches_pil_crop() -> None:
    image = _hand_image(240, 320)
    ours = center_crop(torch.from_numpy(image).permute(2, 0, 1), 192).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(ours, np.array(Image.fromarray(image).crop((64, 24, 256, 216))))


def test_crop_box_is_clevr_row_col_slice() -> None:
    x = torch.arange(240 * 320).reshape(1, 240, 320)
    cropped = crop_box(x, (64, 29, 256, 221))  # Slot Attention's rows 29:221, cols 64:256
    assert cropped.shape == (1, 192, 192)
    np.testing.assert_array_equal(cropped[0].numpy(), x[0].numpy()[29:221, 64:256])


@pytest.mark.parametrize(
    "src,dst", [((192, 192), 128), ((102, 102), 128), ((7, 9), (4, 5)), ((240, 320), 64), ((5, 3), (11, 8))]
)
def test_resize_mask_equals_pil_nearest(src: tuple[int, int], dst) -> None:
    labels = np.random.default_rng(1).integers(0, 11, src).astype(np.uint8)
    out_hw = (dst, dst) if isinstance(dst, int) else dst
    expected = np.array(Image.fromarray(labels).resize(out_hw[::-1], Image.NEAREST))
    ours = resize_mask(torch.from_numpy(labels).long(), dst)
    assert ours.dtype == torch.int64
    np.testing.assert_array_equal(ours.numpy(), expected)


def test_resize_mask_by_hand() -> None:
    # 4 -> 2 takes source pixels floor((i + 0.5) * 2) = 1, 3; 2 -> 4 repeats each pixel twice.
    x = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]])
    assert resize_mask(x, 2).tolist() == [[5, 7], [13, 15]]
    assert resize_mask(torch.tensor([[1, 2], [3, 4]]), 4).tolist() == [
        [1, 1, 2, 2],
        [1, 1, 2, 2],
        [3, 3, 4, 4],
        [3, 3, 4, 4],
    ]


@pytest.mark.parametrize("src,dst", [((192, 192), 128), ((102, 102), 128), ((240, 320), 64), ((30, 40), (60, 50))])
def test_resize_image_close_to_pil_bilinear(src: tuple[int, int], dst) -> None:
    image = _hand_image(*src)
    out_hw = (dst, dst) if isinstance(dst, int) else dst
    expected = np.array(Image.fromarray(image).resize(out_hw[::-1], Image.BILINEAR)) / 255.0
    ours = resize_image(image_to_tensor(image), dst).permute(1, 2, 0).numpy()
    assert ours.shape == expected.shape
    assert np.abs(ours - expected).max() <= PIL_TOLERANCE
    assert ours.min() >= 0.0 and ours.max() <= 1.0


def test_resize_image_keeps_leading_dims_per_frame() -> None:
    frames = torch.rand(2, 3, 3, 20, 20)
    out = resize_image(frames, 10)
    assert out.shape == (2, 3, 3, 10, 10)
    torch.testing.assert_close(out[1, 2], resize_image(frames[1, 2], 10))
    flat = torch.full((3, 5, 7), 0.25)
    torch.testing.assert_close(resize_image(flat, (9, 4)), torch.full((3, 9, 4), 0.25))


def test_image_to_tensor_layout_and_scale() -> None:
    image = _hand_image(4, 5)
    x = image_to_tensor(image)
    assert x.shape == (3, 4, 5) and x.dtype == torch.float32
    assert x[2, 3, 1].item() == pytest.approx(image[3, 1, 2] / 255.0)


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(TypeError, match="floating point"):
        resize_image(torch.zeros(3, 4, 4, dtype=torch.uint8), 2)
    with pytest.raises(TypeError, match="integer"):
        resize_mask(torch.zeros(4, 4), 2)
    with pytest.raises(ValueError, match="size"):
        resize_mask(torch.zeros(4, 4, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="box"):
        crop_box(torch.zeros(1, 10, 10), (0, 0, 11, 5))
    with pytest.raises(ValueError, match="crop size"):
        center_box(10, 10, 11)
    with pytest.raises(ValueError, match="fraction"):
        center_crop_size(10, 10, 1.5)
    with pytest.raises(ValueError, match="uint8"):
        image_to_tensor(np.zeros((4, 4, 3), np.float32))
