"""Synthetic `streaming_t2v.ckpt` state dicts in the ORIGINAL's layout, for any model size.

Written from the original's module structure (Picsart-AI-Research/StreamingT2V, branch
StreamingModelscope), NOT by inverting our converter:
- `VideoLDM` registers `base_model` (UNet3DConditionModel), `unet` (ControlNetModel),
  `resampler`, `image_encoder`, `text_encoder`, `vae`; the checkpoint is its full state dict.
- `base_model`: diffusers names (its blocks keep diffusers' attribute names); in every spatial
  cross-attention `Attention` (is_spatial_attention and use_image_embedding) a
  `conv` Conv1d(93 -> 77, k=3), `conv_ln` LayerNorm(1024) and `alpha` scalar; the merger
  `cross_attention_merger_down_blocks` gets 3 `ConditionalModel`s per down block (channels:
  the block's input width for the first, its output width for the other two) and
  `cross_attention_merger_mid_block` one; each holds `temporal_transformer` = `CrossAttention`
  (`norm` GroupNorm, `proj_in`, `attention` = diffusers Attention without q/k/v bias, `proj_out`).
- `unet` (ControlNet): conv_in, time_embedding, transformer_in, down_blocks, mid_block as the
  UNet (no image-token mixers: use_image_tokens_ctrl is false), `controlnet_cond_embedding`
  (`conv_in` 3 -> c0, `blocks` = [conv c_i -> c_i, conv c_i -> c_{i+1} stride 2] per transition,
  `conv_out` -> block_out_channels[0]); merger "addition" and zero convs "Identity": no params.
- `resampler.context_embedding` = Sequential(Linear, SiLU, Linear).
- `image_encoder.model` = open_clip CLIP minus `transformer`: `visual.*` (VisionTransformer) plus
  the text leftovers token_embedding, positional_embedding, ln_final, text_projection, logit_scale.
"""
from __future__ import annotations

import re

import torch
from diffusers import UNet3DConditionModel

from stt2v_ray.models.modelscope.streamingt2v import Spec

SPATIAL_ATTN2 = re.compile(r"^(.*\.attentions\.\d+\.transformer_blocks\.\d+\.attn2)\.to_q\.weight$")
CAM_PARTS = ("conv_in.", "time_embedding.", "transformer_in.", "down_blocks.", "mid_block.")


