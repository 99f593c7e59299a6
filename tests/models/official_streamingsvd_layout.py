"""Synthetic `PAIR/StreamingSVD` `model.safetensors` state dicts in the ORIGINAL's layout, any size.

Written from the original's module structure (Picsart-AI-Research/StreamingT2V, branch `main`),
NOT from our converter's tables. `inference_i2v.py` loads the file with a strict
`model.load_state_dict` into the Lightning module `diffusion_trainer.streaming_svd.StreamingSVD`,
whose parameter-holding children (`code/config.yaml`, module_names) give the prefixes:
- `model.diffusion_model.*`: `models.diffusion.video_model.VideoUNet` (vendored sgm
  openaimodel/video_attention): `time_embed`, `label_emb` ("sequential"), `input_blocks`
  (`VideoResBlock` = sgm `ResBlock` + `time_stack` (3-D ResBlock, kernel 3x1x1) + `time_mixer`,
  `SpatialVideoTransformer` at ds in attention_resolutions, `Downsample.op`), `middle_block`,
  `output_blocks` (`Upsample.conv`), `out`; plus (controlnet_mode) one `ConditionalModel` per
  skip feature in `cross_attention_merger_input_blocks` and `cross_attention_merger_mid_block`,
  each `temporal_transformer` = `norm` GroupNorm, `proj_in`, diffusers `Attention` without q/k/v
  bias (`attention.to_q/k/v`, `attention.to_out.0`), `proj_out`.
- `controlnet.*`: `models.control.controlnet.ControlNet` = the UNet's time/label embeddings,
  input blocks and middle block (no mergers, no decoder; Merger and Identity zero convs hold no
  parameters) + `controlnet_cond_embedding` (conv_in, blocks = [conv c_i->c_i, conv c_i->c_{i+1}
  stride 2] per transition, `norms` = LayerNorm after each, conv_out -> a width the original
  HARD-CODES as 320 = SVD-XT's model_channels; for toy sizes we use model_channels).
- `conditioner.embedders.{0..4}`: 0 = FrozenOpenCLIPImagePredictionEmbedder, whose `open_clip.model`
  is an open_clip ViT-H-14 `CLIP` with `transformer` deleted (visual tower + text leftovers
  token_embedding, positional_embedding, ln_final, text_projection, logit_scale); 1, 2, 4 =
  ConcatTimestepEmbedderND (no parameters); 3 = VideoPredictionEmbedderWithEncoder whose `encoder`
  is an AutoencoderKLModeOnly (`encoder`, 2-D `decoder`, `quant_conv`, `post_quant_conv`).
- `first_stage_model.*`: sgm `AutoencodingEngine` = `encoder` (ldm Encoder) + `decoder`
  (`VideoDecoder`, time_mode conv-only: VideoResBlocks with `time_stack` + `mix_factor`, plain
  AttnBlock, `conv_out` = AE3DConv with `time_mix_conv`); no quant convs (the regularizer and the
  Identity loss hold no parameters).
- `denoiser`, `sampler`, the diffusers pipelines and the param objects hold no nn parameters.
The open_clip module structure is read from mlfoundations/open_clip v2.24.0 (the original's
requirements.txt pin), see `official_streamingt2v_layout.openclip_visual_shapes`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from tests.models.official_streamingt2v_layout import openclip_visual_shapes, state_from_shapes

Shapes = dict[str, tuple[int, ...]]


@dataclass(frozen=True)
class Layout:
    # network_config (VideoUNet) init_args
    in_channels: int
    model_channels: int
    out_channels: int
    num_res_blocks: int
    channel_mult: tuple[int, ...]
    attention_resolutions: tuple[int, ...]
    transformer_depth: int
    context_dim: int
    adm_in_channels: int
    merger_head_dim: int  # ConditionalModel's attention_head_dim (64 in the original)
    # controlnet model_params
    cond_channels: tuple[int, ...]
    cond_out: int  # ControlNetConditioningEmbedding's output width (hard-coded 320 in the original)
    # VAE ddconfig (first_stage_model and the conditioner's copy)
    vae_ch: int
    vae_ch_mult: tuple[int, ...]
    vae_res_blocks: int
    z_channels: int
    # open_clip ViT (vision_cfg) and the text leftovers
    vision: dict
    text_width: int
    vocab_size: int
    context_length: int


FULL = Layout(
    in_channels=8, model_channels=320, out_channels=4, num_res_blocks=2, channel_mult=(1, 2, 4, 4),
    attention_resolutions=(4, 2, 1), transformer_depth=1, context_dim=1024, adm_in_channels=768, merger_head_dim=64,
    cond_channels=(32, 96, 256, 512), cond_out=320, vae_ch=128, vae_ch_mult=(1, 2, 4, 4), vae_res_blocks=2, z_channels=4,
    vision=dict(
        hidden_size=1280, intermediate_size=5120, projection_dim=1024, num_hidden_layers=32, image_size=224, patch_size=14
    ),
    text_width=1024, vocab_size=49408, context_length=77,
)
# the sizes of stt2v_ray.models.svd.streamingsvd's toy preset, spelled in the original's parameters
TOY = Layout(
    in_channels=8, model_channels=32, out_channels=4, num_res_blocks=1, channel_mult=(1, 2),
    attention_resolutions=(1,), transformer_depth=1, context_dim=32, adm_in_channels=24, merger_head_dim=16,
    cond_channels=(16, 32, 32), cond_out=32, vae_ch=32, vae_ch_mult=(1, 1, 1), vae_res_blocks=2, z_channels=4,
    vision=dict(hidden_size=32, intermediate_size=37, projection_dim=32, num_hidden_layers=2, image_size=32, patch_size=8),
    text_width=8, vocab_size=16, context_length=5,
)


def _lin(p: str, i: int, o: int, bias: bool = True) -> Shapes:
    return {p + "weight": (o, i), **({p + "bias": (o,)} if bias else {})}


def _conv(p: str, i: int, o: int, k: tuple[int, ...] = (3, 3)) -> Shapes:
    return {p + "weight": (o, i, *k), p + "bias": (o,)}


def _norm(p: str, c: int) -> Shapes:  # GroupNorm / LayerNorm
    return {p + "weight": (c,), p + "bias": (c,)}


def _resblock(p: str, ch: int, out: int, emb: int | None, k: tuple[int, ...] = (3, 3)) -> Shapes:
    """sgm openaimodel.ResBlock (no scale-shift); emb None = skip_t_emb (no emb_layers)."""
    s = {**_norm(p + "in_layers.0.", ch), **_conv(p + "in_layers.2.", ch, out, k),
         **_norm(p + "out_layers.0.", out), **_conv(p + "out_layers.3.", out, out, k)}
    if emb is not None:
        s.update(_lin(p + "emb_layers.1.", emb, out))
    if ch != out:
        s.update(_conv(p + "skip_connection.", ch, out, (1,) * len(k)))
    return s


def _video_resblock(p: str, ch: int, out: int, emb: int) -> Shapes:
    """video_model.VideoResBlock: spatial ResBlock, time_stack (3-D, kernel 3x1x1), time_mixer (learned)."""
    return {**_resblock(p, ch, out, emb), **_resblock(p + "time_stack.", out, out, emb, (3, 1, 1)),
            p + "time_mixer.mix_factor": (1,)}


def _attn(p: str, q: int, ctx: int, inner: int) -> Shapes:  # sgm CrossAttention / MemoryEfficientCrossAttention
    return {**_lin(p + "to_q.", q, inner, False), **_lin(p + "to_k.", ctx, inner, False),
            **_lin(p + "to_v.", ctx, inner, False), **_lin(p + "to_out.0.", inner, q)}


def _ff(p: str, dim: int, out: int) -> Shapes:  # FeedForward(glu=True, mult=4): GEGLU proj, Linear
    return {**_lin(p + "net.0.proj.", dim, dim * 4 * 2), **_lin(p + "net.2.", dim * 4, out)}


def _video_transformer(p: str, ch: int, depth: int, ctx: int) -> Shapes:
    """SpatialVideoTransformer (use_linear, ff_in, use_spatial_context: temporal context = context_dim)."""
    inner = ch  # n_heads * d_head with num_head_channels = d_head
    s = {**_norm(p + "norm.", ch), **_lin(p + "proj_in.", ch, inner), **_lin(p + "proj_out.", inner, ch),
         **_lin(p + "time_pos_embed.0.", ch, 4 * ch), **_lin(p + "time_pos_embed.2.", 4 * ch, ch),
         p + "time_mixer.mix_factor": (1,)}
    for d in range(depth):
        b, t = f"{p}transformer_blocks.{d}.", f"{p}time_stack.{d}."
        s.update({**_attn(b + "attn1.", inner, inner, inner), **_ff(b + "ff.", inner, inner),
                  **_attn(b + "attn2.", inner, ctx, inner), **_norm(b + "norm1.", inner),
                  **_norm(b + "norm2.", inner), **_norm(b + "norm3.", inner)})
        s.update({**_norm(t + "norm_in.", inner), **_ff(t + "ff_in.", inner, inner), **_attn(t + "attn1.", inner, inner, inner),
                  **_ff(t + "ff.", inner, inner), **_norm(t + "norm2.", inner), **_attn(t + "attn2.", inner, ctx, inner),
                  **_norm(t + "norm1.", inner), **_norm(t + "norm3.", inner)})
    return s


def unet_encoder(p: str, c: Layout) -> tuple[Shapes, list[int], int]:
    """VideoUNet / ControlNet up to the middle block -> (shapes, skip widths in hs order, ds at the bottom)."""
    mc, emb = c.model_channels, 4 * c.model_channels
    s = {**_lin(p + "time_embed.0.", mc, emb), **_lin(p + "time_embed.2.", emb, emb),
         **_lin(p + "label_emb.0.0.", c.adm_in_channels, emb), **_lin(p + "label_emb.0.2.", emb, emb),
         **_conv(p + "input_blocks.0.0.", c.in_channels, mc)}
    skips, ch, ds, n = [mc], mc, 1, 1
    for level, mult in enumerate(c.channel_mult):
        for _ in range(c.num_res_blocks):
            s.update(_video_resblock(f"{p}input_blocks.{n}.0.", ch, mult * mc, emb))
            ch = mult * mc
            if ds in c.attention_resolutions:
                s.update(_video_transformer(f"{p}input_blocks.{n}.1.", ch, c.transformer_depth, c.context_dim))
            skips.append(ch)
            n += 1
        if level != len(c.channel_mult) - 1:
            s.update(_conv(f"{p}input_blocks.{n}.0.op.", ch, ch))
            skips.append(ch)
            ds, n = ds * 2, n + 1
    s.update(_video_resblock(p + "middle_block.0.", ch, ch, emb))
    s.update(_video_transformer(p + "middle_block.1.", ch, c.transformer_depth, c.context_dim))
    s.update(_video_resblock(p + "middle_block.2.", ch, ch, emb))
    return s, skips, ds


def _merger(p: str, ch: int, head_dim: int) -> Shapes:
    t, inner = p + "temporal_transformer.", (ch // head_dim) * head_dim
    return {**_norm(t + "norm.", ch), **_lin(t + "proj_in.", ch, ch), **_attn(t + "attention.", ch, ch, inner),
            **_lin(t + "proj_out.", ch, ch)}


def video_unet_shapes(c: Layout, p: str = "model.diffusion_model.") -> Shapes:
    s, skips, ds = unet_encoder(p, c)
    for i, ch in enumerate(skips):
        s.update(_merger(f"{p}cross_attention_merger_input_blocks.{i}.", ch, c.merger_head_dim))
    mc, emb, ch = c.model_channels, 4 * c.model_channels, skips[-1]
    s.update(_merger(p + "cross_attention_merger_mid_block.", ch, c.merger_head_dim))
    n = 0
    for level, mult in reversed(list(enumerate(c.channel_mult))):
        for i in range(c.num_res_blocks + 1):
            s.update(_video_resblock(f"{p}output_blocks.{n}.0.", ch + skips.pop(), mc * mult, emb))
            ch, j = mc * mult, 1
            if ds in c.attention_resolutions:
                s.update(_video_transformer(f"{p}output_blocks.{n}.1.", ch, c.transformer_depth, c.context_dim))
                j = 2
            if level and i == c.num_res_blocks:
                s.update(_conv(f"{p}output_blocks.{n}.{j}.conv.", ch, ch))
                ds //= 2
            n += 1
    return {**s, **_norm(p + "out.0.", ch), **_conv(p + "out.2.", mc, c.out_channels)}


def controlnet_shapes(c: Layout, p: str = "controlnet.") -> Shapes:
    s = unet_encoder(p, c)[0]
    e, ch = p + "controlnet_cond_embedding.", c.cond_channels
    s.update(_conv(e + "conv_in.", 3, ch[0]))
    for j in range(len(ch) - 1):
        for k, (a, b) in enumerate([(ch[j], ch[j]), (ch[j], ch[j + 1])]):
            s.update(_conv(f"{e}blocks.{2 * j + k}.", a, b))
            s.update(_norm(f"{e}norms.{2 * j + k}.", b))
    return {**s, **_conv(e + "conv_out.", ch[-1], c.cond_out)}


def _ldm_resblock(p: str, ch: int, out: int) -> Shapes:  # ldm ResnetBlock with temb_channels=0
    s = {**_norm(p + "norm1.", ch), **_conv(p + "conv1.", ch, out), **_norm(p + "norm2.", out), **_conv(p + "conv2.", out, out)}
    return {**s, **_conv(p + "nin_shortcut.", ch, out, (1, 1))} if ch != out else s


def _attn_block(p: str, ch: int) -> Shapes:  # ldm AttnBlock: 1x1 convs
    return {
        **_norm(p + "norm.", ch),
        **{k: v for n in ("q", "k", "v", "proj_out") for k, v in _conv(f"{p}{n}.", ch, ch, (1, 1)).items()},
    }


def vae_encoder_shapes(p: str, c: Layout) -> Shapes:
    s, ch = _conv(p + "conv_in.", 3, c.vae_ch), c.vae_ch
    for i, mult in enumerate(c.vae_ch_mult):
        for j in range(c.vae_res_blocks):
            s.update(_ldm_resblock(f"{p}down.{i}.block.{j}.", ch, c.vae_ch * mult))
            ch = c.vae_ch * mult
        if i != len(c.vae_ch_mult) - 1:
            s.update(_conv(f"{p}down.{i}.downsample.conv.", ch, ch))
    s.update({
        **_ldm_resblock(p + "mid.block_1.", ch, ch), **_attn_block(p + "mid.attn_1.", ch),
        **_ldm_resblock(p + "mid.block_2.", ch, ch),
    })
    return {**s, **_norm(p + "norm_out.", ch), **_conv(p + "conv_out.", ch, 2 * c.z_channels)}


def vae_decoder_shapes(p: str, c: Layout, video: bool) -> Shapes:
    """ldm Decoder, or (video) VideoDecoder: VideoResBlocks (time_stack + mix_factor) and AE3DConv conv_out."""
    def block(q: str, a: int, b: int) -> Shapes:
        if not video:
            return _ldm_resblock(q, a, b)
        return {**_ldm_resblock(q, a, b), **_resblock(q + "time_stack.", b, b, None, (3, 1, 1)), q + "mix_factor": (1,)}

    ch = c.vae_ch * c.vae_ch_mult[-1]
    s = {**_conv(p + "conv_in.", c.z_channels, ch), **block(p + "mid.block_1.", ch, ch), **_attn_block(p + "mid.attn_1.", ch),
         **block(p + "mid.block_2.", ch, ch)}
    for i in reversed(range(len(c.vae_ch_mult))):
        for j in range(c.vae_res_blocks + 1):
            s.update(block(f"{p}up.{i}.block.{j}.", ch, c.vae_ch * c.vae_ch_mult[i]))
            ch = c.vae_ch * c.vae_ch_mult[i]
        if i != 0:
            s.update(_conv(f"{p}up.{i}.upsample.conv.", ch, ch))
    s.update({**_norm(p + "norm_out.", ch), **_conv(p + "conv_out.", ch, 3)})
    return {**s, **_conv(p + "conv_out.time_mix_conv.", 3, 3, (3, 1, 1))} if video else s


def conditioner_shapes(c: Layout, p: str = "conditioner.embedders.") -> Shapes:
    clip = p + "0.open_clip.model."
    s = openclip_visual_shapes(c.vision, clip + "visual.")
    s.update({clip + "token_embedding.weight": (
        c.vocab_size, c.text_width
    ), clip + "positional_embedding": (c.context_length, c.text_width),
              **_norm(clip + "ln_final.", c.text_width), clip + "text_projection": (c.text_width, c.vision["projection_dim"]),
              clip + "logit_scale": ()})
    ae, z = p + "3.encoder.", c.z_channels
    s.update({**vae_encoder_shapes(ae + "encoder.", c), **vae_decoder_shapes(ae + "decoder.", c, video=False),
              **_conv(ae + "quant_conv.", 2 * z, 2 * z, (1, 1)), **_conv(ae + "post_quant_conv.", z, z, (1, 1))})
    return s


def official_shapes(c: Layout) -> Shapes:
    """Every key of the StreamingSVD Lightning module's state dict for `c`'s sizes -> its shape."""
    return {**video_unet_shapes(c), **controlnet_shapes(c), **conditioner_shapes(c),
            **vae_encoder_shapes(
                "first_stage_model.encoder.", c
            ), **vae_decoder_shapes("first_stage_model.decoder.", c, video=True)}


def synthetic_state_dict(c: Layout, seed: int = 0, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Seeded random values in the official layout (meta tensors when device='meta')."""
    return state_from_shapes(official_shapes(c), seed, device)
