"""The four training stages, as the paper trains StreamingT2V (on toy clips, at toy size):

1. `base`: the text-to-video UNet and its text encoder, on 16-frame clips.
2. `cam`: the CAM with everything else frozen: a fresh CAM whose encoder is a copy of the
   trained base encoder (ControlNet-style), injectors at their zero-output init
   (`toy.recopy_cam`), or with `cam.init` the CAM of an earlier export; windows of longer
   clips, high-noise timesteps favoured (`t_power`). It learns to continue a clip from its
   first 8 frames (the previous chunk's last 8 at inference). The 8 new frames are in the
   loss; the regenerated ones, which the pipeline drops, count with `cond_loss_weight`:
   reproducing them is an easier, denser signal that teaches the injectors to carry the
   conditioning frames, and the new frames start from them.
3. `apm`: the APM (image encoder, token MLP, the mixers in every spatial cross-attention),
   the rest frozen: a chunk from later in a clip, conditioned on the clip's first frame.
4. `enhancer`: the 2x SDEdit enhancer UNet and its text encoder, on 64x64 clips, noise levels
   up to t=700 (SDEdit starts at strength 0.6 x 1000).

All predict x0 ("sample") on the cosine schedule in pixel-unshuffled space
(`stt2v_ray.models.toy.toy`), the parametrisation the toy generators sample with; `object_weight`
weights the object's pixels in the loss. A stage is a `Setup`: the modules it saves, the
parameters it trains, and its loss.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stt2v_ray.models.blocks.text_time import unet_kwargs
from stt2v_ray.models.toy import toy
from stt2v_ray.plan.samplers import alphas_cumprod
from stt2v_ray.train.config import StageSettings, check_warm_start
from stt2v_ray.train.data import COND, Batch, noise_draws

ALPHAS = alphas_cumprod(1000, toy.BETA_SCHEDULE)
T_MAX = {"base": 1000, "cam": 1000, "apm": 1000, "enhancer": 700}
EXPORT_NAME = {"base": "t2v", "cam": "t2v", "apm": "t2v", "enhancer": "enhancer"}  # the weights file a stage writes


@dataclass
class Setup:
    stage: str
    export_name: str  # "t2v" or "enhancer": the weights file it (re)writes
    modules: dict[str, nn.Module]  # prefix -> module: everything saved under export_name
    trainable: dict[str, nn.Parameter]  # "prefix.name" -> parameter
    loss: Callable[[Batch, int], Tensor]  # (batch, step) -> scalar


def named(modules: dict[str, nn.Module], keep: Callable[[str], bool]) -> dict[str, nn.Parameter]:
    params = {}
    for prefix, module in modules.items():
        for name, p in module.named_parameters():
            full = f"{prefix}.{name}"
            p.requires_grad_(keep(full))
            if p.requires_grad:
                params[full] = p
    return params


def to_latents(frames: Tensor, factor: int) -> Tensor:
    """(B, F, 3, H, W) -> (B, 3 f^2, F, H/f, W/f), what PixelShuffleVAE.encode gives per frame."""
    b, f = frames.shape[:2]
    z = F.pixel_unshuffle(frames.flatten(0, 1), factor)
    return z.reshape(b, f, *z.shape[1:]).permute(0, 2, 1, 3, 4)


def noised(x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
    """x_t for clean x0 at integer timesteps t (B,); the target is x0 itself."""
    ab = ALPHAS[t].view(-1, *([1] * (x0.ndim - 1)))
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def encode_prompts(tokenizer, text_encoder, prompts: list[str], drop: Tensor) -> Tensor:
    texts = ["" if d else p for p, d in zip(prompts, drop.tolist(), strict=False)]
    ids = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    return text_encoder(ids)[0]


def init_folder(init: str | None) -> Path | None:
    return None if init is None else (toy.WEIGHTS_DIR if init == "shipped" else Path(init))


def object_weighted_mse(pred: Tensor, target: Tensor, weight: Tensor | None) -> Tensor:
    """sum(w (pred - target)^2) / sum(w); plain MSE for weight None."""
    if weight is None:
        return F.mse_loss(pred, target)
    return (weight * (pred - target) ** 2).sum() / weight.sum()


def loss_weights(batch: Batch, factor: int, object_weight: float) -> Tensor | None:
    """Per latent element: 1 on the background, `object_weight` where the object covers a pixel.

    The object covers ~6% of a toy frame, and its colour, shape and motion are all there; with
    plain MSE the background dominates and the prompt's colour is learned last (if at all)."""
    if object_weight == 1.0:
        return None
    weight = 1 + (object_weight - 1) * batch.coverage.expand(-1, -1, 3, -1, -1)
    return to_latents(weight, factor)


