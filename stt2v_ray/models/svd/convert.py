"""Key mapping: the official StreamingSVD `model.safetensors` -> this project's streamingsvd models.

The original (Picsart-AI-Research/StreamingT2V, branch `main`) loads that file strictly into its
Lightning module, whose children give the key prefixes (code/config.yaml, `module_names`):
- `model.diffusion_model.*`: the SVD-XT `VideoUNet` (sgm naming: input_blocks / middle_block /
  output_blocks / out, `VideoResBlock` with `time_stack` + `time_mixer`, `SpatialVideoTransformer`
  with `time_stack` blocks and `time_pos_embed`), plus the CAM injectors
  `cross_attention_merger_input_blocks.{i}` / `cross_attention_merger_mid_block`
  (`ConditionalModel.temporal_transformer`: norm, proj_in, attention.to_q/k/v/to_out.0, proj_out);
- `controlnet.*`: the CAM copy (input_blocks + middle_block + time/label embeddings, sgm naming)
  and its frame encoder `controlnet_cond_embedding` (conv_in, blocks, norms, conv_out);
- `conditioner.embedders.0.open_clip.model.visual.*`: OpenCLIP ViT-H/14 image tower;
  `conditioner.embedders.3.encoder.*`: an sgm `AutoencoderKLModeOnly` (`encoder`, 2-D `decoder`,
  `quant_conv`, `post_quant_conv`) whose `encode` (encoder -> quant_conv -> mode) makes the image
  latents the UNet is conditioned on;
- `first_stage_model.{encoder,decoder}.*`: an sgm `AutoencodingEngine` (no quant convs) whose
  temporal `VideoDecoder` decodes every chunk; its `encoder` is never called at inference.
Ours: `streaming.*` (StreamingUNetSTC: unet / cam / frame_encoder / injectors / mid_injector,
diffusers naming), `vae.*` (AutoencoderKLTemporalDecoder), `image_encoder.*`
(CLIPVisionModelWithProjection).

Our VAE (`vae.*`) is therefore assembled as the original uses it: encoder + quant_conv from the
conditioner's autoencoder, decoder from `first_stage_model`. Keys deliberately dropped (not reported
as unplaced; `IGNORED` lists their prefixes): the OpenCLIP text-tower leftovers, the conditioner
autoencoder's unused 2-D decoder and post_quant_conv, and `first_stage_model.encoder`.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from stt2v_ray.models.svd.configs import SVD_XT_UNET

UNET, CAM = "model.diffusion_model.", "controlnet."
CLIP = "conditioner.embedders.0.open_clip.model."
COND_AE = "conditioner.embedders.3.encoder."
FIRST_STAGE = "first_stage_model."
IGNORED = (COND_AE + "decoder.", COND_AE + "post_quant_conv.", FIRST_STAGE + "encoder.")  # + CLIP keys outside visual.

RES = [("in_layers.0.", "spatial_res_block.norm1."), ("in_layers.2.", "spatial_res_block.conv1."),
       ("emb_layers.1.", "spatial_res_block.time_emb_proj."), ("out_layers.0.", "spatial_res_block.norm2."),
       ("out_layers.3.", "spatial_res_block.conv2."), ("skip_connection.", "spatial_res_block.conv_shortcut."),
       ("time_stack.in_layers.0.", "temporal_res_block.norm1."), ("time_stack.in_layers.2.", "temporal_res_block.conv1."),
       (
           "time_stack.emb_layers.1.", "temporal_res_block.time_emb_proj."
       ), ("time_stack.out_layers.0.", "temporal_res_block.norm2."),
       ("time_stack.out_layers.3.", "temporal_res_block.conv2."), ("time_mixer.", "time_mixer.")]
ATTN = [("time_stack.", "temporal_transformer_blocks."), ("time_pos_embed.0.", "time_pos_embed.linear_1."),
        ("time_pos_embed.2.", "time_pos_embed.linear_2."), ("", "")]
INJECTOR = [
    ("temporal_transformer.attention.to_out.0.", "to_out."), ("temporal_transformer.attention.", ""),
    ("temporal_transformer.", ""),
]


def unet_blocks(cfg: dict, encoder_only: bool = False) -> list[tuple[str, str, list]]:
    """(sgm prefix, diffusers prefix, suffix rules) of every block of a spatio-temporal UNet, from its config."""
    levels, per = len(cfg["block_out_channels"]), cfg["layers_per_block"]
    out = [("time_embed.0.", "time_embedding.linear_1.", []), ("time_embed.2.", "time_embedding.linear_2.", []),
           ("label_emb.0.0.", "add_embedding.linear_1.", []), ("label_emb.0.2.", "add_embedding.linear_2.", []),
           ("input_blocks.0.0.", "conv_in.", [])]
    n = 1
    for i, kind in enumerate(cfg["down_block_types"]):
        for j in range(per):
            out.append((f"input_blocks.{n}.0.", f"down_blocks.{i}.resnets.{j}.", RES))
            if kind.startswith("CrossAttn"):
                out.append((f"input_blocks.{n}.1.", f"down_blocks.{i}.attentions.{j}.", ATTN))
            n += 1
        if i < levels - 1:
            out.append((f"input_blocks.{n}.0.op.", f"down_blocks.{i}.downsamplers.0.conv.", []))
            n += 1
    out += [("middle_block.0.", "mid_block.resnets.0.", RES), ("middle_block.1.", "mid_block.attentions.0.", ATTN),
            ("middle_block.2.", "mid_block.resnets.1.", RES)]
    if encoder_only:
        return out
    n = 0
    for i, kind in enumerate(cfg["up_block_types"]):
        attn = kind.startswith("CrossAttn")
        for j in range(per + 1):
            out.append((f"output_blocks.{n}.0.", f"up_blocks.{i}.resnets.{j}.", RES))
            if attn:
                out.append((f"output_blocks.{n}.1.", f"up_blocks.{i}.attentions.{j}.", ATTN))
            if j == per and i < levels - 1:
                out.append((f"output_blocks.{n}.{2 if attn else 1}.conv.", f"up_blocks.{i}.upsamplers.0.conv.", []))
            n += 1
    return out + [("out.0.", "conv_norm_out.", []), ("out.2.", "conv_out.", [])]


def _vae_blocks(levels: int, per: int) -> list[tuple[str, str, list]]:
    res = [("nin_shortcut.", "conv_shortcut."), ("", "")]
    vres = [(
        "norm1.", "spatial_res_block.norm1."
    ), ("conv1.", "spatial_res_block.conv1."), ("norm2.", "spatial_res_block.norm2."),
            ("conv2.", "spatial_res_block.conv2."), ("nin_shortcut.", "spatial_res_block.conv_shortcut."),
            ("time_stack.in_layers.0.", "temporal_res_block.norm1."), ("time_stack.in_layers.2.", "temporal_res_block.conv1."),
            ("time_stack.out_layers.0.", "temporal_res_block.norm2."), ("time_stack.out_layers.3.", "temporal_res_block.conv2."),
            ("mix_factor", "time_mixer.mix_factor")]
    attn = [("norm.", "group_norm."), ("q.", "to_q."), ("k.", "to_k."), ("v.", "to_v."), ("proj_out.", "to_out.0.")]
    out = [("encoder.conv_in.", "encoder.conv_in.", []), ("encoder.norm_out.", "encoder.conv_norm_out.", []),
           ("encoder.conv_out.", "encoder.conv_out.", []), ("encoder.mid.attn_1.", "encoder.mid_block.attentions.0.", attn),
           ("decoder.conv_in.", "decoder.conv_in.", []), ("decoder.norm_out.", "decoder.conv_norm_out.", []),
           ("decoder.conv_out.time_mix_conv.", "decoder.time_conv_out.", []), ("decoder.conv_out.", "decoder.conv_out.", []),
           ("decoder.mid.attn_1.", "decoder.mid_block.attentions.0.", attn)]
    for k in (1, 2):
        out += [(f"encoder.mid.block_{k}.", f"encoder.mid_block.resnets.{k - 1}.", res),
                (f"decoder.mid.block_{k}.", f"decoder.mid_block.resnets.{k - 1}.", vres)]
    for i in range(levels):
        for j in range(per):
            out.append((f"encoder.down.{i}.block.{j}.", f"encoder.down_blocks.{i}.resnets.{j}.", res))
        if i < levels - 1:
            out.append((f"encoder.down.{i}.downsample.conv.", f"encoder.down_blocks.{i}.downsamplers.0.conv.", []))
        for j in range(per + 1):  # the decoder's up list is stored deepest first
            out.append((f"decoder.up.{levels - 1 - i}.block.{j}.", f"decoder.up_blocks.{i}.resnets.{j}.", vres))
        if i < levels - 1:
            out.append((f"decoder.up.{levels - 1 - i}.upsample.conv.", f"decoder.up_blocks.{i}.upsamplers.0.conv.", []))
    return out


def _clip_key(key: str) -> list[tuple[str, int | None]] | None:
    """OpenCLIP visual key -> [(transformers key, slice index of a fused qkv or None)]; None when unknown."""
    simple = {"conv1.weight": "vision_model.embeddings.patch_embedding.weight",
              "class_embedding": "vision_model.embeddings.class_embedding",
              "positional_embedding": "vision_model.embeddings.position_embedding.weight",
              "ln_pre.weight": "vision_model.pre_layrnorm.weight", "ln_pre.bias": "vision_model.pre_layrnorm.bias",
              "ln_post.weight": "vision_model.post_layernorm.weight", "ln_post.bias": "vision_model.post_layernorm.bias",
              "proj": "visual_projection.weight"}
    if key in simple:
        return [(simple[key], None)]
    m = re.fullmatch(r"transformer\.resblocks\.(\d+)\.(.+)", key)
    if not m:
        return None
    layer, rest = f"vision_model.encoder.layers.{m.group(1)}.", m.group(2)
    if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
        kind = rest.rsplit("_", 1)[1]
        return [(f"{layer}self_attn.{p}_proj.{kind}", i) for i, p in enumerate("qkv")]
    table = {"ln_1.": "layer_norm1.", "ln_2.": "layer_norm2.", "attn.out_proj.": "self_attn.out_proj.",
             "mlp.c_fc.": "mlp.fc1.", "mlp.c_proj.": "mlp.fc2."}
    for a, b in table.items():
        if rest.startswith(a):
            return [(layer + b + rest[len(a):], None)]
    return None


def _apply(rules: list, rest: str) -> str | None:
    if not rules:
        return rest
    for a, b in rules:
        if rest.startswith(a):
            return b + rest[len(a):]
    return None


def is_official_layout(state: dict) -> bool:
    return any(k.startswith(UNET) for k in state) and any(k.startswith(CAM) for k in state)


def convert_state_dict(state: dict[str, torch.Tensor], unet_config: dict | None = None,
                       vae_levels: int = 4, vae_layers: int = 2) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Official keys -> ours. Returns (our state dict, keys that could not be placed, with the reason)."""
    cfg = unet_config or SVD_XT_UNET
    unet_rules = sorted(unet_blocks(cfg), key=lambda r: -len(r[0]))  # longest prefix first
    cam_rules = sorted(unet_blocks(cfg, encoder_only=True), key=lambda r: -len(r[0]))
    vae_rules = sorted(_vae_blocks(vae_levels, vae_layers), key=lambda r: -len(r[0]))
    ours: dict[str, torch.Tensor] = {}
    unplaced: list[str] = []

    def place(key: str, new: str, value: torch.Tensor) -> None:
        if new in ours:
            unplaced.append(f"{key} (maps onto {new}, already placed)")
        ours[new] = value

    def by_rules(key: str, rest: str, rules, prefix: str) -> bool:
        for a, b, sub in rules:
            if rest.startswith(a):
                tail = _apply(sub, rest[len(a):])
                if tail is not None:
                    place(key, prefix + b + tail, state[key])
                    return True
        return False

    for key, value in state.items():
        if key.startswith(UNET):
            rest = key[len(UNET):]
            m = re.fullmatch(r"cross_attention_merger_(input_blocks\.(\d+)|mid_block)\.(.+)", rest)
            if m:
                tail = _apply(INJECTOR, m.group(3))
                target = f"streaming.injectors.{m.group(2)}." if m.group(2) else "streaming.mid_injector."
                place(key, target + tail, value)
            elif not by_rules(key, rest, unet_rules, "streaming.unet."):
                unplaced.append(f"{key} (no rule for this UNet key)")
        elif key.startswith(CAM):
            rest = key[len(CAM):]
            if rest.startswith("controlnet_cond_embedding."):
                place(key, "streaming.frame_encoder." + rest[len("controlnet_cond_embedding."):], value)
            elif not by_rules(key, rest, cam_rules, "streaming.cam."):
                unplaced.append(f"{key} (no rule for this CAM key)")
        elif key.startswith(CLIP + "visual."):
            targets = _clip_key(key[len(CLIP + "visual."):])
            if targets is None:
                unplaced.append(f"{key} (no rule for this OpenCLIP visual key)")
                continue
            for new, part in targets:
                v = value.chunk(3, dim=0)[part] if part is not None else value
                place(key, "image_encoder." + new, v.t().contiguous() if new.endswith("visual_projection.weight") else v)
        elif key.startswith(CLIP) or key.startswith(IGNORED):
            continue  # text-tower leftovers / parts the original never runs at inference
        elif key.startswith(COND_AE + "quant_conv."):
            place(key, "vae." + key[len(COND_AE):], value)
        elif key.startswith((COND_AE, FIRST_STAGE)):  # what is left: the used encoder and decoder
            rest = key.removeprefix(COND_AE) if key.startswith(COND_AE) else key.removeprefix(FIRST_STAGE)
            if not by_rules(key, rest, vae_rules, "vae."):
                unplaced.append(f"{key} (no rule for this VAE key)")
        else:
            unplaced.append(f"{key} (unknown prefix)")

    # the VAE's attention uses linear layers where the original has 1x1 convs
    for k in list(ours):
        if re.search(
            r"vae\.(en|de)coder\.mid_block\.attentions\.0\.(to_q|to_k|to_v|to_out\.0)\.weight$", k
        ) and ours[k].ndim == 4:
            ours[k] = ours[k][:, :, 0, 0]
    return ours, unplaced


def load_strict(models: dict[str, nn.Module], state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load {prefix: model} from one flat state dict; any missing or unexpected key is an error naming it."""
    expected = {f"{p}.{k}" for p, m in models.items() for k in m.state_dict()}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{source}: strict loading failed: {len(missing)} missing key(s) {missing[:8]}, "
            f"{len(unexpected)} unexpected key(s) {unexpected[:8]}"
        )
    for prefix, model in models.items():
        part = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}
        model.load_state_dict(part, strict=True)
