"""StreamingSVD checkpoint conversion: official (sgm) key layout -> ours, strict loading, safe reading.

The official layout comes from `official_streamingsvd_layout`, written from the original's module
structure, independently of the converter's rename tables.
"""
from __future__ import annotations

import pickle

import pytest
import torch

from stt2v_ray.models.blocks.checkpoint import UnsafeCheckpointError, read_checkpoint
from stt2v_ray.models.svd import convert as convert_svd
from stt2v_ray.models.svd.streamingsvd import TOY_UNET, TOY_VAE, build_models
from tests.models import official_streamingsvd_layout as layout

TEXT_LEFTOVERS = [
    "token_embedding.weight", "positional_embedding", "ln_final.weight", "ln_final.bias", "text_projection", "logit_scale"
]


def _models():
    streaming, vae, image_encoder = build_models("toy")
    return {"streaming": streaming, "vae": vae, "image_encoder": image_encoder}


def _convert(state):
    return convert_svd.convert_state_dict(state, unet_config=TOY_UNET, vae_levels=len(TOY_VAE["block_out_channels"]),
                                          vae_layers=TOY_VAE["layers_per_block"])


@pytest.fixture(scope="module")
def toy_state():
    return layout.synthetic_state_dict(layout.TOY, seed=3)


def _ignored(state) -> list[str]:
    return sorted(k for k in state if k.startswith(convert_svd.IGNORED) or
                  (k.startswith(convert_svd.CLIP) and not k.startswith(convert_svd.CLIP + "visual.")))


def test_toy_official_layout_converts_and_loads_strictly_to_the_right_places(toy_state):
    state = toy_state
    assert convert_svd.is_official_layout(state) and len(state) == 1238
    ours, unplaced = _convert(state)
    assert unplaced == []
    models = _models()
    convert_svd.load_strict(models, ours)
    s, vae, clip = models["streaming"], models["vae"], models["image_encoder"]
    U, C = "model.diffusion_model.", "controlnet."
    same = [
        (s.unet.down_blocks[0].resnets[0].temporal_res_block.conv1.weight, U + "input_blocks.1.0.time_stack.in_layers.2.weight"),
        (s.unet.down_blocks[0].resnets[0].time_mixer.mix_factor, U + "input_blocks.1.0.time_mixer.mix_factor"),
        (s.unet.down_blocks[0].downsamplers[0].conv.weight, U + "input_blocks.2.0.op.weight"),
        (s.unet.down_blocks[1].resnets[0].spatial_res_block.conv_shortcut.bias, U + "input_blocks.3.0.skip_connection.bias"),
        (s.unet.add_embedding.linear_2.bias, U + "label_emb.0.2.bias"),
        (s.unet.mid_block.attentions[0].time_pos_embed.linear_2.weight, U + "middle_block.1.time_pos_embed.2.weight"),
        (s.unet.mid_block.resnets[1].spatial_res_block.time_emb_proj.weight, U + "middle_block.2.emb_layers.1.weight"),
        (s.unet.up_blocks[0].upsamplers[0].conv.weight, U + "output_blocks.1.1.conv.weight"),
        (s.unet.up_blocks[1].attentions[0].temporal_transformer_blocks[0].attn2.to_k.weight,
         U + "output_blocks.2.1.time_stack.0.attn2.to_k.weight"),
        (s.unet.up_blocks[1].attentions[1].transformer_blocks[0].ff.net[0].proj.weight,
         U + "output_blocks.3.1.transformer_blocks.0.ff.net.0.proj.weight"),
        (s.unet.conv_out.weight, U + "out.2.weight"),
        (
            s.injectors[3].to_out.weight,
            U + "cross_attention_merger_input_blocks.3.temporal_transformer.attention.to_out.0.weight",
        ),
        (s.injectors[0].to_q.weight, U + "cross_attention_merger_input_blocks.0.temporal_transformer.attention.to_q.weight"),
        (s.mid_injector.norm.bias, U + "cross_attention_merger_mid_block.temporal_transformer.norm.bias"),
        (s.cam.time_embedding.linear_1.weight, C + "time_embed.0.weight"),
        (s.cam.down_blocks[1].resnets[0].spatial_res_block.conv_shortcut.weight, C + "input_blocks.3.0.skip_connection.weight"),
        (s.cam.mid_block.attentions[0].proj_in.weight, C + "middle_block.1.proj_in.weight"),
        (s.frame_encoder.norms[3].weight, C + "controlnet_cond_embedding.norms.3.weight"),
        (s.frame_encoder.conv_out.bias, C + "controlnet_cond_embedding.conv_out.bias"),
        # the VAE as the original runs it: the conditioner's autoencoder encodes, first_stage_model decodes
        (vae.encoder.conv_in.weight, "conditioner.embedders.3.encoder.encoder.conv_in.weight"),
        (
            vae.encoder.down_blocks[1].resnets[0].conv1.weight,
            "conditioner.embedders.3.encoder.encoder.down.1.block.0.conv1.weight",
        ),
        (vae.quant_conv.weight, "conditioner.embedders.3.encoder.quant_conv.weight"),
        (
            vae.decoder.up_blocks[2].resnets[2].temporal_res_block.conv2.weight,
            "first_stage_model.decoder.up.0.block.2.time_stack.out_layers.3.weight",
        ),
        (vae.decoder.up_blocks[0].upsamplers[0].conv.bias, "first_stage_model.decoder.up.2.upsample.conv.bias"),
        (vae.decoder.mid_block.resnets[1].time_mixer.mix_factor, "first_stage_model.decoder.mid.block_2.mix_factor"),
        (vae.decoder.time_conv_out.weight, "first_stage_model.decoder.conv_out.time_mix_conv.weight"),
        (
            clip.vision_model.encoder.layers[1].mlp.fc1.weight,
            "conditioner.embedders.0.open_clip.model.visual.transformer.resblocks.1.mlp.c_fc.weight",
        ),
        (clip.vision_model.embeddings.class_embedding, "conditioner.embedders.0.open_clip.model.visual.class_embedding"),
    ]
    for param, key in same:
        assert torch.equal(param, state[key]), key
    assert torch.equal(
        vae.decoder.mid_block.attentions[0].to_q.weight, state["first_stage_model.decoder.mid.attn_1.q.weight"][:, :, 0, 0]
    )
    assert not torch.equal(vae.encoder.conv_in.weight, state["first_stage_model.encoder.conv_in.weight"])
    q, k, v = state["conditioner.embedders.0.open_clip.model.visual.transformer.resblocks.0.attn.in_proj_weight"].chunk(3)
    attn = clip.vision_model.encoder.layers[0].self_attn
    assert torch.equal(attn.q_proj.weight, q) and torch.equal(attn.k_proj.weight, k) and torch.equal(attn.v_proj.weight, v)
    assert torch.equal(clip.visual_projection.weight, state["conditioner.embedders.0.open_clip.model.visual.proj"].T)


