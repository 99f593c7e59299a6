"""What a model needs to know about one video: the request, with its image loaded."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class GenerationJob:
    id: str
    prompt: str
    negative_prompt: str
    seed: int
    # (3, H, W) float32 in [-1, 1]; None for text-to-video.
    image: torch.Tensor | None = None

    @property
    def is_image_to_video(self) -> bool:
        return self.image is not None
