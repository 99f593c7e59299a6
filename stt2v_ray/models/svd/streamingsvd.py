"""The `streamingsvd` preset: SVD-XT UNet + the official CAM layout, temporal VAE, CLIP image encoder.

Builders take (run settings, device) like every preset's, plus `size`:
- "full": the published architectures (configs below, read from the diffusers-format repos
  `stabilityai/stable-video-diffusion-img2vid-xt` and the original's `code/config.yaml`);
- "toy": the SAME classes and wiring with tiny widths, seeded random weights (tests, CPU).
`weights.mode = pretrained` loads the `streaming` component (PAIR/StreamingSVD `model.safetensors`,
in the original layout, converted in memory, or a file written by `stt2v-ray convert`) strictly;
`random` keeps the random weights (profiling only: a warning says so, run.json records it).

The StreamingSVD checkpoint holds the UNet, the CAM, the conditioner (OpenCLIP ViT-H image
encoder) and the VAE, so it alone feeds every chunk; chunk 0 runs the same UNet without CAM
(the original runs the hub's SVD-XT pipeline for chunk 0; with a base UNet frozen during the
CAM's training the two are the same network).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from stt2v_ray.config import BaseModelSettings, RunSettings
from stt2v_ray.models.blocks.cam import CAMInjector
from stt2v_ray.models.blocks.memory import MemoryImageEncoder, MemoryUNet, MemoryVAE, chunk_feed_forwards, torch_dtype
from stt2v_ray.models.svd.configs import (
    CAM_FRAME_CHANNELS,
    SVD_XT_IMAGE_ENCODER,
    SVD_XT_UNET,
    SVD_XT_VAE,
    TOY_FRAME_CHANNELS,
    TOY_IMAGE_ENCODER,
    TOY_UNET,
    TOY_VAE,
)
from stt2v_ray.models.svd.i2v import I2VGenerator
from stt2v_ray.models.svd.streaming_unet_stc import StreamingUNetSTC
from stt2v_ray.models.svd.svd_cam import SVDFrameEncoder

log = logging.getLogger(__name__)

RANDOM_WEIGHTS_WARNING = (
    "weights.mode=random: the {preset} models have RANDOM weights (profiling only); the frames are noise, not real output"
)


def _check_size(size: str) -> None:
    if size not in ("full", "toy"):
        raise ValueError(f"size must be 'full' or 'toy', got {size!r}")


def build_models(
    size: str = "full", seed: int = 0
) -> tuple[StreamingUNetSTC, AutoencoderKLTemporalDecoder, CLIPVisionModelWithProjection]:
    """Streaming UNet (SVD-XT + official CAM), temporal VAE, CLIP image encoder; float32, eval, seeded.

    Under `with torch.device("meta"):` this builds without memory (parameter counts)."""
    _check_size(size)
    full = size == "full"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNetSpatioTemporalConditionModel(**(SVD_XT_UNET if full else TOY_UNET))
        widths = unet.config.block_out_channels
        frame_encoder = SVDFrameEncoder(widths[0], CAM_FRAME_CHANNELS if full else TOY_FRAME_CHANNELS)
        head_dim = 64 if full else 16
        streaming = StreamingUNetSTC(unet, head_dim=head_dim, frame_encoder=frame_encoder, injector_cls=CAMInjector)
        vae = AutoencoderKLTemporalDecoder(**(SVD_XT_VAE if full else TOY_VAE))
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**(SVD_XT_IMAGE_ENCODER if full else TOY_IMAGE_ENCODER)))
    return streaming.eval(), vae.eval(), image_encoder.eval()


def toy_cam_outputs_nonzero(streaming: StreamingUNetSTC, seed: int = 0) -> None:
    """Random weights: give the zero-initialised CAM outputs small values, so the CAM path is exercised."""
    layers = [streaming.frame_encoder.conv_out, streaming.mid_injector.proj_out] + [i.proj_out for i in streaming.injectors]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        for layer in layers:
            torch.nn.init.normal_(layer.weight, std=0.02)
            torch.nn.init.normal_(layer.bias, std=0.02)


def load_streaming_weights(streaming, vae, image_encoder, path: Path) -> None:
    """Strictly load one state dict (official layout: converted in memory; or this project's)."""
    from stt2v_ray.models.blocks.checkpoint import read_checkpoint
    from stt2v_ray.models.svd.convert import convert_state_dict, is_official_layout, load_strict

    state = read_checkpoint(path)
    if is_official_layout(state):
        state, unplaced = convert_state_dict(state)
        if unplaced:
            raise ValueError(f"{path}: {len(unplaced)} key(s) of the checkpoint could not be placed: {unplaced[:10]}")
    load_strict({"streaming": streaming, "vae": vae, "image_encoder": image_encoder}, state, source=str(path))


def build_generator(run: RunSettings, settings: BaseModelSettings, device="cpu", size: str = "full",
                    paths: dict | None = None) -> I2VGenerator:
    """The i2v ChunkGenerator of this preset, with run.memory applied."""
    streaming, vae, image_encoder = build_models(size)
    if run.weights.mode == "random":
        log.warning(RANDOM_WEIGHTS_WARNING.format(preset="streamingsvd"))
        toy_cam_outputs_nonzero(streaming)
    else:
        if paths is None or "streaming" not in paths:
            raise ValueError("streamingsvd: pretrained weights need the resolved 'streaming' component")
        load_streaming_weights(streaming, vae, image_encoder, paths["streaming"])
    mem, device = run.memory, torch.device(device)
    dtype = torch_dtype(mem)
    if mem.ff_chunk_size:
        chunk_feed_forwards(streaming, mem.ff_chunk_size)
    streaming.to(device, dtype)
    if dtype != torch.float32:
        vae.to(dtype)
        image_encoder.to(dtype)
    return I2VGenerator(
        MemoryUNet(streaming, mem.sequential_cfg),
        MemoryVAE(vae, device, mem.cpu_offload, mem.vae_decode_chunk),
        MemoryImageEncoder(image_encoder, device, mem.cpu_offload),
        settings=settings, device=device,
    )


def resolved_paths(run: RunSettings, components: list[str]) -> dict | None:
    if run.weights.mode == "random":
        return None
    from stt2v_ray.models.blocks.weights import resolve_weights
    from stt2v_ray.presets import get_preset

    found = resolve_weights(get_preset(run.preset), run.weights.paths, components)
    return {k: v.path for k, v in found.items()}


# ---------------------------------------------------------------- preset entry points


def i2v(run: RunSettings, device="cpu", size: str = "full"):
    return build_generator(run, run.i2v, device, size, resolved_paths(run, ["streaming"]))


def t2v(run: RunSettings, device="cpu", size: str = "full"):
    """Text-to-video: SDXL makes the first frame, then the i2v path (the original never released one)."""
    from stt2v_ray.models.svd.first_frame import FirstFrameT2V, build_text_to_image

    paths = resolved_paths(run, ["streaming", "text_to_image"])
    generator = build_generator(run, run.t2v, device, size, paths)
    return FirstFrameT2V(generator, build_text_to_image(run, device, size, paths))


def enhancer(run: RunSettings, base_height: int, base_width: int, device="cpu", size: str = "full"):
    from stt2v_ray.models.svd.i2vgen_enhancer import build_i2vgen_enhancer

    return build_i2vgen_enhancer(run, base_height, base_width, device, size, resolved_paths(run, ["enhancer"]))




def toy_i2v(run, device="cpu"):
    return i2v(run, device, size="toy")


def toy_t2v(run, device="cpu"):
    return t2v(run, device, size="toy")


def toy_enhancer(run, base_height, base_width, device="cpu"):
    return enhancer(run, base_height, base_width, device, size="toy")


def parameter_counts() -> dict[str, dict[str, int]]:
    """Full-size parameter counts per weight component and model, built on the meta device (no memory, no download).

    The preset's interpolator (EMA-VFI) lives in `stt2v_ray.video`, a layer above models: the CLI adds its count."""
    from stt2v_ray.models.svd.first_frame import _random_sdxl
    from stt2v_ray.models.svd.i2vgen_enhancer import build_models as i2vgen_models

    def n(m) -> int:
        return sum(p.numel() for p in m.parameters())

    with torch.device("meta"):
        streaming, vae, image_encoder = build_models("full")
        _, text_encoder, e_vae, e_unet, e_image = i2vgen_models("full")
        sdxl = _random_sdxl("full")
    cam = n(streaming) - n(streaming.unet)
    return {
        "streaming": {"unet (SVD-XT)": n(streaming.unet), "cam": cam, "vae": n(vae), "image_encoder": n(image_encoder)},
        "enhancer": {
            "unet (I2VGen-XL)": n(e_unet), "vae": n(e_vae), "text_encoder": n(text_encoder), "image_encoder": n(e_image)
        },
        "text_to_image": {
            "unet (SDXL)": n(sdxl.unet), "vae": n(sdxl.vae), "text_encoders": n(sdxl.text_encoder) + n(sdxl.text_encoder_2)
        },
    }
