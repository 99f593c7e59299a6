"""The `toy` preset: this project's own architecture at toy size, trained here on procedural clips.

Same classes and code paths as every other text-to-video preset: a diffusers
`UNet3DConditionModel` + CAM + APM behind `T2VGenerator`, and a `UNet3DConditionModel`
SDEdit enhancer behind `VideoEnhancer`. Toy-specific choices, each for the 2-core CPU it was
trained on (see `stt2v_ray.train` and the training report beside the weights):
- a pixel-(un)shuffle autoencoder (`PixelShuffleVAE`): 32x32 frames -> 8x8x48 latents for
  the base model, 64x64 -> 16x16x48 for the 2x enhancer; exact and free;
- a word-level CLIP tokenizer over the clip grammar's words (other text falls back to
  characters), a 2-layer CLIP text encoder trained with each model;
- x0-prediction ("sample") on the cosine schedule. A first run with v-prediction (and a
  32-wide first level for the 48 packed channels) learned the clean picture but not the
  per-pixel noise at low noise levels, and its samples stayed noise; predicting x0 makes the
  last step output the model's clean estimate.

Weights ship in `stt2v_ray/weights/toy/` as float16 safetensors shards (loaded strictly into
float32 models): `t2v` (text encoder + streaming UNet with CAM and APM) and `enhancer`.
"""
from __future__ import annotations

from pathlib import Path

import torch
from diffusers import UNet3DConditionModel
from diffusers.models.attention_processor import AttnProcessor
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, CLIPVisionConfig, CLIPVisionModelWithProjection

from stt2v_ray.config import BaseModelSettings, EnhanceSettings, RunSettings
from stt2v_ray.data.clips import BACKGROUNDS, COLOURS, DIRECTIONS, SHAPES, SPEEDS
from stt2v_ray.models.blocks.apm import APM, APMAttnProcessor
from stt2v_ray.models.blocks.cam import CAM
from stt2v_ray.models.blocks.enhancer import VideoEnhancer
from stt2v_ray.models.blocks.pixel_vae import PixelShuffleVAE
from stt2v_ray.models.blocks.sharded import load_sharded
from stt2v_ray.models.blocks.text import BOS, EOS, bytes_to_unicode
from stt2v_ray.models.modelscope.streaming_unet3d import StreamingUNet3D
from stt2v_ray.models.modelscope.t2v import T2VGenerator

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights" / "toy"  # stt2v_ray/weights/toy
PREDICTION_TYPE, BETA_SCHEDULE = "sample", "squaredcos_cap_v2"
MAX_TOKENS = 16
CHUNK_FRAMES = 16  # frames of a base chunk, the preset's t2v.chunk_frames (the CAM's frame positions)
WIDTH = 64  # text/cross-attention width
BASE_FACTOR, ENHANCER_FACTOR = 4, 4  # pixel-unshuffle factors: 32x32 -> 8x8x48, 64x64 -> 16x16x48
GRAMMAR_WORDS = sorted(
    set(COLOURS) | set(SHAPES) | set(DIRECTIONS) | set(BACKGROUNDS) | {w for w in SPEEDS if w}
    | {"a", "an", "moving", "on", "background"}
)


# ---------------------------------------------------------------- text


def build_word_tokenizer(words=GRAMMAR_WORDS, max_length: int = MAX_TOKENS) -> CLIPTokenizer:
    """A CLIP BPE tokenizer whose merges spell each word of `words` as ONE token.

    Each word gets a chain of merges (w0+w1, w0w1+w2, ...). BPE applies the lowest-ranked merge
    present, so one word's chain can cut into another's; words that do not come out whole are
    moved to the front (their merges rank first) until all do.
    """
    chars = list(bytes_to_unicode().values())
    order = sorted(words, key=len, reverse=True)
    for _ in range(len(order) + 1):
        tokens, merges = chars + [c + "</w>" for c in chars], []
        for word in order:
            prefix = word[0]
            for i, c in enumerate(word[1:], 1):
                nxt = c + ("</w>" if i == len(word) - 1 else "")
                if (prefix, nxt) not in merges:
                    merges.append((prefix, nxt))
                prefix += nxt
                if prefix not in tokens:
                    tokens.append(prefix)
        vocab = {tok: i for i, tok in enumerate(tokens + [BOS, EOS])}
        tok = CLIPTokenizer(vocab=vocab, merges=merges, unk_token=EOS, bos_token=BOS, eos_token=EOS, pad_token=EOS)
        tok.model_max_length = max_length
        split = [w for w in order if len(tok(w).input_ids) != 3]  # BOS, word, EOS
        if not split:
            return tok
        order = split + [w for w in order if w not in split]
    raise ValueError(f"build_word_tokenizer: no merge order spells every word as one token (still split: {split})")


