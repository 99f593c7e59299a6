"""`stt2v-ray render/validate` without a manifest, the original's flags as aliases, conflicts, --dry-run."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from stt2v_ray.cli import main
from stt2v_ray.inputs.direct import default_num_frames
from stt2v_ray.video.decode import read_video
from tests.test_render_e2e import sets


def _png(path: Path, size=(60, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 30, 30)).save(path)
    return path


def dry(capsys, *argv: str) -> tuple[list[dict], dict, str]:
    """(videos listed, resolved settings, stderr) of `render --dry-run ARGV`."""
    assert main(["render", "--dry-run", *argv]) == 0
    out, err = capsys.readouterr()
    head, settings = out.split("\nsettings:\n")
    lines = head.splitlines()[1:]
    names = lines[0].split()
    videos = [dict(zip(names, shlex.split(line), strict=True)) for line in lines[1:] if not line.startswith("  *")]
    return videos, yaml.safe_load(settings), err


# ------------------------------------------------------------------ dry run


def test_dry_run_lists_prompts_and_settings_and_starts_nothing(capsys):
    videos, settings, err = dry(capsys, "--prompt", "a cat surfing a wave", "--prompt", "a dog", "--num-frames", "30",
                                "--fps", "12", "--seed", "9", "--set", "enhance.steps=3")
    assert videos == [
        {"id": "a_cat_surfing_a_wave", "num_frames": "30", "fps": "12", "seed": "9", "image": "-",
         "prompt": "a cat surfing a wave", "negative_prompt": "-"},
        {"id": "a_dog", "num_frames": "30", "fps": "12", "seed": "9", "image": "-", "prompt": "a dog", "negative_prompt": "-"},
    ]
    assert settings["preset"] == "tiny" and settings["executor"] == "ray" and settings["enhance"]["steps"] == 3
    assert err == ""
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized()


def test_dry_run_of_a_manifest(capsys):
    manifest = Path(__file__).resolve().parents[1] / "manifests" / "demo.yaml"
    videos, settings, _ = dry(capsys, str(manifest))
    assert [v["id"] for v in videos][:2] == ["red-circle-right", "blue-square-down"]
    assert settings["preset"] == "toy"


def test_dry_run_of_a_parquet_dataset_lists_the_first_rows_and_counts_the_rest(capsys, tmp_path, monkeypatch):
    import pyarrow as pa

    import stt2v_ray.cli_inputs as cli_inputs

    monkeypatch.setattr(cli_inputs, "DRY_RUN_ROWS", 2)
    table = pa.table({"id": ["r0", "r1", "r2"], "prompt": ["a b", "c", "d"], "num_frames": [5, 6, 7]})
    pq.write_table(table, tmp_path / "p.parquet")
    assert main(["render", "--dry-run", str(tmp_path / "p.parquet"), "--set", "preset=toy"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{tmp_path / 'p.parquet'}: 3 video(s) would be rendered (dry run: nothing rendered, nothing started)"
    assert [shlex.split(line)[:2] + shlex.split(line)[-2:] for line in lines[2:4]] == [
        ["r0", "5", "a b", "-"], ["r1", "6", "c", "-"]]
    assert lines[4] == "  ... and 1 more (all validated)"


def test_dry_run_validates_like_render(capsys, tmp_path):
    image = _png(tmp_path / "photo.png")
    assert main(["render", "--dry-run", str(image), "--set", "preset=toy"]) == 2
    assert "photo.png: image: preset 'toy' has no image-to-video model" in capsys.readouterr().err


def test_dry_run_of_a_folder_defaults(capsys, tmp_path):
    _png(tmp_path / "pics" / "Holiday Photo.png")
    # streamingsvd: the original inference_i2v.py's --num_frames default, 200 frames
    videos, _, _ = dry(capsys, str(tmp_path / "pics"), "--set", "preset=streamingsvd")
    assert [(v["id"], v["num_frames"], v["fps"], v["seed"]) for v in videos] == [("Holiday_Photo", "200", "24*", "0")]
    videos, _, _ = dry(capsys, str(tmp_path / "pics"))
    assert videos[0]["num_frames"] == str(default_num_frames("tiny"))


# ------------------------------------------------------------------ aliases


@pytest.mark.parametrize("argv, key, value", [
    (["--chunk_size", "20"], "enhance.chunk_frames", 20),
    (["--chunk", "20"], "enhance.chunk_frames", 20),
    (["--overlap_size", "5"], "enhance.overlap_frames", 5),
    (["--overlap", "5"], "enhance.overlap_frames", 5),
    (["--use_randomized_blending"], "enhance.blending", "randomized"),
    (["--use_randomized_blending", "True"], "enhance.blending", "randomized"),
    (["--use_randomized_blending", "False"], "enhance.blending", "none"),
    (["--no-use_randomized_blending"], "enhance.blending", "none"),
    (["--num_steps", "7"], "t2v.steps", 7),
    (["--image_guidance", "9.0"], "t2v.guidance_scale", 9.0),
    (["--device", "cpu"], "device", "cpu"),
])
def test_setting_aliases(capsys, argv, key, value):
    _, settings, err = dry(capsys, "--prompt", "x", *argv)
    for part in key.split("."):
        settings = settings[part]
    assert settings == value
    said = argv[0] if argv[-1] == "True" else " ".join(argv)  # a bare flag is its True
    assert err == f"note: {said} stands for --set {key}={value}\n"


@pytest.mark.parametrize("argv, column, value", [
    (["--num_frames", "33"], "num_frames", "33"),
    (["--out_fps", "10"], "fps", "10"),
    (["--seed", "5"], "seed", "5"),
])
def test_per_video_aliases(capsys, argv, column, value):
    videos, _, err = dry(capsys, "--prompt", "x", *argv)
    assert videos[0][column] == value
    if argv[0] != "--seed":  # same spelling in both projects: nothing to say
        canonical = {"num_frames": "--num-frames", "fps": "--fps"}[column]
        assert err == f"note: {' '.join(argv)} stands for {canonical} {value} (each video's {column})\n"
    else:
        assert err == ""


def test_negative_prompt_input_output_aliases(capsys, tmp_path):
    image = _png(tmp_path / "photo.png")
    assert main(["render", "--dry-run", "--input", str(image), "--negative_prompt", "blurry", "--output_dir", "o/",
                 "--input", str(image)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == f"{image}: 1 video(s) would be rendered into o/ (dry run: nothing rendered, nothing started)"
    assert shlex.split(out.splitlines()[2])[-3:] == [str(image), "-", "blurry"]
    # Each note once, though --input was given twice.
    assert err.splitlines() == [f"note: --input {image} is the INPUT argument",
                                "note: --negative_prompt blurry stands for --negative-prompt blurry "
                                "(each video's negative_prompt)",
                                "note: --output_dir o/ is --output o/"]


def test_use_memopt_is_the_memory_bundle(capsys):
    _, settings, err = dry(capsys, "--prompt", "x", "--set", "preset=streamingsvd-toy", "--set", "device=cpu", "--use_memopt")
    assert settings["memory"] == {"dtype": "bfloat16", "cpu_offload": True, "ff_chunk_size": 2, "vae_decode_chunk": 4,
                                  "sequential_cfg": True}
    assert err.startswith("note: --use_memopt stands for --set memory.dtype=bfloat16 --set memory.cpu_offload=true")
    _, settings, err = dry(capsys, "--prompt", "x", "--set", "preset=streamingt2v-toy", "--set", "device=cuda", "--use_memopt")
    assert settings["memory"]["dtype"] == "float16"
    _, settings, err = dry(capsys, "--prompt", "x", "--use_memopt")  # tiny: its builders read no memory settings
    assert settings["memory"]["dtype"] == "float32"
    assert err == "note: --use_memopt: preset 'tiny' reads no memory settings; nothing set\n"


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("argv, message", [
    (["--num_frames", "100", "--num-frames", "120"], "--num_frames 100 and --num-frames 120 both set num_frames"),
    (["--num-frames", "100", "--num-frames", "120"], "--num-frames 100 and --num-frames 120 both set num_frames"),
    (["--chunk_size", "24", "--set", "enhance.chunk_frames=32"],
     "--chunk_size 24 and --set enhance.chunk_frames=32 both set enhance.chunk_frames"),
    (["--chunk_size", "24", "--chunk", "20"], "--chunk_size 24 and --chunk 20 both set enhance.chunk_frames"),
    (["--out_fps", "24", "--fps", "12"], "--out_fps 24 and --fps 12 both set fps"),
    (["--use_randomized_blending", "--no-use_randomized_blending"],
     "--use_randomized_blending and --no-use_randomized_blending both set enhance.blending"),
    (["--use_randomized_blending", "--set", "enhance.blending=none"],
     "--use_randomized_blending and --set enhance.blending=none both set enhance.blending"),
    (["--set", "preset=streamingsvd-toy", "--use_memopt", "--set", "memory.dtype=float32"],
     "--use_memopt and --set memory.dtype=float32 both set memory.dtype"),
    (["--output", "a", "--output_dir", "b"], "--output a and --output_dir b both set output"),
])
def test_conflicting_values_name_both(capsys, argv, message):
    assert main(["render", "--dry-run", "--prompt", "x", *argv]) == 2
    _, err = capsys.readouterr()
    assert f"error: {message}" in err


def test_same_value_twice_is_no_conflict(capsys):
    _, settings, _ = dry(capsys, "--prompt", "x", "--chunk_size", "20", "--set", "enhance.chunk_frames=20", "--chunk", "20")
    assert settings["enhance"]["chunk_frames"] == 20


def test_input_errors(capsys, tmp_path):
    image = _png(tmp_path / "photo.png")
    cases = [
        (["render", "--dry-run"], "INPUT: give an input (a manifest, a Parquet dataset, an image or a folder of images) "
                                  "or at least one --prompt"),
        (["render", str(image), "--input", str(tmp_path)], f"INPUT {image} and --input {tmp_path} both set input"),
        (["render", "--prompt", "x"], "error: render needs --output"),
        (["validate", str(image), "--prompt", "a", "--prompt", "b"], "give at most one --prompt with an image or a folder"),
        (["validate", "--prompt", "x", "--num-frames", "0"],
         "--num-frames: num_frames: Input should be greater than or equal to 1"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv


def test_validate_accepts_command_line_inputs(capsys, tmp_path):
    _png(tmp_path / "pics" / "a.png")
    _png(tmp_path / "pics" / "b.png")
    assert main(["validate", str(tmp_path / "pics"), "--num_frames", "20"]) == 0
    assert capsys.readouterr().out == f"{tmp_path / 'pics'}: ok (2 videos)\n"


def test_help_explains_the_new_forms(capsys):
    with pytest.raises(SystemExit):
        main(["render", "--help"])
    out = capsys.readouterr().out
    for text in ['render --prompt "a cat surfing a wave" --output out/', "render photo.png", "render pictures/",
                 "s3://bucket/pictures/", "--dry-run", "--use_memopt", "--chunk_size", "--out_fps", "--num_frames"]:
        assert text in out, text


# ------------------------------------------------------------------ real renders (tiny preset, in process)

FAST = sets("enhance.enabled=false")


def _rows(out) -> list[dict]:
    return pq.read_table(Path(out) / "results.parquet").to_pylist()


def test_render_one_prompt_and_repeated_prompts(tmp_path):
    out = tmp_path / "one"
    assert main(["render", "--prompt", "a cat surfing a wave", "--num-frames", "9", "--output", str(out), "--quiet"] + FAST) == 0
    assert [(r["id"], r["status"], r["num_frames"], r["input"]) for r in _rows(out)] == [
        ("a_cat_surfing_a_wave", "ok", 9, "a cat surfing a wave")]
    assert read_video(str(out / "videos" / "a_cat_surfing_a_wave.mp4"))[0].shape[0] == 9

    out = tmp_path / "two"
    assert main(["render", "--prompt", "a red circle", "--prompt", "a red circle", "--num_frames", "7", "--seed", "3",
                 "--output", str(out), "--quiet"] + FAST) == 0
    rows = _rows(out)
    assert [(r["id"], r["num_frames"], r["seed"]) for r in rows] == [("a_red_circle", 7, 3), ("a_red_circle-2", 7, 3)]
    for r in rows:
        assert read_video(str(out / "videos" / f"{r['id']}.mp4"))[0].shape[0] == 7
    assert rows[0]["frames_sha256"] == rows[1]["frames_sha256"]  # same prompt, same seed: same frames


def test_render_one_image_and_a_local_folder(tmp_path):
    image = _png(tmp_path / "photo.png")
    out = tmp_path / "img"
    assert main(["render", str(image), "--prompt", "waves", "--num-frames", "8", "--out_fps", "12",
                 "--output", str(out), "--quiet"] + FAST) == 0
    [row] = _rows(out)
    assert (row["id"], row["status"], row["num_frames"], row["fps"], row["input"]) == ("photo", "ok", 8, 12, str(image))
    frames, fps = read_video(str(out / "videos" / "photo.mp4"))
    assert frames.shape[0] == 8 and fps == pytest.approx(12)

    pics = tmp_path / "pics"
    _png(pics / "b.png")
    _png(pics / "a b.jpg", (48, 48))
    out = tmp_path / "folder"
    assert main(["render", str(pics), "--num-frames", "6", "--output", str(out), "--quiet"] + FAST) == 0
    rows = _rows(out)
    assert [(r["id"], r["status"], r["num_frames"], r["input"]) for r in rows] == [
        ("a_b", "ok", 6, str(pics / "a b.jpg")), ("b", "ok", 6, str(pics / "b.png"))]
    for r in rows:
        assert read_video(str(out / "videos" / f"{r['id']}.mp4"))[0].shape[0] == 6


def test_render_s3_folder_of_images(tmp_path, s3_bucket):
    import s3fs

    fs = s3fs.S3FileSystem()
    for name in ["one.png", "two.png"]:
        fs.put(str(_png(tmp_path / name)), f"{s3_bucket}/pictures/{name}")
    out = f"s3://{s3_bucket}/runs/pics"
    assert main(["render", f"s3://{s3_bucket}/pictures/", "--num_frames", "5", "--output", out, "--quiet"] + FAST) == 0
    fs.invalidate_cache()
    with fs.open(f"{s3_bucket}/runs/pics/results.parquet", "rb") as f:
        rows = pq.read_table(f).to_pylist()
    assert [(r["id"], r["status"], r["num_frames"], r["input"]) for r in rows] == [
        ("one", "ok", 5, f"s3://{s3_bucket}/pictures/one.png"), ("two", "ok", 5, f"s3://{s3_bucket}/pictures/two.png")]
    for r in rows:
        local = tmp_path / f"{r['id']}.mp4"
        fs.get(r["video_uri"], str(local))
        assert read_video(str(local))[0].shape[0] == 5
