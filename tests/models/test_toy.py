"""The toy preset's parts: word tokenizer, pixel autoencoder, sharded float16 weights, strict loading."""
from __future__ import annotations

import json

import pytest
import torch

from stt2v_ray.config import RunSettings
from stt2v_ray.data.clips import ToyPrompt
from stt2v_ray.models.blocks.pixel_vae import PixelShuffleVAE, vae_scale_factor
from stt2v_ray.models.blocks.sharded import load_sharded, save_sharded
from stt2v_ray.models.blocks.weights import MissingWeightsError
from stt2v_ray.models.toy import toy


def test_every_grammar_word_is_one_token_and_prompts_fit():
    tok = toy.build_word_tokenizer()
    for word in toy.GRAMMAR_WORDS:
        assert len(tok(word).input_ids) == 3, word  # BOS, the word, EOS
    longest = ToyPrompt("magenta", "triangle", "right", "white", "quickly").text
    assert len(tok(longest).input_ids) <= toy.MAX_TOKENS
    assert len(tok("zebra").input_ids) > 3  # other words fall back to characters


def test_pixel_vae_is_exact_and_checks_shapes():
    vae = PixelShuffleVAE(4)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    z = vae.encode(x).latent_dist.mean
    assert z.shape == (2, 48, 8, 8) and vae.config.latent_channels == 48 and vae_scale_factor(vae) == 4
    assert torch.equal(vae.decode(z).sample, x)
    with pytest.raises(ValueError, match=r"divisible by 4, got \(1, 3, 30, 32\)"):
        vae.encode(torch.zeros(1, 3, 30, 32))


def test_shards_round_trip_in_float16_under_the_size_limit(tmp_path):
    state = {f"layer{i}.weight": torch.randn(300, 300) for i in range(5)} | {"step": torch.tensor(3)}
    files = save_sharded(state, tmp_path, "m", max_bytes=400_000)
    assert len(files) == 3 and all(f.stat().st_size < 400_000 + 10_000 for f in files)  # 180 kB each in float16: 2 a shard
    loaded = load_sharded(tmp_path, "m")
    assert loaded.keys() == state.keys() and loaded["layer0.weight"].dtype == torch.float16
    assert torch.equal(loaded["layer0.weight"], state["layer0.weight"].half()) and loaded["step"].item() == 3
    assert not list(tmp_path.glob("*.tmp"))
    save_sharded({"a": torch.zeros(2)}, tmp_path, "m")  # fewer shards now: the old ones go
    assert sorted(p.name for p in tmp_path.glob("m-*")) == ["m-00001-of-00001.safetensors"]
    with pytest.raises(FileNotFoundError, match="no n.index.json"):
        load_sharded(tmp_path, "n")


def test_shipped_weights_exist_small_and_load_strictly():
    files = sorted(toy.WEIGHTS_DIR.glob("*.safetensors"))
    assert files and sum(f.stat().st_size for f in files) < 50 * 2**20
    assert all(f.stat().st_size < 5 * 2**20 for f in files)
    run = RunSettings.model_validate({"preset": "toy", **{k: v for k, v in toy_defaults().items()}})
    generator = toy.t2v(run)
    assert generator.prediction_type == "sample" and generator.vae_scale_factor == 4
    enhancer = toy.enhancer(run, 32, 32)
    assert (enhancer.height, enhancer.width) == (64, 64)


def toy_defaults() -> dict:
    from stt2v_ray.presets import PRESETS

    return PRESETS["toy"].defaults


def test_loading_names_a_missing_key(tmp_path):
    state = load_sharded(toy.WEIGHTS_DIR, "t2v")
    dropped = "model.cam.mid_injector.proj_out.weight"
    save_sharded({k: v for k, v in state.items() if k != dropped}, tmp_path, "t2v")
    _, text_encoder, model = toy.t2v_modules()
    with pytest.raises(ValueError, match=r"model: missing keys \['cam.mid_injector.proj_out.weight'\]"):
        toy.load_into({"text_encoder": text_encoder, "model": model}, tmp_path, "t2v")


def test_missing_shipped_weights_are_reported(tmp_path):
    with pytest.raises(MissingWeightsError, match="t2v.index.json is missing"):
        toy.shipped_weights(folder=tmp_path)


def test_shipped_report_sits_beside_the_weights():
    report = json.loads((toy.WEIGHTS_DIR / "report" / "report.json").read_text())
    assert sorted(report["stages"]) == ["apm", "base", "cam", "enhancer"]
    assert all((toy.WEIGHTS_DIR / "report" / f"loss_{s}.png").is_file() for s in report["stages"])


def test_copy_export_takes_the_indexed_shards_and_writes_the_index_last(tmp_path):
    from stt2v_ray.models.blocks.sharded import copy_export, export_shards

    state = {f"w{i}": torch.full((300_000,), float(i)) for i in range(4)}
    files = save_sharded(state, tmp_path / "src", "t2v", max_bytes=1_000_000)
    (tmp_path / "src" / "t2v-00009-of-00009.safetensors").write_bytes(b"stale")  # not in the index
    assert export_shards(tmp_path / "src", "t2v") == files and len(files) > 1
    copy_export(tmp_path / "src", tmp_path / "dst", "t2v")
    assert sorted(p.name for p in (tmp_path / "dst").iterdir()) == sorted([f.name for f in files] + ["t2v.index.json"])
    loaded = load_sharded(tmp_path / "dst", "t2v")
    assert all(torch.equal(loaded[k], v.half()) for k, v in state.items())
