"""Command-line inputs (prompts, one image, a folder of images): ids, detection, validation, the `input` column."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from stt2v_ray.inputs.direct import (
    DEFAULT_NUM_FRAMES,
    VideoFlags,
    image_kind,
    image_source,
    open_direct,
    prompt_source,
    sanitise_id,
    unique_ids,
)
from stt2v_ray.inputs.errors import InputError
from stt2v_ray.inputs.requests import check_id


def _png(path: Path, size=(40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10, 200, 30)).save(path)
    return path


@pytest.mark.parametrize("text, expected", [
    ("a cat surfing a wave", "a_cat_surfing_a_wave"),
    ("Café au lait!", "Cafe_au_lait"),
    ("..hidden", "hidden"),
    ("_.x", "x"),
    ("日本", "video"),
    ("   ", "video"),
    ("run-01.v2", "run-01.v2"),
])
def test_sanitise_id_gives_valid_ids(text, expected):
    assert sanitise_id(text) == expected
    assert check_id(sanitise_id(text)) == expected
    assert len(sanitise_id("x" * 500)) == 128


def test_unique_ids_suffix_collisions_case_insensitively_and_never_steal_a_name():
    assert unique_ids(["x", "x", "x-2", "X", "a"]) == ["x", "x-3", "x-2", "X-4", "a"]
    long = "y" * 128
    assert unique_ids([long, long]) == [long, "y" * 126 + "-2"]


def test_prompt_source_one_video_per_prompt_with_flags():
    flags = VideoFlags(prompts=("a cat", "a cat", "a dog"), num_frames=12, fps=8, seed=4, negative_prompt="blur")
    src = prompt_source(flags)
    assert src.validate([]) == []
    got = [(r.id, r.prompt, r.num_frames, r.fps, r.seed, r.negative_prompt, r.image, e) for r, e in src.iter_requests()]
    assert got == [
        ("a_cat", "a cat", 12, 8, 4, "blur", None, {"input": "a cat"}),
        ("a_cat-2", "a cat", 12, 8, 4, "blur", None, {"input": "a cat"}),
        ("a_dog", "a dog", 12, 8, 4, "blur", None, {"input": "a dog"}),
    ]
    assert src.count() == 3 and src.extra_schema().names == ["input"]
    # Without --num-frames: the original StreamingSVD's default.
    assert next(prompt_source(VideoFlags(prompts=("x",))).iter_requests())[0].num_frames == DEFAULT_NUM_FRAMES == 200


def test_prompt_errors_name_the_prompt_and_flag_errors_name_the_flag_once():
    issues = [str(i) for i in prompt_source(VideoFlags(prompts=("ok", " "), num_frames=5)).validate([])]
    assert issues == ["--prompt: [1]: prompt: give a non-blank prompt or an image (or both)"]
    issues = [str(i) for i in prompt_source(VideoFlags(prompts=("a", "b"), num_frames=0, fps=999)).validate([])]
    assert issues == ["--num-frames: num_frames: Input should be greater than or equal to 1",
                      "--fps: fps: Input should be less than or equal to 240"]
    # A bad setting is named as --set, not as the (non-existent) file "--prompt".
    issues = [str(i) for i in prompt_source(VideoFlags(prompts=("a",))).validate(["enhance.chunk_frames=0"])]
    assert issues == ["--set: settings: enhance.chunk_frames: Input should be greater than or equal to 1"]


def test_folder_of_images(tmp_path):
    d = tmp_path / "pics"
    for name in ["b cat.png", "B_cat.JPG", "a.jpeg", "c.bmp", "d.webp", ".hidden.png"]:
        _png(d / name)
    (d / "notes.txt").write_text("not an image")
    _png(d / "sub" / "deeper.png")  # not read: the original reads the folder's top level only
    assert image_kind(str(d)) == "folder" and image_kind(str(d / "a.jpeg")) == "image"
    src = image_source(str(d), VideoFlags(prompts=("waves",), num_frames=7))
    assert src.validate([]) == []
    assert src.image_roots() == [str(d)]  # the image policy's root: the folder named, not the working directory
    assert image_source(str(d / "a.jpeg"), VideoFlags()).image_roots() == [str(d)]
    got = [(r.id, Path(r.image).name, r.prompt, e["input"]) for r, e in src.iter_requests()]
    assert got == [
        ("B_cat", "B_cat.JPG", "waves", str(d / "B_cat.JPG")),
        ("a", "a.jpeg", "waves", str(d / "a.jpeg")),
        ("b_cat-2", "b cat.png", "waves", str(d / "b cat.png")),
        ("c", "c.bmp", "waves", str(d / "c.bmp")),
        ("d", "d.webp", "waves", str(d / "d.webp")),
    ]


def test_image_errors_are_located_by_file_name(tmp_path):
    d = tmp_path / "pics"
    _png(d / "good.png")
    (d / "broken.png").mkdir()  # a folder named like an image is not an image
    src = image_source(str(d), VideoFlags(prompts=("a", "b")))
    assert [str(i) for i in src.validate([])] == [
        "--prompt: prompt: give at most one --prompt with an image or a folder (it applies to every image); got 2"]
    issues = [str(i) for i in image_source(str(d), VideoFlags(num_frames=-1)).validate([])]
    assert issues == ["--num-frames: num_frames: Input should be greater than or equal to 1"]


def test_what_is_not_an_image_input(tmp_path):
    d = tmp_path / "ds"
    _png(d / "x.png")
    (d / "prompts.parquet").write_bytes(b"PAR1")
    assert image_kind(str(d)) is None  # a Parquet dataset (its rows may reference the images)
    (tmp_path / "empty").mkdir()
    assert image_kind(str(tmp_path / "empty")) is None
    assert image_kind(str(tmp_path / "missing.png")) is None
    m = tmp_path / "m.yaml"
    m.write_text("prompts: [{prompt: a, num_frames: 3}]\n")
    assert open_direct(str(m), VideoFlags()) is None  # open_input's job
    with pytest.raises(InputError) as err:
        open_direct(str(m), VideoFlags(prompts=("x",), seed=3))
    assert [i.file for i in err.value.issues] == ["--prompt", "--seed"]
    assert "is a manifest or dataset" in str(err.value)


def test_s3_folder_of_images(tmp_path, s3_bucket):
    import s3fs

    fs = s3fs.S3FileSystem()
    for name in ["one.png", "two.jpg"]:
        fs.put(str(_png(tmp_path / name)), f"{s3_bucket}/pictures/{name}")
    fs.put(str(_png(tmp_path / "n.png")), f"{s3_bucket}/pictures/nested/n.png")
    uri = f"s3://{s3_bucket}/pictures/"
    assert image_kind(uri) == "folder" and image_kind(f"s3://{s3_bucket}/pictures/one.png") == "image"
    src = image_source(uri, VideoFlags(num_frames=5))
    assert src.validate([]) == []
    assert src.image_roots() == [f"s3://{s3_bucket}/pictures"]
    assert [(r.id, r.image) for r, _ in src.iter_requests()] == [
        ("one", f"s3://{s3_bucket}/pictures/one.png"), ("two", f"s3://{s3_bucket}/pictures/two.jpg")]