def test_exactly_the_unused_parts_are_dropped(toy_state):
    ignored = _ignored(toy_state)
    clip = convert_svd.CLIP
    assert [k for k in ignored if k.startswith(clip)] == sorted(clip + k for k in TEXT_LEFTOVERS)
    groups = {g: sum(k.startswith(g) for k in ignored) for g in convert_svd.IGNORED}
    assert sum(groups.values()) + len(TEXT_LEFTOVERS) == len(ignored)
    # the unused copies: a whole 2-D decoder, post_quant_conv, and an encoder as big as the one used
    ae = convert_svd.COND_AE
    assert groups == {ae + "decoder.": 108, ae + "post_quant_conv.": 2,
                      "first_stage_model.encoder.": sum(k.startswith(ae + "encoder.") for k in toy_state)}
    ours, _ = _convert(toy_state)
    in_proj = sum(k.endswith(("attn.in_proj_weight", "attn.in_proj_bias")) for k in toy_state)
    assert len(ours) == len(toy_state) - len(ignored) + 2 * in_proj  # each fused qkv becomes three
    changed = dict(toy_state, **{k: toy_state[k] + 1 for k in ignored})
    again, _ = _convert(changed)
    assert all(torch.equal(ours[k], again[k]) for k in ours)


def test_full_size_layout_maps_key_by_key():
    """The official layout of the FULL model (meta tensors) lands exactly on our full-size models."""
    state = layout.synthetic_state_dict(layout.FULL, device="meta")
    assert len(state) == 3246
    # the fixture's base UNet has the published SVD-XT size (1.52 B parameters)
    base = [k for k in state if k.startswith(
        "model.diffusion_model."
    ) and not k.startswith("model.diffusion_model.cross_attention_merger_")]
    assert sum(state[k].numel() for k in base) == 1_524_623_082
    ours, unplaced = convert_svd.convert_state_dict(state)
    assert unplaced == []
    with torch.device("meta"):
        streaming, vae, image_encoder = build_models("full")
    expected = {f"{p}.{k}": tuple(v.shape) for p, m in (("streaming", streaming), ("vae", vae), ("image_encoder", image_encoder))
                for k, v in m.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in ours.items()} == expected
    assert len(expected) == 3122 and len(_ignored(state)) == 252


def test_unknown_key_is_reported_by_name_and_missing_key_fails_strict_loading(toy_state):
    state = dict(toy_state)
    state["model.diffusion_model.input_blocks.99.0.in_layers.0.weight"] = torch.zeros(1)
    state["first_stage_model.quant_conv.weight"] = torch.zeros(1)
    _, unplaced = _convert(state)
    assert unplaced == ["model.diffusion_model.input_blocks.99.0.in_layers.0.weight (no rule for this UNet key)",
                        "first_stage_model.quant_conv.weight (no rule for this VAE key)"]

    state = dict(toy_state)
    del state["controlnet.middle_block.1.proj_in.weight"], state["conditioner.embedders.3.encoder.quant_conv.bias"]
    ours, unplaced = _convert(state)
    assert unplaced == []
    with pytest.raises(ValueError, match=r"2 missing key\(s\) \['streaming.cam.mid_block.attentions.0.proj_in.weight', "
                                         r"'vae.quant_conv.bias'\]"):
        convert_svd.load_strict(_models(), ours)


def test_weights_only_refuses_a_pickle_with_an_arbitrary_object(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hook": pickle.PickleError("x")}, path)
    with pytest.raises(UnsafeCheckpointError, match="refused by torch.load\\(weights_only=True\\)"):
        read_checkpoint(path)
    clean = tmp_path / "clean.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}}, clean)
    assert torch.equal(read_checkpoint(clean)["w"], torch.ones(2))


def test_cli_convert_writes_safetensors_and_exits_1_on_unplaced(tmp_path, toy_state):
    from safetensors.torch import save_file

    from stt2v_ray.cli import main

    state = dict(toy_state)
    state["somewhere.else"] = torch.zeros(1)
    src = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(src))
    out = tmp_path / "ours.safetensors"
    code = main(["convert", "--preset", "streamingsvd-toy", "--input", str(src), "--output", str(out)])
    assert code == 1 and out.is_file()
    written = read_checkpoint(out)
    assert "somewhere.else" not in written
    convert_svd.load_strict(_models(), written)
