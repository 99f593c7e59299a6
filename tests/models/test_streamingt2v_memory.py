"""memory.* settings on the streamingt2v preset (toy size, CPU): sequential CFG, bfloat16, CPU offload, decode chunk."""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import torch
import yaml

from stt2v_ray.cli import main
from stt2v_ray.config import RunSettings
from stt2v_ray.models.blocks.job import GenerationJob
from stt2v_ray.models.modelscope.streamingt2v import toy_t2v

pytestmark = pytest.mark.slow  # each memory mode against a reference render (~4 min in all): `make test-fast` leaves it out

JOB = GenerationJob("a", "a cat on a sofa", "blurry", 3)


def _build(device="cpu", **memory):
    run = RunSettings.model_validate({"preset": "streamingt2v-toy", "weights": {"mode": "random"}, "memory": memory,
                                      "t2v": {"chunk_frames": 8, "cond_frames": 4, "steps": 2, "height": 64, "width": 64}})
    return toy_t2v(run, device)


def _chunks(gen):
    state = gen.prepare(JOB)
    first = gen.generate_chunk(state, 0, None, None)
    return first, gen.generate_chunk(state, 1, first[-4:], first[0])


@pytest.fixture(scope="module")
def reference():
    return _chunks(_build())


def test_sequential_cfg_runs_two_batch_one_forwards_and_matches_batched(reference):
    gen = _build(sequential_cfg=True)
    batches: list[tuple[str, int]] = []
    for name, unet in (("first", gen.first_chunk_unet), ("streaming", gen.model)):
        unet.register_forward_pre_hook(lambda m, args, kwargs, name=name: batches.append(
            (name, (args or (kwargs["sample"],))[0].shape[0])
        ),
                                       with_kwargs=True)
    out = _chunks(gen)
    # 2 sampler steps per chunk, each two forwards of one CFG half
    assert batches == [("first", 1)] * 4 + [("streaming", 1)] * 4
    for a, b in zip(reference, out, strict=False):
        # batch-1 vs batch-2 kernels round differently; measured max |diff| ~1e-5 on frames in [-1, 1]
        torch.testing.assert_close(b, a, atol=1e-4, rtol=0)


def test_bfloat16_casts_the_models_and_stays_close_to_float32(reference):
    gen = _build(dtype="bfloat16")
    for module in (gen.text_encoder, gen.vae, gen.model, gen.first_chunk_unet):
        assert {p.dtype for p in module.parameters()} == {torch.bfloat16}
    out = _chunks(gen)
    for a, b in zip(reference, out, strict=False):
        assert b.shape == (8, 3, 64, 64) and b.dtype == torch.float32 and torch.isfinite(b).all()
        # bf16 keeps 8 mantissa bits: measured max |diff| ~0.14 and mean ~0.01 (frames' std ~0.34)
        assert (a - b).abs().max() < 0.4 and (a - b).abs().mean() < 0.05


def test_cpu_offload_moves_each_model_only_for_its_stage_and_equals_no_offload(reference):
    gen = _build(cpu_offload=True)
    assert gen.offload
    names = {"text": gen.text_encoder, "vae": gen.vae, "image": gen.model.apm.image_encoder, "cam": gen.model.cam,
             "first": gen.first_chunk_unet}
    events: list[str] = []
    for name, module in names.items():
        original = module.to
        module.to = lambda *a, _o=original, _n=name, **k: (events.append(f"to {_n} {a[0]}"), _o(*a, **k))[1]
        if name != "vae":  # the VAE is called through .decode, not forward
            module.register_forward_pre_hook(lambda m, args, _n=name: events.append(f"run {_n}"))
    out = _chunks(gen)
    assert all(torch.equal(a, b) for a, b in zip(reference, out, strict=False))
    assert events == [
        "to text cpu", "run text", "to text cpu",  # prepare
        "to first cpu", "run first", "run first", "to first cpu", "to vae cpu", "to vae cpu",  # chunk 0
        "to image cpu", "run image", "to image cpu", "to cam cpu", "run cam", "run cam", "to cam cpu",  # chunk 1
        "to vae cpu", "to vae cpu",
    ]
    for module in names.values():
        assert {p.device.type for p in module.parameters()} == {"cpu"}


def test_cpu_offload_places_only_the_rest_on_the_device():
    # the meta device stands in for a GPU: offloaded models must stay on the CPU, the rest move
    gen = _build("meta", cpu_offload=True)

    def devices(module):
        return {t.device.type for t in list(module.parameters()) + list(module.buffers())}

    for module in gen.offloaded_modules():
        assert devices(module) == {"cpu"}
    assert len(gen.offloaded_modules()) == 5
    for module in (gen.model.unet, gen.model.apm.mlp):
        assert devices(module) == {"meta"}
    assert gen.model.apm.mean.device.type == "meta" and gen.model.apm.std.device.type == "meta"


def test_decode_chunk_groups_frames_per_vae_call(reference):
    gen = _build(vae_decode_chunk=3)
    sizes: list[int] = []
    decode = gen.vae.decode
    gen.vae.decode = lambda z, *a, **k: (sizes.append(z.shape[0]), decode(z, *a, **k))[1]
    out = _chunks(gen)
    assert sizes == [3, 3, 2] * 2
    for a, b in zip(reference, out, strict=False):  # a 2D VAE decodes frames independently: equal up to rounding
        torch.testing.assert_close(b, a, atol=1e-4, rtol=0)


def test_render_through_cli_with_memory_settings_gives_exact_frame_counts(tmp_path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"prompts": [{"id": "cat", "prompt": "a cat", "num_frames": 13, "seed": 1}]}))
    out = tmp_path / "out"
    sets = ["preset=streamingt2v-toy", "executor=local", "memory.sequential_cfg=true", "memory.cpu_offload=true",
            "memory.dtype=bfloat16", "memory.vae_decode_chunk=3", "memory.ff_chunk_size=2", "enhance.enabled=false",
            "t2v.steps=2", "encode.preset=ultrafast"]
    assert main(["render", str(manifest), "--output", str(out), "--quiet"] + [a for s in sets for a in ("--set", s)]) == 0
    row = pq.read_table(out / "results.parquet").to_pylist()[0]
    assert [row[k] for k in ("status", "num_frames", "width", "height")] == ["ok", 13, 64, 64]
    import imageio_ffmpeg

    assert imageio_ffmpeg.count_frames_and_secs(str(out / "videos" / "cat.mp4"))[0] == 13
