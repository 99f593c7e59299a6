"""Memory-optimised mode of the real presets (`memory.*` settings; what the original's --use_memopt does).

Each knob, and its expected effect on a GPU (the original's README: 60 GB -> 24 GB for 200
frames at ~50% more time with all of them on):
- `memory.dtype` float16/bfloat16: weights and activations in half precision. Halves the
  weights' memory (SVD-XT UNet + CAM: ~2.3 B parameters, 9.2 GB fp32 -> 4.6 GB) and most
  activations; faster on tensor cores. Sampler math stays float32 (inputs are cast at each
  model's boundary, outputs cast back), so only the networks round.
- `memory.cpu_offload`: the VAE and the image/text encoders live on the CPU and move to the
  GPU only for their call (the original keeps the VAE and the CLIP image encoder on the CPU
  until needed). Saves their weights' memory (~0.1 B + ~0.6 B params) at the cost of a
  host-to-device copy per call.
- `memory.ff_chunk_size` N > 0: every transformer block's feed-forward runs on N slices of its
  tokens one after the other (the original: 2 for the UNet and the CAM, 4 for the enhancer).
  The FF's 4x-wide hidden activation shrinks N-fold; the result is equal up to rounding.
- `memory.vae_decode_chunk`: frames the temporal VAE decodes at once (original 8, 4 in memopt).
  Decoder activations scale with it. The temporal decoder mixes frames within a call, so the
  value changes the pixels slightly; it is part of the run's settings for reproducibility.
- `memory.sequential_cfg`: the unconditional and conditional CFG halves run as two forwards of
  batch 1 instead of one of batch 2: about half the activation memory, a little slower.
  Equal to the batched forward up to rounding.
"""
from __future__ import annotations

import contextlib
import types

import torch
from torch import Tensor, nn

from stt2v_ray.config import MemorySettings

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def torch_dtype(settings: MemorySettings) -> torch.dtype:
    return DTYPES[settings.dtype]


def chunk_feed_forwards(model: nn.Module, num_chunks: int) -> int:
    """Make every transformer block's `ff` run on `num_chunks` slices of its tokens; returns how many FFs."""
    if num_chunks < 1:
        raise ValueError(f"chunk_feed_forwards: num_chunks must be >= 1, got {num_chunks}")
    count = 0
    for module in model.modules():
        for name in ("ff", "ff_in"):
            ff = getattr(module, name, None)
            if isinstance(ff, nn.Module) and not getattr(ff, "_stt2v_chunks", None):
                ff._stt2v_chunks = num_chunks
                ff.forward = types.MethodType(_chunked_forward(type(ff).forward), ff)  # instance override: keys unchanged
                count += 1
    return count


def _chunked_forward(forward):
    def run(self, hidden_states: Tensor, *args, **kwargs) -> Tensor:
        n = self._stt2v_chunks
        dim = 1 if hidden_states.ndim == 3 and hidden_states.shape[1] >= n else 0  # tokens, else batch
        if n == 1 or hidden_states.shape[dim] < n:
            return forward(self, hidden_states, *args, **kwargs)
        return torch.cat([forward(self, part, *args, **kwargs) for part in hidden_states.chunk(n, dim=dim)], dim=dim)

    return run


class Offloaded(nn.Module):
    """A model kept on `home` and moved to `device` only for each call (memory.cpu_offload)."""

    def __init__(self, model: nn.Module, device: torch.device, offload: bool):
        super().__init__()
        self.model, self.device, self.offload = model, torch.device(device), offload
        self.model.to("cpu" if offload else self.device)

    @property
    def config(self):
        return self.model.config

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def call(self, method: str, *args, **kwargs):
        if self.offload:
            self.model.to(self.device)
        try:
            return getattr(self.model, method)(*args, **kwargs)
        finally:
            if self.offload:
                self.model.to("cpu")


