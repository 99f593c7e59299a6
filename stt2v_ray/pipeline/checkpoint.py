"""Base-chunk checkpoints in the output store, so a retried or resumed video continues
from its last finished chunk instead of chunk 0.

One safetensors file per chunk under the video's work prefix
(`<output>/_work/<id>/<key>/base-00003.safetensors`, `key` from the request and settings
digests, so files of other settings are never read). Each holds that chunk's new frames
(what the base stream yielded), the conditioning frames the next chunk needs and, for
chunk 0, the anchor frame: float32, so a restored chunk is bitwise the chunk once made.
Every file is written atomically (storage.atomic_write_bytes); never pickle.
"""
from __future__ import annotations

import logging
import posixpath

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from stt2v_ray.storage import atomic_write_bytes, filesystem, join_uri

log = logging.getLogger(__name__)


def chunk_name(index: int) -> str:
    return f"base-{index:05d}.safetensors"


class ChunkStore:
    """The base chunks of one video at `uri` (a folder URI)."""

    def __init__(self, uri: str, storage_options: dict | None = None):
        self.uri, self.storage_options = uri, storage_options

    def finished(self) -> int:
        """How many chunks from chunk 0 on are saved without a gap (a later one alone is useless)."""
        try:
            fs, path = filesystem(self.uri, self.storage_options)
            fs.invalidate_cache(path)
            names = {posixpath.basename(p) for p in fs.ls(path, detail=False)} if fs.exists(path) else set()
        except OSError as exc:  # an unreadable store only costs the saved work
            log.warning("cannot list base checkpoints at %s: %s", self.uri, exc)
            return 0
        n = 0
        while chunk_name(n) in names:
            n += 1
        return n

    def load(self, index: int) -> dict[str, torch.Tensor]:
        fs, path = filesystem(join_uri(self.uri, chunk_name(index)), self.storage_options)
        return load_tensors(fs.cat_file(path))

    def save(self, index: int, new: torch.Tensor, cond: torch.Tensor, anchor: torch.Tensor | None) -> None:
        """Best effort: a failed upload costs only the resume point, never the video."""
        tensors = {"new": new.contiguous(), "cond": cond.contiguous()}
        if anchor is not None:
            tensors["anchor"] = anchor.contiguous()
        try:
            atomic_write_bytes(join_uri(self.uri, chunk_name(index)), save_tensors(tensors), self.storage_options)
        except Exception as exc:  # noqa: BLE001 - any storage failure: keep rendering
            log.warning("could not save base chunk %d to %s: %s", index, self.uri, exc)
