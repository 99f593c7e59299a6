"""Frame conversions: pipeline tensors (float32 [-1, 1], channels first) <-> uint8 images."""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from stt2v_ray.config import InputSettings
from stt2v_ray.storage import read_capped, redact_uri

_CAPS = InputSettings()


def to_uint8(frames: Tensor) -> np.ndarray:
    """(F,3,H,W) or (3,H,W) float in [-1, 1] -> (F,H,W,3) or (H,W,3) uint8, rounded half up."""
    if frames.ndim not in (3, 4) or frames.shape[-3] != 3:
        raise ValueError(f"to_uint8 expects (F,3,H,W) or (3,H,W) frames, got shape {tuple(frames.shape)}")
    # floor(x + 0.5) rounds half up everywhere; torch.round would round half to even.
    x = torch.floor((frames.detach().float().clamp(-1, 1) + 1) * 127.5 + 0.5)
    x = x.to(torch.uint8).cpu()
    return x.movedim(-3, -1).contiguous().numpy()


def from_uint8(images: np.ndarray) -> Tensor:
    """(F,H,W,3) or (H,W,3) uint8 -> (F,3,H,W) or (3,H,W) float32 in [-1, 1]."""
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or images.shape[-1] != 3:
        raise ValueError(
            f"from_uint8 expects uint8 (F,H,W,3) or (H,W,3) images, got {images.dtype} {images.shape}"
        )
    if not images.flags.writeable:  # e.g. np.asarray(PIL image); torch warns on read-only memory
        images = images.copy()
    x = torch.from_numpy(np.ascontiguousarray(images)).movedim(-1, -3).float()
    return (x / 127.5 - 1).contiguous()


def resize_frames(frames: Tensor, height: int, width: int) -> Tensor:
    """Bilinear resize of (F,3,H,W) or (3,H,W) frames; antialiased when shrinking."""
    if height <= 0 or width <= 0:
        raise ValueError(f"resize target must be positive, got height={height} width={width}")
    single = frames.ndim == 3
    x = frames.unsqueeze(0) if single else frames
    if tuple(x.shape[-2:]) == (height, width):
        return frames.clone()
    shrink = height < x.shape[-2] or width < x.shape[-1]
    x = F.interpolate(x.float(), size=(height, width), mode="bilinear", align_corners=False, antialias=shrink)
    x = x.clamp(-1, 1)
    return x[0] if single else x


def center_crop_resize(image: Tensor, height: int, width: int) -> Tensor:
    """Crop (…,3,H,W) to the target aspect ratio around the center, then resize to (height, width)."""
    h, w = image.shape[-2:]
    # Keep the largest window of aspect width/height; integer math avoids off-by-one drift.
    if w * height > h * width:  # too wide
        crop_h, crop_w = h, max(1, round(h * width / height))
    else:  # too tall (or exact)
        crop_h, crop_w = max(1, round(w * height / width)), w
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    cropped = image[..., top : top + crop_h, left : left + crop_w]
    return resize_frames(cropped, height, width)


def decode_image(data: bytes, max_pixels: int = _CAPS.max_image_pixels, name: str = "image") -> np.ndarray:
    """Image bytes -> (H,W,3) uint8, refusing more than max_pixels before anything is decoded."""
    with warnings.catch_warnings():
        # PIL's own decompression-bomb guard (a warning above Image.MAX_IMAGE_PIXELS) becomes an error.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as img:  # reads the header only
                width, height = img.size
                if width * height > max_pixels:
                    raise ValueError(f"{name}: {width}x{height} = {width * height} pixels, more than the limit of {max_pixels}")
                return np.asarray(img.convert("RGB"), dtype=np.uint8)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ValueError(f"{name}: refused as a decompression bomb: {error}") from None
        except (OSError, SyntaxError) as error:  # PIL: UnidentifiedImageError, truncated data, bad chunks
            raise ValueError(f"{name}: not a readable image: {error}") from None


def load_image(uri: str, storage_options: dict | None = None, max_bytes: int = _CAPS.max_image_bytes,
               max_pixels: int = _CAPS.max_image_pixels) -> Tensor:
    """Read an image file (local path or fsspec URL) as (3,H,W) float32 in [-1, 1], within the size caps."""
    data = read_capped(uri, storage_options, max_bytes)
    return from_uint8(decode_image(data, max_pixels, redact_uri(uri)))
