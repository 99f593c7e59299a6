"""streaming_t2v.ckpt (official StreamingModelscope layout) -> our StreamingUNet3D, strictly."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from stt2v_ray.models.blocks.checkpoint import UnsafeCheckpointError, read_checkpoint
from stt2v_ray.models.modelscope.convert import (
    convert_streamingt2v,
    convert_streamingt2v_report,
    openclip_visual_to_transformers,
)
from stt2v_ray.models.modelscope.streamingt2v import FULL, TOY, build_streaming_model, load_streaming_state, load_strict
from tests.models.official_streamingt2v_layout import openclip_visual_shapes, synthetic_state_dict


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "streaming_t2v.ckpt"
    state = synthetic_state_dict(TOY, seed=3)
    torch.save({"state_dict": state, "epoch": 7, "global_step": 1234}, path)  # Lightning-style, tensors only
    return path, state


def test_toy_checkpoint_converts_and_loads_strictly(ckpt):
    path, state = ckpt
    report = convert_streamingt2v_report(read_checkpoint(path))  # torch.load(weights_only=True)
    assert report.unplaced == []
    assert sorted(report.ignored) == sorted(k for k in state if k.startswith(("text_encoder.", "vae.")) or
                                            (k.startswith("image_encoder.model.") and ".visual." not in k))
    model = build_streaming_model(TOY)
    load_strict(model, report.converted, source=str(path))
    merger = "base_model.cross_attention_merger_down_blocks.4.temporal_transformer."
    inj = model.cam.skip_injectors[4]
    assert torch.equal(inj.to_out.weight, state[merger + "attention.to_out.0.weight"])
    assert torch.equal(inj.norm.bias, state[merger + "norm.bias"])
    assert torch.equal(model.cam.mid_injector.to_k.weight,
                       state["base_model.cross_attention_merger_mid_block.temporal_transformer.attention.to_k.weight"])
    proc = model.unet.up_blocks[1].attentions[2].transformer_blocks[0].attn2.processor
    a = "base_model.up_blocks.1.attentions.2.transformer_blocks.0.attn2."
    assert torch.equal(proc.alpha, state[a + "alpha"]) and torch.equal(proc.norm.weight, state[a + "conv_ln.weight"])
    assert torch.equal(model.cam.frame_encoder.body[8].weight, state["unet.controlnet_cond_embedding.blocks.3.weight"])
    assert torch.equal(model.cam.down_blocks[1].resnets[0].conv1.weight, state["unet.down_blocks.1.resnets.0.conv1.weight"])
    assert torch.equal(
        model.unet.down_blocks[1].resnets[0].conv1.weight, state["base_model.down_blocks.1.resnets.0.conv1.weight"]
    )
    assert torch.equal(model.apm.mlp[2].bias, state["resampler.context_embedding.2.bias"])
    vis = model.apm.image_encoder
    q, k, v = state["image_encoder.model.visual.transformer.resblocks.1.attn.in_proj_weight"].chunk(3)
    attn = vis.vision_model.encoder.layers[1].self_attn
    assert torch.equal(attn.q_proj.weight, q) and torch.equal(attn.k_proj.weight, k) and torch.equal(attn.v_proj.weight, v)
    assert torch.equal(vis.visual_projection.weight, state["image_encoder.model.visual.proj"].T)
    # the builder's loader converts a .ckpt in memory to the same dict
    loaded = load_streaming_state(path)
    assert loaded.keys() == report.converted.keys() and all(torch.equal(loaded[k], report.converted[k]) for k in loaded)


def test_full_size_layout_maps_key_by_key():
    """The official layout of the FULL model (meta tensors) lands exactly on our full-size model."""
    report = convert_streamingt2v_report(synthetic_state_dict(FULL, device="meta"))
    with torch.device("meta"):
        model = build_streaming_model(FULL)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert report.unplaced == []
    assert {k: tuple(v.shape) for k, v in report.converted.items()} == ours
    assert len(ours) == 2909


def test_unknown_and_missing_keys_are_named(ckpt):
    _, state = ckpt
    bad = dict(state)
    bad["base_model.bogus_layer.weight"] = torch.zeros(1)
    bad["unet.controlnet_extra.weight"] = torch.zeros(1)
    _, unplaced = convert_streamingt2v(bad)
    # base_model.* is placed under unet.* by name; strict loading then names it
    assert unplaced == ["unet.controlnet_extra.weight"]
    converted, _ = convert_streamingt2v(bad)
    with pytest.raises(ValueError, match=r"0 missing key\(s\) \[\], 1 unexpected key\(s\) \['unet.bogus_layer.weight'\]"):
        load_strict(build_streaming_model(TOY), converted, source="x.ckpt")
    del bad[
        "base_model.bogus_layer.weight"
    ], bad["base_model.cross_attention_merger_mid_block.temporal_transformer.proj_out.bias"]
    converted, _ = convert_streamingt2v(bad)
    with pytest.raises(
        ValueError, match=r"x.ckpt: strict loading failed: 1 missing key\(s\) \['cam.mid_injector.proj_out.bias'\]"
    ):
        load_strict(build_streaming_model(TOY), converted, source="x.ckpt")


class NotATensor:  # an arbitrary object in a pickle: the weights-only reader must refuse it
    pass


def test_weights_only_refuses_objects(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hparams": NotATensor()}, path)
    with pytest.raises(UnsafeCheckpointError, match="refused by torch.load\\(weights_only=True\\)"):
        load_streaming_state(path)


def _openclip_reference(sd: dict, cfg: CLIPVisionConfig, pixels: torch.Tensor) -> torch.Tensor:
    """OpenCLIP VisionTransformer.forward written from its layout (tok pooling, ln_post, @ proj)."""
    w = cfg.hidden_size
    x = F.conv2d(pixels, sd["conv1.weight"], stride=cfg.patch_size).flatten(2).transpose(1, 2)
    x = torch.cat([sd["class_embedding"].expand(x.shape[0], 1, w), x], 1) + sd["positional_embedding"]
    x = F.layer_norm(x, (w,), sd["ln_pre.weight"], sd["ln_pre.bias"])
    for i in range(cfg.num_hidden_layers):
        r = f"transformer.resblocks.{i}."
        mha = torch.nn.MultiheadAttention(w, cfg.num_attention_heads, batch_first=True)
        mha.load_state_dict({"in_proj_weight": sd[r + "attn.in_proj_weight"], "in_proj_bias": sd[r + "attn.in_proj_bias"],
                             "out_proj.weight": sd[r + "attn.out_proj.weight"], "out_proj.bias": sd[r + "attn.out_proj.bias"]})
        h = F.layer_norm(x, (w,), sd[r + "ln_1.weight"], sd[r + "ln_1.bias"])
        x = x + mha(h, h, h, need_weights=False)[0]
        h = F.layer_norm(x, (w,), sd[r + "ln_2.weight"], sd[r + "ln_2.bias"])
        x = x + F.linear(
            F.gelu(F.linear(h, sd[r + "mlp.c_fc.weight"], sd[r + "mlp.c_fc.bias"])), sd[r + "mlp.c_proj.weight"],
            sd[r + "mlp.c_proj.bias"],
        )
    pooled = F.layer_norm(x[:, 0], (w,), sd["ln_post.weight"], sd["ln_post.bias"])
    return pooled @ sd["proj"]


def test_openclip_and_transformers_layouts_are_the_same_network():
    cfg = CLIPVisionConfig(**TOY.vision)
    g = torch.Generator().manual_seed(5)
    sd = {k: torch.randn(s, generator=g) * 0.2 for k, s in openclip_visual_shapes(TOY.vision).items()}
    converted, unplaced = openclip_visual_to_transformers(sd)
    assert unplaced == []
    model = CLIPVisionModelWithProjection(cfg).eval()
    model.load_state_dict(converted, strict=True)
    pixels = torch.randn((2, 3, 32, 32), generator=g)
    with torch.no_grad():
        torch.testing.assert_close(
            model(pixel_values=pixels).image_embeds, _openclip_reference(sd, cfg, pixels), rtol=1e-4, atol=1e-5
        )
