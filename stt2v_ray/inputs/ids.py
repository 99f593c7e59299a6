"""Duplicate id detection that stays small for datasets of millions of rows."""
from __future__ import annotations

import hashlib


class IdRegistry:
    """Remembers a 16-byte digest and the input index of every id seen, not the id text."""

    def __init__(self) -> None:
        self._first: dict[bytes, int] = {}

    def add(self, video_id: str, index: int) -> int | None:
        """Record `video_id` at `index`; return the index where it was first seen if it is a duplicate."""
        digest = hashlib.blake2b(video_id.encode("utf-8"), digest_size=16).digest()
        first = self._first.setdefault(digest, index)
        return None if first == index else first

    def __len__(self) -> int:
        return len(self._first)