def build_text_encoder(tokenizer: CLIPTokenizer, seed: int = 0) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=WIDTH, intermediate_size=2 * WIDTH, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CLIPTextModel(config).eval()


# ---------------------------------------------------------------- architectures


def build_unet(latent_channels: int, seed: int = 0) -> UNet3DConditionModel:
    """3 levels (8x8 base / 16x16 enhancer grid); attention (spatial + temporal + text) on the two
    coarser levels and in the middle, none at full grid size (its cost dominated a CPU step); the
    prompt also enters the time embedding, so every ResNet block sees it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet3DConditionModel(
            in_channels=latent_channels, out_channels=latent_channels,
            down_block_types=("DownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D"),
            up_block_types=("CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "UpBlock3D"),
            block_out_channels=(48, 64, 96), layers_per_block=1, norm_num_groups=16,
            cross_attention_dim=WIDTH, attention_head_dim=4,  # diffusers' UNet3D reads this as the head count
            time_cond_proj_dim=MAX_TOKENS * WIDTH,  # the prompt's token states join the time embedding (models/text_time.py)
        )
        # zero: a model warm-started from weights without it computes what they computed
        torch.nn.init.zeros_(unet.time_embedding.cond_proj.weight)
        return unet


def build_cam(unet: UNet3DConditionModel) -> CAM:
    """The toy CAM: an encoder copy of `unet` (as it is now), frame encoder, injectors."""
    # frame positions: without them the per-pixel attention cannot tell chunk frames apart (the
    # toy UNet's temporal layers have no positional encoding), and a CAM trained here learned nothing
    cam = CAM(unet, vae_scale_factor=BASE_FACTOR, frame_channels=(16, 32), head_dim=32, frame_positions=CHUNK_FRAMES)
    # The official frame encoder ends in a zero conv, and the injectors' proj_out is zero too: two
    # zeros in a row, each with no gradient until the other moves. At toy size that CAM learned
    # nothing in 1,500 CPU steps; here the last conv starts at the default init, and proj_out
    # alone keeps a fresh CAM an exact no-op.
    cam.frame_encoder.conv_out.reset_parameters()
    return cam


def build_streaming_unet(seed: int = 0) -> StreamingUNet3D:
    """Streaming UNet: base UNet + CAM (its encoder copied now) + APM (processors installed)."""
    unet = build_unet(3 * BASE_FACTOR**2, seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        cam = build_cam(unet)
        vision = CLIPVisionModelWithProjection(CLIPVisionConfig(
            image_size=32, patch_size=8, hidden_size=WIDTH, intermediate_size=2 * WIDTH, num_hidden_layers=2,
            num_attention_heads=4, projection_dim=WIDTH,
        ))
        apm = APM(vision, cross_attention_dim=WIDTH, num_tokens=4)
        apm.install(unet, MAX_TOKENS)
    return StreamingUNet3D(unet, cam, apm).eval()


def recopy_cam(model: StreamingUNet3D, seed: int = 0) -> None:
    """A fresh CAM, ControlNet-style: its encoder a copy of the (trained) base UNet, its frame
    encoder and injectors at their seeded init (zero output), whatever an earlier export held (a
    warm-started base carries the CAM trained against the old base, whose features it no longer
    matches)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        model.cam = build_cam(model.unet)


def use_math_attention(module: torch.nn.Module) -> None:
    """Plain softmax attention: on a CPU its backward is ~1.4x faster than SDPA's at these sizes
    (training only; it computes the same function)."""
    for sub in module.modules():
        if hasattr(sub, "processor"):
            if isinstance(sub.processor, APMAttnProcessor):
                sub.processor.attend = AttnProcessor()
            else:
                sub.set_processor(AttnProcessor())


# ---------------------------------------------------------------- loading


def t2v_modules(seed: int = 0) -> tuple[CLIPTokenizer, CLIPTextModel, StreamingUNet3D]:
    tokenizer = build_word_tokenizer()
    return tokenizer, build_text_encoder(tokenizer, seed), build_streaming_unet(seed)


