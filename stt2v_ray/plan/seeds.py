"""Keyed random numbers: every draw is a function of (seed, purpose, ...), never of RNG state.

A key is the run's integer seed followed by any number of strings and integers that say
what the draw is for ("base-noise", chunk 3, step 12, ...). The key is hashed with
SHA-256, so two different keys give unrelated seeds and the same key gives the same
numbers in any process, on any shard, in any order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import torch

_SEED_MASK = (1 << 63) - 1


def _check_key(seed: int, purpose: tuple[str | int, ...]) -> None:
    # bool is an int subclass; reject it so True and 1 cannot silently alias.
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r} ({type(seed).__name__})")
    for part in purpose:
        if isinstance(part, bool) or not isinstance(part, (str, int)):
            raise TypeError(f"purpose parts must be str or int, got {part!r} ({type(part).__name__})")


def derive_seed(seed: int, *purpose: str | int) -> int:
    """63-bit seed for the key (seed, *purpose).

    The key is encoded as a JSON list, which keeps ints and strings apart ("1" vs 1) and
    keeps parts apart (("a", 1) vs ("a1",)); the first 8 bytes of its SHA-256, big-endian
    and masked to 63 bits, are the seed (a non-negative int that `manual_seed` accepts).
    """
    _check_key(seed, purpose)
    encoded = json.dumps([seed, *purpose], ensure_ascii=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(encoded).digest()
    return int.from_bytes(digest[:8], "big") & _SEED_MASK


def generator(seed: int, *purpose: str | int, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh `torch.Generator` seeded with `derive_seed(seed, *purpose)`."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed, *purpose))


def randn(
    shape: Sequence[int], seed: int, *purpose: str | int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Standard normal CPU tensor of `shape` drawn from the key (seed, *purpose)."""
    return torch.randn(tuple(shape), generator=generator(seed, *purpose), dtype=dtype)


def frame_noise(
    seed: int,
    purpose: str,
    frames: Sequence[int] | range,
    frame_shape: tuple[int, ...],
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Noise for the given frame indices, (len(frames), *frame_shape).

    Frame f's noise is keyed by (seed, purpose, f) alone, so frames 3..10 of the video get
    the same values whether they are asked for alone or sliced out of frames 0..20: the
    shards of a video agree on the noise of the frames they share.
    """
    frames = list(frames)
    for f in frames:
        if isinstance(f, bool) or not isinstance(f, int) or f < 0:
            raise ValueError(f"frame indices must be ints >= 0, got {f!r} in {frames}")
    if not frames:
        return torch.empty((0, *frame_shape), dtype=dtype)
    return torch.stack([randn(frame_shape, seed, purpose, f, dtype=dtype) for f in frames])
