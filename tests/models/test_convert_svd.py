"""StreamingSVD checkpoint conversion: official (sgm) key layout -> ours, strict loading, safe reading."""
from __future__ import annotations

import pickle

import pytest
import torch

from stt2v_ray.models import convert_svd
from stt2v_ray.models.convert import UnsafeCheckpointError, read_checkpoint
from stt2v_ray.models.streamingsvd import TOY_UNET, build_models


def _models():
    streaming, vae, image_encoder = build_models("toy")
    return {"streaming": streaming, "vae": vae, "image_encoder": image_encoder}


def official_state(models) -> dict[str, torch.Tensor]:
    """A synthetic checkpoint in the original's key layout for the toy configuration.

    Built by renaming our toy models' tensors into the original's names with the rule tables
    reversed (sgm prefixes per block), plus the keys the original stores and we drop.
    NOTE: the names come from the same tables the converter uses, so this checks completeness,
    shapes and strictness, not the tables' agreement with the real file.
    """
    ours = {f"{p}.{k}": v.clone() for p, m in models.items() for k, v in m.state_dict().items()}
    out = {}
    unet_rules = convert_svd.unet_blocks(TOY_UNET)
    cam_rules = convert_svd.unet_blocks(TOY_UNET, encoder_only=True)
    vae_rules = convert_svd._vae_blocks(3, 1)

    def back(rest, rules, prefix):
        for a, b, sub in sorted(rules, key=lambda r: -len(r[1])):
            if rest.startswith(b):
                tail = rest[len(b):]
                if sub:
                    for sa, sb in sorted(sub, key=lambda r: -len(r[1])):
                        if tail.startswith(sb):
                            return prefix + a + sa + tail[len(sb):]
                    return None
                return prefix + a + tail
        return None

    for key, v in ours.items():
        if key.startswith("streaming.unet."):
            new = back(key[len("streaming.unet."):], unet_rules, convert_svd.UNET)
        elif key.startswith("streaming.cam."):
            new = back(key[len("streaming.cam."):], cam_rules, convert_svd.CAM)
        elif key.startswith("streaming.frame_encoder."):
            new = convert_svd.CAM + "controlnet_cond_embedding." + key[len("streaming.frame_encoder."):]
        elif key.startswith(("streaming.injectors.", "streaming.mid_injector.")):
            head, _, tail = key.partition("injector")
            idx = key.split(".")[2] if key.startswith("streaming.injectors.") else None
            tail = key.split(".", 3 if idx else 2)[-1]
            tail = {"to_out": "attention.to_out.0", "to_q": "attention.to_q", "to_k": "attention.to_k", "to_v": "attention.to_v"}.get(
                tail.split(".")[0], tail.split(".")[0]) + "." + tail.split(".", 1)[1]
            where = f"input_blocks.{idx}" if idx else "mid_block"
            new = f"{convert_svd.UNET}cross_attention_merger_{where}.temporal_transformer.{tail}"
        elif key.startswith("vae.quant_conv."):
            continue  # the original has none
        elif key.startswith("vae."):
            new = back(key[len("vae."):], vae_rules, convert_svd.FIRST_STAGE)
            if new and new.split(".")[-2] in ("q", "k", "v", "proj_out") and v.ndim == 2:
                v = v[:, :, None, None]
        elif key.startswith("image_encoder."):
            continue  # added below in OpenCLIP layout
        assert new is not None, key
        out[new] = v
    # OpenCLIP visual tower (fused qkv, transposed projection)
    clip = convert_svd.CLIP + "visual."
    enc = models["image_encoder"]
    sd = enc.state_dict()
    out[clip + "conv1.weight"] = sd["vision_model.embeddings.patch_embedding.weight"]
    out[clip + "class_embedding"] = sd["vision_model.embeddings.class_embedding"]
    out[clip + "positional_embedding"] = sd["vision_model.embeddings.position_embedding.weight"]
    for a, b in (("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")):
        for p in ("weight", "bias"):
            out[f"{clip}{a}.{p}"] = sd[f"vision_model.{b}.{p}"]
    out[clip + "proj"] = sd["visual_projection.weight"].t().contiguous()
    for i in range(enc.config.num_hidden_layers):
        L = f"vision_model.encoder.layers.{i}."
        r = f"{clip}transformer.resblocks.{i}."
        for p in ("weight", "bias"):
            out[f"{r}attn.in_proj_{p}"] = torch.cat([sd[f"{L}self_attn.{q}_proj.{p}"] for q in "qkv"])
            for a, b in (("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"), ("attn.out_proj", "self_attn.out_proj"),
                         ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
                out[f"{r}{a}.{p}"] = sd[f"{L}{b}.{p}"]
    # what the original stores and we deliberately drop
    out[convert_svd.CLIP + "logit_scale"] = torch.ones(())
    for k in [k for k in out if k.startswith(convert_svd.FIRST_STAGE + "encoder.")]:
        out[convert_svd.VAE_COPY + k[len(convert_svd.FIRST_STAGE + "encoder."):]] = out[k].clone()
    return out


def _convert(state):
    return convert_svd.convert_state_dict(state, unet_config=TOY_UNET, vae_levels=3, vae_layers=1)


def test_official_layout_converts_and_loads_strictly_with_equal_tensors():
    src = _models()
    with torch.no_grad():
        for p in src["streaming"].parameters():
            p.add_(torch.randn_like(p) * 0.01)  # not the seeded init: loading must really move values
    state = official_state(src)
    assert convert_svd.is_official_layout(state)
    ours, unplaced = _convert(state)
    assert unplaced == []
    dst = _models()
    convert_svd.load_strict(dst, ours)
    for name in src:
        a, b = src[name].state_dict(), dst[name].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith("quant_conv")), name


def test_unknown_key_is_reported_by_name_and_missing_key_fails_strict_loading():
    state = official_state(_models())
    state["model.diffusion_model.input_blocks.99.0.in_layers.0.weight"] = torch.zeros(1)
    _, unplaced = _convert(state)
    assert unplaced == ["model.diffusion_model.input_blocks.99.0.in_layers.0.weight (no rule for this UNet key)"]

    state = official_state(_models())
    del state["controlnet.middle_block.1.proj_in.weight"]
    ours, unplaced = _convert(state)
    assert unplaced == []
    with pytest.raises(ValueError, match=r"1 missing key\(s\) \['streaming.cam.mid_block.attentions.0.proj_in.weight'\]"):
        convert_svd.load_strict(_models(), ours)


def test_weights_only_refuses_a_pickle_with_an_arbitrary_object(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hook": pickle.PickleError("x")}, path)
    with pytest.raises(UnsafeCheckpointError, match="refused by torch.load\\(weights_only=True\\)"):
        read_checkpoint(path)
    clean = tmp_path / "clean.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}}, clean)
    assert torch.equal(read_checkpoint(clean)["w"], torch.ones(2))


def test_cli_convert_writes_safetensors_and_exits_1_on_unplaced(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from stt2v_ray.cli import main

    state = official_state(_models())
    state["somewhere.else"] = torch.zeros(1)
    src = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(src))
    out = tmp_path / "ours.safetensors"
    code = main(["convert", "--preset", "streamingsvd-toy", "--input", str(src), "--output", str(out)])
    assert code == 1 and out.is_file()
    assert "somewhere.else" not in read_checkpoint(out)
