"""Prompt manifests (YAML/JSON): parsing, defaults, and one test per kind of error."""
from __future__ import annotations

import json
import os
import textwrap

import pytest

from stt2v_ray.inputs import InputError, InputIssue, VideoRequest, open_input


def write(tmp_path, text: str, name: str = "m.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def issues_of(tmp_path, text: str, name: str = "m.yaml", overrides=()) -> list[InputIssue]:
    return open_input(write(tmp_path, text, name)).validate(list(overrides))


def test_valid_manifest_applies_defaults_and_keeps_order(tmp_path):
    uri = write(tmp_path, """
        defaults: {num_frames: 40, fps: 12, negative_prompt: blurry}
        prompts:
          - {id: cat, prompt: a cat surfing, seed: 7}
          - {prompt: a dog, num_frames: 8, fps: null}
    """)
    source = open_input(uri)
    assert source.kind == "manifest" and source.count() == 2
    assert source.validate([]) == []
    got = list(source.iter_requests())
    assert [extra for _, extra in got] == [{}, {}]
    first, second = (r for r, _ in got)
    assert first == VideoRequest(id="cat", prompt="a cat surfing", negative_prompt="blurry", num_frames=40, fps=12, seed=7)
    # An explicit null overrides the default: fps falls back to the run default.
    assert (second.prompt, second.num_frames, second.fps, second.seed) == ("a dog", 8, None, 0)
    assert second.id.startswith("v-") and len(second.id) == 18


def test_json_manifest_equals_yaml(tmp_path):
    data = {"settings": {"enhance": {"steps": 3}}, "defaults": {"num_frames": 9},
            "prompts": [{"prompt": "a"}, {"id": "b", "prompt": "b", "image": "img.png"}]}
    (tmp_path / "img.png").write_bytes(b"png")
    yaml_src = open_input(write(tmp_path, json.dumps(data, indent=1).replace('"', "'"), "m.yml"))
    json_src = open_input(write(tmp_path, json.dumps(data), "m.json"))
    assert yaml_src.validate([]) == [] and json_src.validate([]) == []
    assert list(yaml_src.iter_requests()) == list(json_src.iter_requests())
    assert yaml_src.settings([]) == json_src.settings([])
    assert json_src.settings([]).enhance.steps == 3


def test_manifest_without_extension_is_sniffed(tmp_path):
    uri = write(tmp_path, "prompts: [{prompt: x, num_frames: 3}]", "prompts.txt")
    source = open_input(uri)
    assert source.kind == "manifest" and [r.prompt for r, _ in source.iter_requests()] == ["x"]


def test_relative_image_resolves_to_manifest_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(b"x")
    uri = write(tmp_path, "prompts: [{image: ../imgs/a.png, num_frames: 5}, {image: s3://b/x.png, prompt: p, num_frames: 5}]",
                "sub/m.yaml")
    requests = [r for r, _ in open_input(uri).iter_requests()]
    assert requests[0].image == str(tmp_path / "imgs" / "a.png")
    assert requests[1].image == "s3://b/x.png"


def test_relative_manifest_uri_gives_absolute_image(tmp_path, monkeypatch):
    (tmp_path / "a.png").write_bytes(b"x")
    write(tmp_path, "prompts: [{image: a.png, num_frames: 5}]")
    monkeypatch.chdir(tmp_path)
    (request, _), = open_input("m.yaml").iter_requests()
    assert request.image == os.path.join(str(tmp_path), "a.png")


def test_bad_yaml_syntax_names_file_and_line(tmp_path):
    uri = write(tmp_path, "prompts:\n  - {prompt: [unclosed\n")
    issues = open_input(uri).validate([])
    assert len(issues) == 1
    assert issues[0].file == uri and issues[0].location.startswith("line ")
    assert issues[0].message.startswith("invalid YAML:")
    with pytest.raises(InputError) as caught:
        open_input(uri).settings([])
    assert str(caught.value).startswith(f"{uri}: line ")


def test_bad_json_syntax(tmp_path):
    uri = write(tmp_path, '{"prompts": [}', "m.json")
    assert open_input(uri).validate([]) == [InputIssue(uri, "line 1, column 14", "", "invalid JSON: Expecting value")]


@pytest.mark.parametrize("text, got", [
    ("settings: {}", "missing"),
    ("prompts: []", "empty"),
    ("prompts: {prompt: x}", "got dict"),
])
def test_prompts_missing_or_empty(tmp_path, text, got):
    uri = write(tmp_path, text)
    assert open_input(uri).validate([]) == [
        InputIssue(uri, "", "prompts", f"expected a non-empty list of prompt entries; {got}")]


def test_top_level_not_a_mapping(tmp_path):
    uri = write(tmp_path, "- {prompt: x}")
    assert open_input(uri).validate([]) == [
        InputIssue(uri, "", "", "expected a mapping with keys settings, defaults, prompts; got list")]


def test_unknown_top_level_key(tmp_path):
    uri = write(tmp_path, "prompts: [{prompt: x, num_frames: 2}]\npromts: []")
    assert open_input(uri).validate([]) == [
        InputIssue(uri, "", "promts", "unknown top-level key (expected one of: settings, defaults, prompts)")]


def test_unknown_per_video_field(tmp_path):
    uri = write(tmp_path, "prompts: [{prompt: x, num_frames: 2}, {prompt: y, num_frames: 2, frames: 9}]")
    issues = open_input(uri).validate([])
    assert issues == [InputIssue(uri, "prompts[1]", "frames",
                                 "unknown field (expected one of: fps, id, image, negative_prompt, num_frames, prompt, seed)")]


def test_defaults_checked_once(tmp_path):
    uri = write(tmp_path, "defaults: {id: same, colour: red, num_frames: 4}\nprompts: [{prompt: a}, {prompt: b}]")
    assert open_input(uri).validate([]) == [
        InputIssue(uri, "defaults", "id", "ids must be unique: set them per entry, not in defaults"),
        InputIssue(uri, "defaults", "colour",
                   "unknown field (expected one of: fps, id, image, negative_prompt, num_frames, prompt, seed)"),
    ]


def test_entry_not_a_mapping(tmp_path):
    uri = write(tmp_path, "prompts: [a cat]")
    assert open_input(uri).validate([]) == [InputIssue(uri, "prompts[0]", "", "expected a mapping of per-video fields; got str")]


@pytest.mark.parametrize("value, message", [
    ("0", "Input should be greater than or equal to 1"),
    ("100001", "Input should be less than or equal to 100000"),
    ("'16'", "Input should be a valid integer"),
    ("2.5", "Input should be a valid integer"),
    ("true", "expected an integer, got True"),
])
def test_num_frames_invalid(tmp_path, value, message):
    uri = write(tmp_path, f"prompts: [{{prompt: x, num_frames: {value}}}]")
    assert open_input(uri).validate([]) == [InputIssue(uri, "prompts[0]", "num_frames", message)]


def test_num_frames_defaults_to_the_presets(tmp_path):
    from stt2v_ray.presets import PRESETS

    uri = write(tmp_path, "settings: {preset: toy}\n"
                          "prompts: [{prompt: x}, {prompt: y, num_frames: null}, {prompt: z, num_frames: 5}]")
    source = open_input(uri)
    assert source.validate([]) == []
    assert [r.num_frames for r, _ in source.iter_requests()] == [PRESETS["toy"].default_num_frames] * 2 + [5]
    # --set preset=... picks that preset's default; the manifest's defaults win over the preset's.
    source = open_input(uri)
    source.settings(["preset=streamingt2v-toy"])
    assert [r.num_frames for r, _ in source.iter_requests()][0] == PRESETS["streamingt2v-toy"].default_num_frames
    uri = write(tmp_path, "defaults: {num_frames: 7}\nprompts: [{prompt: x}]", "d.yaml")
    assert [r.num_frames for r, _ in open_input(uri).iter_requests()] == [7]
    assert PRESETS["streamingsvd"].default_num_frames == 200 and PRESETS["streamingt2v"].default_num_frames == 24


@pytest.mark.parametrize("value, message", [
    ("'a b/c'", "may contain only letters, digits, '.', '_' and '-' (found ' ', '/')"),
    ("'.hidden'", "must not start with '.'"),
    ("''", "must be 1 to 128 characters long (got 0)"),
    ("'" + "x" * 129 + "'", "must be 1 to 128 characters long (got 129)"),
])
def test_invalid_ids(tmp_path, value, message):
    uri = write(tmp_path, f"prompts: [{{id: {value}, prompt: x, num_frames: 2}}]")
    assert open_input(uri).validate([]) == [InputIssue(uri, "prompts[0]", "id", message)]


def test_duplicate_explicit_ids(tmp_path):
    uri = write(tmp_path, "prompts: [{id: a, prompt: x, num_frames: 2}, {id: b, prompt: y, num_frames: 2}, "
                          "{id: a, prompt: z, num_frames: 3}]")
    assert open_input(uri).validate([]) == [InputIssue(uri, "prompts[2]", "id", "duplicate id 'a' (also used by prompts[0])")]


def test_duplicate_derived_ids(tmp_path):
    uri = write(tmp_path, "defaults: {num_frames: 2}\nprompts: [{prompt: x}, {prompt: y}, {prompt: x, fps: null}]")
    issues = open_input(uri).validate([])
    assert len(issues) == 1 and issues[0].location == "prompts[2]" and issues[0].field == "id"
    assert issues[0].message.endswith("(also used by prompts[0])")


def test_neither_prompt_nor_image(tmp_path):
    uri = write(tmp_path, "prompts: [{prompt: '   ', num_frames: 2}]")
    assert open_input(uri).validate([]) == [
        InputIssue(uri, "prompts[0]", "prompt", "give a non-blank prompt or an image (or both)")]


def test_missing_image_file(tmp_path):
    uri = write(tmp_path, "prompts: [{image: nope.png, num_frames: 2}, {image: ., prompt: x, num_frames: 2}]")
    assert open_input(uri).validate([]) == [
        InputIssue(uri, "prompts[0]", "image", f"image not found: {tmp_path / 'nope.png'}"),
        InputIssue(uri, "prompts[1]", "image", f"image is a folder, not a file: {tmp_path}"),
    ]


def test_every_error_reported_at_once(tmp_path):
    uri = write(tmp_path, """
        settings: {enhance: {stepz: 3}}
        prompts:
          - {prompt: ok, num_frames: 4}
          - {prompt: '', num_frames: 0}
          - {id: 'bad id', prompt: x, num_frames: 4, extra: 1}
          - {prompt: y, num_frames: 4, fps: 500, seed: -1}
    """)
    issues = open_input(uri).validate([])
    assert [(i.location, i.field) for i in issues] == [
        ("settings", "enhance.stepz"),
        ("prompts[1]", "num_frames"), ("prompts[1]", "prompt"),
        ("prompts[2]", "id"), ("prompts[2]", "extra"),
        ("prompts[3]", "fps"), ("prompts[3]", "seed"),
    ]
    with pytest.raises(InputError) as caught:
        raise InputError(issues)
    lines = str(caught.value).splitlines()
    assert len(lines) == 7
    assert lines[1] == f"{uri}: prompts[1]: num_frames: Input should be greater than or equal to 1"


def test_iter_requests_refuses_invalid_manifest(tmp_path):
    uri = write(tmp_path, "prompts: [{prompt: x, num_frames: 0}]")
    with pytest.raises(InputError, match=r"prompts\[0\]: num_frames"):
        list(open_input(uri).iter_requests())


def test_missing_input_file(tmp_path):
    uri = str(tmp_path / "absent.yaml")
    with pytest.raises(InputError) as caught:
        open_input(uri)
    assert str(caught.value) == f"{uri}: no such file or folder"
