"""`PAIR/StreamingT2V` `streaming_t2v.ckpt` (StreamingModelscope) -> this project's layout.

The key mapping follows the original's module structure (Picsart-AI-Research/StreamingT2V,
branch `StreamingModelscope`, `t2v_enhanced/model/video_ldm.py`): the checkpoint is the state
dict of the Lightning module `VideoLDM`, loaded there with a STRICT `load_state_dict`, so it
holds every registered submodule:

| official prefix | module | ours (`StreamingUNet3D` state dict) |
|---|---|---|
| `base_model.` | UNet3DConditionModel (ModelScope layout) + mergers + APM mixers | `unet.` |
| `base_model.cross_attention_merger_down_blocks.{i}.temporal_transformer.` | CAM injector of skip i | `cam.skip_injectors.{i}.` |
| `base_model.cross_attention_merger_mid_block.temporal_transformer.` | CAM injector of the mid block | `cam.mid_injector.` |
| `base_model.*.attn2.{conv,conv_ln,alpha}` | APM token mixer (spatial cross-attn) | `unet.*.attn2.processor.{conv,norm,alpha}` |
| `unet.` | ControlNet-style CAM copy (conv_in, time_embedding, transformer_in, down, mid) | `cam.` |
|`unet.controlnet_cond_embedding.{conv_in,blocks.k,conv_out}`| frame encoder |`cam.frame_encoder.{body.0,body.(2+2k),conv_out}`|
| `resampler.context_embedding.{0,2}` | APM MLP (Linear, SiLU, Linear) | `apm.mlp.{0,2}` |
| `image_encoder.model.visual.` | OpenCLIP ViT-H-14 image tower | `apm.image_encoder.` (CLIPVisionModelWithProjection) |

The CAM's zero convs (`zero_conv_mode: Identity`) and its merger (`merging_mode: addition`)
have no parameters. Ignored on purpose (returned by `convert_streamingt2v_report` as
`ignored`, never as unplaced): `text_encoder.*` and `vae.*` (frozen copies of the base repo's
components, which the preset loads from `damo-vilab/text-to-video-ms-1.7b`), the OpenCLIP text
tower leftovers (`image_encoder.model.{token_embedding,positional_embedding,ln_final,
text_projection,logit_scale}`; the original deletes only `model.transformer`), and position-id
buffers of older transformers versions.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

MERGER_DOWN = re.compile(r"^base_model\.cross_attention_merger_down_blocks\.(\d+)\.temporal_transformer\.(.+)$")
MERGER_MID = re.compile(r"^base_model\.cross_attention_merger_mid_block\.temporal_transformer\.(.+)$")
APM_MIXER = re.compile(r"^base_model\.(.+\.attn2)\.(conv\.weight|conv\.bias|conv_ln\.weight|conv_ln\.bias|alpha)$")
FRAME_BLOCK = re.compile(r"^unet\.controlnet_cond_embedding\.blocks\.(\d+)\.(weight|bias)$")
RESBLOCK = re.compile(r"^transformer\.resblocks\.(\d+)\.(.+)$")

INJECTOR = {
    "norm.weight": "norm.weight", "norm.bias": "norm.bias",
    "proj_in.weight": "proj_in.weight", "proj_in.bias": "proj_in.bias",
    "attention.to_q.weight": "to_q.weight", "attention.to_k.weight": "to_k.weight", "attention.to_v.weight": "to_v.weight",
    "attention.to_out.0.weight": "to_out.weight", "attention.to_out.0.bias": "to_out.bias",
    "proj_out.weight": "proj_out.weight", "proj_out.bias": "proj_out.bias",
}
APM_PARAM = {"conv.weight": "conv.weight", "conv.bias": "conv.bias", "conv_ln.weight": "norm.weight",
             "conv_ln.bias": "norm.bias", "alpha": "alpha"}
CAM_COPY = ("conv_in.", "time_embedding.", "transformer_in.", "down_blocks.", "mid_block.")
IGNORED = re.compile(
    r"^(text_encoder\.|vae\.|image_encoder\.model\.(token_embedding|positional_embedding|ln_final|text_projection|logit_scale|attn_mask)\b)"
)
# OpenCLIP VisionTransformer -> transformers CLIPVisionModelWithProjection, one-to-one names
OPENCLIP_VISUAL = {
    "conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "class_embedding": "vision_model.embeddings.class_embedding",
    "positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "ln_pre.weight": "vision_model.pre_layrnorm.weight", "ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "ln_post.weight": "vision_model.post_layernorm.weight", "ln_post.bias": "vision_model.post_layernorm.bias",
}
OPENCLIP_BLOCK = {
    "ln_1.weight": "layer_norm1.weight", "ln_1.bias": "layer_norm1.bias",
    "ln_2.weight": "layer_norm2.weight", "ln_2.bias": "layer_norm2.bias",
    "attn.out_proj.weight": "self_attn.out_proj.weight", "attn.out_proj.bias": "self_attn.out_proj.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight", "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight", "mlp.c_proj.bias": "mlp.fc2.bias",
}


@dataclass
class ConversionReport:
    converted: dict[str, Tensor] = field(default_factory=dict)
    unplaced: list[str] = field(default_factory=list)  # keys no rule knows: an error for strict loading
    ignored: list[str] = field(default_factory=list)  # keys dropped on purpose (see the module docstring)


def openclip_visual_to_transformers(visual: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """OpenCLIP `visual.*` keys (prefix stripped) -> CLIPVisionModelWithProjection keys; (converted, unplaced).

    `attn.in_proj_{weight,bias}` (nn.MultiheadAttention, rows q|k|v) split into q/k/v_proj;
    `proj` (width, embed) is applied as `x @ proj`, i.e. `visual_projection.weight = proj.T`.
    """
    out: dict[str, Tensor] = {}
    unplaced: list[str] = []
    for key, value in visual.items():
        if key in OPENCLIP_VISUAL:
            out[OPENCLIP_VISUAL[key]] = value
        elif key == "proj":
            out["visual_projection.weight"] = value.t().contiguous()
        elif m := RESBLOCK.match(key):
            layer, rest = m.groups()
            prefix = f"vision_model.encoder.layers.{layer}."
            if rest in OPENCLIP_BLOCK:
                out[prefix + OPENCLIP_BLOCK[rest]] = value
            elif rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
                kind = rest.rsplit("_", 1)[1]  # weight / bias
                if value.shape[0] % 3:
                    raise ValueError(f"openclip {key}: first dimension {value.shape[0]} is not 3 x width")
                for name, part in zip(("q", "k", "v"), value.chunk(3, dim=0), strict=False):
                    out[f"{prefix}self_attn.{name}_proj.{kind}"] = part.contiguous()
            else:
                unplaced.append(key)
        else:
            unplaced.append(key)
    return out, unplaced


def convert_streamingt2v_report(state_dict: dict[str, Tensor]) -> ConversionReport:
    """Every official key -> placed (ours), ignored (on purpose) or unplaced (unknown)."""
    report = ConversionReport()
    out, visual = report.converted, {}
    for key, value in state_dict.items():
        if m := MERGER_DOWN.match(key):
            index, rest = m.groups()
            if rest not in INJECTOR:
                report.unplaced.append(key)
                continue
            out[f"cam.skip_injectors.{index}.{INJECTOR[rest]}"] = value
        elif m := MERGER_MID.match(key):
            if m.group(1) not in INJECTOR:
                report.unplaced.append(key)
                continue
            out[f"cam.mid_injector.{INJECTOR[m.group(1)]}"] = value
        elif m := APM_MIXER.match(key):
            path, param = m.groups()
            out[f"unet.{path}.processor.{APM_PARAM[param]}"] = value
        elif key.startswith("base_model."):
            out["unet." + key[len("base_model."):]] = value
        elif key in ("unet.controlnet_cond_embedding.conv_in.weight", "unet.controlnet_cond_embedding.conv_in.bias"):
            out["cam.frame_encoder.body.0." + key.rsplit(".", 1)[1]] = value
        elif m := FRAME_BLOCK.match(key):
            block, param = m.groups()
            out[f"cam.frame_encoder.body.{2 + 2 * int(block)}.{param}"] = value
        elif key.startswith("unet.controlnet_cond_embedding.conv_out."):
            out["cam.frame_encoder.conv_out." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("unet.") and key[len("unet."):].startswith(CAM_COPY):
            out["cam." + key[len("unet."):]] = value
        elif m := re.match(r"^resampler\.context_embedding\.([02])\.(weight|bias)$", key):
            out[f"apm.mlp.{m.group(1)}.{m.group(2)}"] = value
        elif key.startswith("image_encoder.model.visual."):
            visual[key[len("image_encoder.model.visual."):]] = value
        elif IGNORED.match(key) or key.endswith("position_ids"):
            report.ignored.append(key)
        else:
            report.unplaced.append(key)
    converted_visual, unplaced_visual = openclip_visual_to_transformers(visual)
    out.update({"apm.image_encoder." + k: v for k, v in converted_visual.items()})
    report.unplaced += ["image_encoder.model.visual." + k for k in unplaced_visual]
    return report


def convert_streamingt2v(state_dict: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Official `streaming_t2v.ckpt` state dict -> (our `StreamingUNet3D` state dict, keys that could not be placed)."""
    report = convert_streamingt2v_report(state_dict)
    return report.converted, report.unplaced


def load_official_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """The `state_dict` of a Lightning `.ckpt`, read with `torch.load(weights_only=True)` only."""
    try:
        obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # the weights-only unpickler refuses anything but tensors and plain containers
        raise ValueError(
            f"{path}: torch.load(weights_only=True) refused this checkpoint ({type(exc).__name__}: {exc}); "
            "it is never unpickled any other way"
        ) from None
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a Lightning checkpoint with a 'state_dict' of tensors")
    return state


def convert_state_dict(state_dict: dict[str, Tensor], **_: object) -> tuple[dict[str, Tensor], list[str]]:
    """The name `stt2v_ray.models.convert.converter` dispatches to (same as `convert_streamingt2v`)."""
    return convert_streamingt2v(state_dict)
