"""PNG decoding, crop and resize for image and label tensors (no torchvision).

Boxes follow PIL's convention ``(left, top, right, bottom)`` with exclusive right/bottom, so
they can be compared with the reference readers, which crop with PIL.

- Images are resized bilinearly with ``align_corners=False`` and antialiasing, which matches
  PIL's ``Image.BILINEAR`` resize (PIL widens the filter support when downsampling; torch does
  the same with ``antialias=True``; on upsampling both reduce to plain bilinear).
- Integer label maps are resized by nearest neighbour sampling at pixel centres, source index
  ``floor((i + 0.5) * in / out)``, which is exactly PIL's ``Image.NEAREST``. Indexing instead
  of ``interpolate`` keeps any integer dtype exact.
"""

from __future__ import annotations

import io
from collections.abc import Collection
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cutslots.data.errors import DatasetFormatError

Box = tuple[int, int, int, int]


def _size_pair(size: int | tuple[int, int]) -> tuple[int, int]:
    """``size`` as ``(height, width)``; an int means a square."""
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(s, int) and s > 0 for s in pair):
        raise ValueError(f"size must be a positive int or (height, width) pair, got {size!r}")
    return pair[0], pair[1]


def center_crop_size(height: int, width: int, fraction: float) -> int:
    """Side of the centred square crop used by ClevrTex/MOVi readers: ``int(fraction * min)``."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    return int(fraction * min(height, width))


def center_box(height: int, width: int, size: int) -> Box:
    """PIL box of a centred ``size`` x ``size`` square, e.g. ``(64, 24, 256, 216)`` for 192 on
    a 240x320 image (ClevrTex)."""
    if not 0 < size <= min(height, width):
        raise ValueError(f"crop size must be in [1, {min(height, width)}], got {size}")
    return ((width - size) // 2, (height - size) // 2, (width + size) // 2, (height + size) // 2)


def crop_box(x: torch.Tensor, box: Box) -> torch.Tensor:
    """Crop the last two dims of ``x: (..., H, W)`` to the PIL ``box``; ``(..., bottom-top,
    right-left)``. A box outside the image is an error (PIL would pad with zeros)."""
    left, top, right, bottom = box
    height, width = x.shape[-2:]
    if not (0 <= left < right <= width and 0 <= top < bottom <= height):
        raise ValueError(f"box {box} is not inside an image of height {height}, width {width}")
    return x[..., top:bottom, left:right]


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Centred square crop of ``x: (..., H, W)`` to ``(..., size, size)``."""
    return crop_box(x, center_box(x.shape[-2], x.shape[-1], size))


def resize_image(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased resize of a float image ``x: (..., C, H, W)`` to ``(..., C, h, w)``.

    Weights are non-negative and sum to one, so values in [0, 1] stay in [0, 1].
    """
    if not x.is_floating_point():
        raise TypeError(f"resize_image expects a floating point image, got dtype {x.dtype}")
    if x.dim() < 3:
        raise ValueError(f"image must have shape (..., C, H, W), got {tuple(x.shape)}")
    out_hw = _size_pair(size)
    lead = x.shape[:-3]
    flat = x.reshape(-1, *x.shape[-3:])
    out = F.interpolate(flat, size=out_hw, mode="bilinear", align_corners=False, antialias=True)
    return out.reshape(*lead, *out.shape[-3:])


def resize_mask(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Nearest (pixel-centre) resize of a label map ``x: (..., H, W)`` to ``(..., h, w)``."""
    if x.is_floating_point() or x.is_complex():
        raise TypeError(f"resize_mask expects an integer or bool label map, got dtype {x.dtype}")
    if x.dim() < 2:
        raise ValueError(f"mask must have shape (..., H, W), got {tuple(x.shape)}")
    out_h, out_w = _size_pair(size)
    in_h, in_w = x.shape[-2:]
    # floor((i + 0.5) * in / out) in exact integer arithmetic.
    rows = (2 * torch.arange(out_h) + 1) * in_h // (2 * out_h)
    cols = (2 * torch.arange(out_w) + 1) * in_w // (2 * out_w)
    return x[..., rows[:, None], cols]


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 image ``(H, W, 3)`` -> float32 ``(3, H, W)`` in [0, 1]."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be a uint8 array of shape (H, W, 3), got {image.dtype} {image.shape}")
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)


def decode_png(source: bytes | Path, modes: Collection[str], where: str) -> np.ndarray:
    """Decode a PNG (file path or bytes) whose PIL mode is one of ``modes`` to an array
    (``(H, W)`` for L/P, ``(H, W, C)`` otherwise). ``where`` names the file/record in errors."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            img.load()  # decode now, so truncated data fails here and not later
            if img.format != "PNG":
                raise DatasetFormatError(f"{where}: expected a PNG, found {img.format}")
            if img.mode not in modes:
                raise DatasetFormatError(f"{where}: PNG mode {img.mode!r}, expected one of {sorted(modes)}")
            return np.array(img)
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        # OSError covers PIL's UnidentifiedImageError and "image file is truncated".
        raise DatasetFormatError(f"{where}: not a readable PNG ({e})") from e