class MemoryVAE(Offloaded):
    """The SVD temporal VAE behind the I2VGenerator's calls: float32 in/out, chunked decode."""

    def __init__(self, vae: nn.Module, device, offload: bool, decode_chunk: int):
        super().__init__(vae, device, offload)
        self.decode_chunk = decode_chunk

    def encode(self, x: Tensor):
        out = self.call("encode", x.to(self.device, self.dtype))
        return types.SimpleNamespace(latent_dist=_Float32Dist(out.latent_dist))

    def decode(self, z: Tensor, num_frames: int):
        frames = []
        for part in z.split(self.decode_chunk):  # (n, c, h, w) frames, each call a temporal window
            frames.append(self.call("decode", part.to(self.device, self.dtype), num_frames=part.shape[0]).sample.float())
        return types.SimpleNamespace(sample=torch.cat(frames))


class _Float32Dist:
    def __init__(self, dist):
        self.dist = dist

    def mode(self) -> Tensor:
        return self.dist.mode().float()

    @property
    def mean(self) -> Tensor:
        return self.dist.mean.float()


class MemoryImageEncoder(Offloaded):
    """CLIP image encoder: float32 in/out, optionally offloaded."""

    def forward(self, pixel_values: Tensor):
        out = self.call("__call__", pixel_values=pixel_values.to(self.device, self.dtype))
        return types.SimpleNamespace(image_embeds=out.image_embeds.float())


class MemoryUNet(nn.Module):
    """The streaming UNet with dtype casts at its boundary and optional sequential CFG halves."""

    def __init__(self, streaming: nn.Module, sequential_cfg: bool):
        super().__init__()
        self.streaming, self.sequential_cfg = streaming, sequential_cfg

    @property
    def unet(self):  # what I2VGenerator reads the config from
        return self.streaming.unet

    def forward(
        self, sample: Tensor, timestep, encoder_hidden_states: Tensor, added_time_ids: Tensor, cond: Tensor | None = None
    ):
        dtype = next(self.streaming.parameters()).dtype
        args = [sample, encoder_hidden_states, added_time_ids, cond]
        args = [a.to(dtype) if a is not None else None for a in args]
        if torch.is_tensor(timestep):
            timestep = timestep.to(torch.float32)
        if not self.sequential_cfg or sample.shape[0] == 1:
            return self.streaming(args[0], timestep, args[1], args[2], args[3]).float()
        outs = [
            self.streaming(*(a[i : i + 1] if a is not None else None for a in args[:1]), timestep,
                           *(a[i : i + 1] if a is not None else None for a in args[1:]))
            for i in range(sample.shape[0])
        ]
        return torch.cat(outs).float()


# ---------------------------------------------------------------- stage-wise offload (text-to-video family)


@contextlib.contextmanager
def on_device(device: torch.device, offload: bool, *modules: nn.Module):
    """memory.cpu_offload for one stage: `modules` on `device` inside the block, back on the CPU after.

    A no-op without offload (the modules stay where the caller put them)."""
    if not offload:
        yield
        return
    for module in modules:
        module.to(device)
    try:
        yield
    finally:
        for module in modules:
            module.to("cpu")


def to_device_except(root: nn.Module, device: torch.device, keep: list[nn.Module]) -> None:
    """Move `root` to `device` except the subtrees `keep` (left where they are: the offloaded parts).

    Never moves a kept subtree, so the device never holds the offloaded weights, not even for a moment."""
    kept = {id(m) for m in keep}

    def holds_kept(module: nn.Module) -> bool:
        return any(id(m) in kept for m in module.modules())

    def place(module: nn.Module) -> None:
        if id(module) in kept:
            return
        if not holds_kept(module):
            module.to(device)
            return
        for _, param in module.named_parameters(recurse=False):
            param.data = param.data.to(device)
        for name, buf in module.named_buffers(recurse=False):
            module._buffers[name] = buf.to(device)
        for child in module.children():
            place(child)

    place(root)