def enhancer_modules(seed: int = 0) -> tuple[CLIPTokenizer, CLIPTextModel, UNet3DConditionModel]:
    tokenizer = build_word_tokenizer()
    return tokenizer, build_text_encoder(tokenizer, seed), build_unet(3 * ENHANCER_FACTOR**2, seed)


# Keys added since weights were first exported, which a warm start (`--set <stage>.init=...`)
# may lack: the zero-initialised text->time projection (the older model computes what it did),
# and the CAM's frame positions (the cam stage builds a fresh CAM anyway).
ADDED_KEYS = ("time_embedding.cond_proj.weight", ".query_pos", ".key_pos")


def load_into(modules: dict[str, torch.nn.Module], folder: Path, name: str, allow_added: bool = False,
              only: bool = False) -> None:
    """Strictly load `name`'s shards into {prefix: module}; every missing/unexpected key is named.
    `allow_added`: keys of ADDED_KEYS may be missing (they keep the module's own init).
    `only`: load just these prefixes (e.g. {"model.cam": cam}); the export's other keys are ignored."""
    state = load_sharded(folder, name)
    for prefix, module in modules.items():
        own = {k[len(prefix) + 1:]: v.float() for k, v in state.items() if k.startswith(prefix + ".")}
        missing, unexpected = module.load_state_dict(own, strict=False)
        if allow_added:
            missing = [k for k in missing if not k.endswith(ADDED_KEYS)]
        if missing or unexpected:
            raise ValueError(
                f"toy weights {folder / name}: {prefix}: missing keys {sorted(missing)[:8]}"
                f"{' ...' if len(missing) > 8 else ''}, unexpected keys {sorted(unexpected)[:8]}"
            )
    extra = sorted({k.split(".", 1)[0] for k in state} - set(modules))
    if extra and not only:
        raise ValueError(f"toy weights {folder / name}: unexpected components {extra}")


def build_t2v(settings: BaseModelSettings, device="cpu", folder: Path | None = WEIGHTS_DIR) -> T2VGenerator:
    tokenizer, text_encoder, model = t2v_modules()
    if folder is not None:
        load_into({"text_encoder": text_encoder, "model": model}, folder, "t2v")
    return T2VGenerator(tokenizer, text_encoder.to(device), PixelShuffleVAE(BASE_FACTOR).to(device), model.to(device),
                        settings, device, prediction_type=PREDICTION_TYPE, beta_schedule=BETA_SCHEDULE)


def build_enhancer(settings: EnhanceSettings, base_height: int, base_width: int, device="cpu",
                   folder: Path | None = WEIGHTS_DIR) -> VideoEnhancer:
    if settings.scale != 2:
        raise ValueError(f"the toy enhancer was trained at scale 2, got enhance.scale={settings.scale}")
    tokenizer, text_encoder, unet = enhancer_modules()
    if folder is not None:
        load_into({"text_encoder": text_encoder, "unet": unet}, folder, "enhancer")
    return VideoEnhancer(tokenizer, text_encoder.to(device), PixelShuffleVAE(ENHANCER_FACTOR).to(device), unet.to(device).eval(),
                         settings, base_height, base_width, device, prediction_type=PREDICTION_TYPE, beta_schedule=BETA_SCHEDULE)


def shipped_weights(enhance: bool = True, folder: Path = WEIGHTS_DIR) -> dict[str, str]:
    """The shipped weight files a run needs (by index); MissingWeightsError when a build lacks them."""
    from stt2v_ray.models.blocks.weights import MissingWeightsError
    from stt2v_ray.presets import WeightSource

    found, missing = {}, []
    for name in ["t2v"] + (["enhancer"] if enhance else []):
        index = folder / f"{name}.index.json"
        if index.is_file():
            found[name] = str(index)
        else:
            missing.append((WeightSource(name, None, index.name, f"trained by `stt2v-ray train`, shipped in {folder}"),
                            f"{index} is missing (an install without the package data?)"))
    if missing:
        raise MissingWeightsError("toy", missing)
    return found


# ---------------------------------------------------------------- preset builders


def t2v(run: RunSettings, device="cpu"):
    return build_t2v(run.t2v, device)


def enhancer(run: RunSettings, base_height: int, base_width: int, device="cpu"):
    return build_enhancer(run.enhance, base_height, base_width, device)