def _merger(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    t = prefix + "temporal_transformer."
    return {
        t + "norm.weight": (c,), t + "norm.bias": (c,), t + "proj_in.weight": (c, c), t + "proj_in.bias": (c,),
        t + "attention.to_q.weight": (c, c), t + "attention.to_k.weight": (c, c), t + "attention.to_v.weight": (c, c),
        t + "attention.to_out.0.weight": (c, c), t + "attention.to_out.0.bias": (c,),
        t + "proj_out.weight": (c, c), t + "proj_out.bias": (c,),
    }


def official_shapes(spec: Spec) -> dict[str, tuple[int, ...]]:
    """Every key of the official checkpoint for `spec`'s sizes -> its shape."""
    with torch.device("meta"):
        unet = UNet3DConditionModel(**spec.unet)
    plain = {k: tuple(v.shape) for k, v in unet.state_dict().items()}
    shapes: dict[str, tuple[int, ...]] = {"base_model." + k: s for k, s in plain.items()}
    d, t, i = spec.unet["cross_attention_dim"], spec.text_tokens, spec.image_tokens
    for key in plain:
        if m := SPATIAL_ATTN2.match(key):
            a = "base_model." + m.group(1)
            shapes.update({a + ".conv.weight": (t, t + i, 3), a + ".conv.bias": (t,), a + ".conv_ln.weight": (d,),
                           a + ".conv_ln.bias": (d,), a + ".alpha": ()})
    widths = spec.unet["block_out_channels"]
    merger, out_c = 0, widths[0]
    for block in range(len(widths)):
        in_c, out_c = out_c, widths[block]
        for idx in range(3):
            shapes.update(_merger(f"base_model.cross_attention_merger_down_blocks.{merger}.", in_c if idx == 0 else out_c))
            merger += 1
    shapes.update(_merger("base_model.cross_attention_merger_mid_block.", widths[-1]))
    # ControlNet copy
    shapes.update({"unet." + k: s for k, s in plain.items() if k.startswith(CAM_PARTS)})
    ch = spec.frame_channels
    shapes[
        "unet.controlnet_cond_embedding.conv_in.weight"
    ], shapes["unet.controlnet_cond_embedding.conv_in.bias"] = (ch[0], 3, 3, 3), (ch[0],)
    for j in range(len(ch) - 1):
        for k, (a, b) in enumerate([(ch[j], ch[j]), (ch[j], ch[j + 1])]):
            shapes[f"unet.controlnet_cond_embedding.blocks.{2 * j + k}.weight"] = (b, a, 3, 3)
            shapes[f"unet.controlnet_cond_embedding.blocks.{2 * j + k}.bias"] = (b,)
    shapes["unet.controlnet_cond_embedding.conv_out.weight"] = (widths[0], ch[-1], 3, 3)
    shapes["unet.controlnet_cond_embedding.conv_out.bias"] = (widths[0],)
    # APM resampler (input: the image embedding = cross_attention_dim wide)
    e, h = spec.vision["projection_dim"], spec.apm_hidden or spec.vision["projection_dim"] * 5 // 4
    shapes.update({"resampler.context_embedding.0.weight": (h, e), "resampler.context_embedding.0.bias": (h,),
                   "resampler.context_embedding.2.weight": (i * d, h), "resampler.context_embedding.2.bias": (i * d,)})
    shapes.update(openclip_visual_shapes(spec.vision, "image_encoder.model.visual."))
    shapes.update({"image_encoder.model.token_embedding.weight": (49408, 8), "image_encoder.model.positional_embedding": (77, 8),
                   "image_encoder.model.ln_final.weight": (8,), "image_encoder.model.ln_final.bias": (8,),
                   "image_encoder.model.text_projection": (8, 8), "image_encoder.model.logit_scale": ()})
    # frozen copies of the base repo's components (a few keys suffice: all are ignored)
    shapes.update({"text_encoder.text_model.final_layer_norm.weight": (8,), "vae.post_quant_conv.weight": (4, 4, 1, 1)})
    return shapes


def openclip_visual_shapes(vision: dict, prefix: str = "") -> dict[str, tuple[int, ...]]:
    w, p, e = vision["hidden_size"], vision["patch_size"], vision["projection_dim"]
    tokens = (vision["image_size"] // p) ** 2 + 1
    s = {prefix + "conv1.weight": (w, 3, p, p), prefix + "class_embedding": (w,), prefix + "positional_embedding": (tokens, w),
         prefix + "ln_pre.weight": (w,), prefix + "ln_pre.bias": (w,), prefix + "ln_post.weight": (w,),
         prefix + "ln_post.bias": (w,), prefix + "proj": (w, e)}
    for layer in range(vision["num_hidden_layers"]):
        r = f"{prefix}transformer.resblocks.{layer}."
        s.update({r + "ln_1.weight": (w,), r + "ln_1.bias": (w,), r + "attn.in_proj_weight": (3 * w, w),
                  r + "attn.in_proj_bias": (3 * w,), r + "attn.out_proj.weight": (w, w), r + "attn.out_proj.bias": (w,),
                  r + "ln_2.weight": (w,), r + "ln_2.bias": (w,), r + "mlp.c_fc.weight": (vision["intermediate_size"], w),
                  r + "mlp.c_fc.bias": (vision["intermediate_size"],), r + "mlp.c_proj.weight": (w, vision["intermediate_size"]),
                  r + "mlp.c_proj.bias": (w,)})
    return s


def synthetic_state_dict(spec: Spec, seed: int = 0, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Seeded random values in the official layout (meta tensors when device='meta')."""
    return state_from_shapes(official_shapes(spec), seed, device)


def state_from_shapes(shapes: dict[str, tuple[int, ...]], seed: int = 0, device: str = "cpu") -> dict[str, torch.Tensor]:
    """key -> shape  ->  key -> seeded random tensor (meta tensors when device='meta')."""
    if device == "meta":
        return {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g) * 0.05 for k, s in sorted(shapes.items())}