def setup_stage(stage: str, seed: int, weights: Path, st: StageSettings | None = None) -> Setup:
    """Modules, trainable parameters and loss of one stage; `st` None: StageSettings' defaults."""
    st = st or StageSettings(steps=1)
    check_warm_start(stage, st.init)
    if stage == "enhancer":
        tokenizer, text_encoder, unet = toy.enhancer_modules(seed)
        modules = {"text_encoder": text_encoder, "unet": unet}
        if st.init is not None:
            toy.load_into(modules, init_folder(st.init), "enhancer", allow_added=True)
        trainable = named(modules, lambda n: True)

        def enhancer_loss(batch: Batch, step: int) -> Tensor:
            x0 = to_latents(batch.frames, toy.ENHANCER_FACTOR)
            t, noise, drop = noise_draws(seed, stage, step, tuple(x0.shape), T_MAX[stage], st.text_dropout, st.t_power)
            x_t = noised(x0, t, noise)
            text = encode_prompts(tokenizer, text_encoder, batch.prompts, drop)
            pred = unet(x_t, t, encoder_hidden_states=text, **unet_kwargs(unet, text)).sample.float()
            return object_weighted_mse(pred, x0, loss_weights(batch, toy.ENHANCER_FACTOR, st.object_weight))

        return Setup(stage, EXPORT_NAME[stage], modules, trainable, enhancer_loss)

    tokenizer, text_encoder, model = toy.t2v_modules(seed)
    modules = {"text_encoder": text_encoder, "model": model}
    if stage == "base":
        if st.init is not None:  # everything the export holds (CAM and APM included) carries on
            toy.load_into(modules, init_folder(st.init), "t2v", allow_added=True)
        # the APM mixers are installed but unused without image tokens: not trained here
        trainable = named(modules, lambda n: n.startswith("text_encoder.") or
                          (n.startswith("model.unet.") and ".processor." not in n))
    else:
        toy.load_into(modules, weights, "t2v")  # the previous stage's export
        if stage == "cam":
            if st.init is None:
                toy.recopy_cam(model, seed)
            else:  # a CAM trained against an earlier base carries on: it adapts faster than a fresh copy learns
                toy.load_into({"model.cam": model.cam}, init_folder(st.init), "t2v", only=True)
            trainable = named(modules, lambda n: n.startswith("model.cam."))
        elif stage == "apm":
            mixers = {f"model.unet.{k}" for k, _ in model.unet.named_parameters() if ".processor." in k}
            trainable = named(modules, lambda n: n.startswith("model.apm.") or n in mixers)
        else:
            raise ValueError(f"unknown stage {stage!r}")
    if stage != "base":
        text_encoder.requires_grad_(False)

    def t2v_loss(batch: Batch, step: int) -> Tensor:
        x0 = to_latents(batch.frames, toy.BASE_FACTOR)
        t, noise, drop = noise_draws(seed, stage, step, tuple(x0.shape), T_MAX[stage], st.text_dropout, st.t_power)
        x_t = noised(x0, t, noise)
        text = encode_prompts(tokenizer, text_encoder, batch.prompts, drop)
        w = loss_weights(batch, toy.BASE_FACTOR, st.object_weight)
        if stage == "base":
            return object_weighted_mse(model(x_t, t, text).float(), x0, w)
        cond = batch.frames[:, :COND]
        tokens = None
        if stage == "apm":  # unconditional half at inference: negative prompt + a zero (mid-grey) anchor
            anchors = torch.where(drop.view(-1, 1, 1, 1), torch.zeros_like(batch.anchors), batch.anchors)
            tokens = model.apm(anchors)
        pred = model(x_t, t, text, cond, tokens).float()

        def frames_loss(frames: slice) -> Tensor:
            return object_weighted_mse(pred[:, :, frames], x0[:, :, frames], None if w is None else w[:, :, frames])

        loss = frames_loss(slice(COND, None))  # the new frames
        if st.cond_loss_weight:  # + the regenerated conditioning frames (dropped by the pipeline)
            loss = loss + st.cond_loss_weight * frames_loss(slice(None, COND))
        return loss

    return Setup(stage, EXPORT_NAME[stage], modules, trainable, t2v_loss)


