"""VideoRequest: field rules, derived ids, duplicate registry."""
from __future__ import annotations

import hashlib
import json

import pytest
from pydantic import ValidationError

from stt2v_ray.inputs import InputIssue, VideoRequest, check_id, derive_id
from stt2v_ray.inputs.ids import IdRegistry
from stt2v_ray.inputs.requests import request_from


def test_derived_id_is_sha256_of_canonical_content():
    request = VideoRequest(prompt="a cat", negative_prompt="", num_frames=8, seed=3)
    canonical = '{"fps":null,"image":null,"negative_prompt":"","num_frames":8,"prompt":"a cat","seed":3}'
    assert json.loads(canonical) == {k: v for k, v in request.model_dump().items() if k != "id"}
    assert request.id == derive_id(request) == "v-" + hashlib.sha256(canonical.encode()).hexdigest()[:16]
    # Pinned value: ids of existing outputs must not change between versions.
    assert request.id == "v-" + hashlib.sha256(canonical.encode()).hexdigest()[:16] == "v-fc827df6d06e007e"


def test_derived_id_depends_on_every_field():
    base = dict(prompt="p", num_frames=8)
    variants = [base, {**base, "prompt": "q"}, {**base, "negative_prompt": "n"}, {**base, "image": "/i.png"},
                {**base, "num_frames": 9}, {**base, "fps": 24}, {**base, "seed": 1}]
    assert len({VideoRequest(**v).id for v in variants}) == len(variants)


def test_explicit_id_kept_and_integer_id_accepted():
    assert VideoRequest(id="clip_01.a-b", prompt="p", num_frames=1).id == "clip_01.a-b"
    assert VideoRequest.model_validate({"id": 42, "prompt": "p", "num_frames": 1}).id == "42"
    assert VideoRequest(id=None, prompt="p", num_frames=1).id.startswith("v-")


def test_extra_fields_forbidden_and_model_frozen():
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        VideoRequest(prompt="p", num_frames=1, colour="red")
    request = VideoRequest(prompt="p", num_frames=1)
    with pytest.raises(ValidationError, match="frozen"):
        request.prompt = "q"


@pytest.mark.parametrize("value", ["a", "A.b_c-9", "x" * 128, "v-0123456789abcdef"])
def test_check_id_accepts(value):
    assert check_id(value) == value


@pytest.mark.parametrize("value, message", [
    ("", "must be 1 to 128 characters long (got 0)"),
    ("x" * 129, "must be 1 to 128 characters long (got 129)"),
    (".x", "must not start with '.'"),
    ("..", "must not start with '.'"),
    ("a/b", "may contain only letters, digits, '.', '_' and '-' (found '/')"),
    ("é", "may contain only letters, digits, '.', '_' and '-' (found 'é')"),
])
def test_check_id_rejects(value, message):
    with pytest.raises(ValueError) as caught:
        check_id(value)
    assert str(caught.value) == message


def test_seed_and_fps_bounds():
    assert VideoRequest(prompt="p", num_frames=1, seed=2**63 - 1, fps=240).seed == 2**63 - 1
    _, issues = request_from({"prompt": "p", "num_frames": 1, "seed": 2**63, "fps": 0}, "/d", "f", "row 0")
    assert issues == [InputIssue("f", "row 0", "fps", "Input should be greater than or equal to 1"),
                      InputIssue("f", "row 0", "seed", "Input should be less than or equal to 9223372036854775807")]


def test_request_from_reports_prompt_rule_with_field_errors():
    _, issues = request_from({"num_frames": 0}, "/d", "f", "prompts[0]")
    assert issues == [InputIssue("f", "prompts[0]", "num_frames", "Input should be greater than or equal to 1"),
                      InputIssue("f", "prompts[0]", "prompt", "give a non-blank prompt or an image (or both)")]
    _, issues = request_from({"prompt": 5, "num_frames": 1}, "/d", "f", "prompts[0]")
    assert issues == [InputIssue("f", "prompts[0]", "prompt", "Input should be a valid string")]
    _, issues = request_from({"image": "", "num_frames": 1}, "/d", "f", "prompts[0]")
    assert issues == [InputIssue("f", "prompts[0]", "image", "String should have at least 1 character")]


def test_request_from_image_only_and_whole_number_floats():
    request, issues = request_from({"image": "x/../a.png", "num_frames": 16.0, "seed": 3.0}, "s3://b/d", "f", "row 0")
    assert issues == [] and (request.image, request.num_frames, request.seed) == ("s3://b/d/a.png", 16, 3)


def test_id_registry():
    registry = IdRegistry()
    assert registry.add("a", 0) is None and registry.add("b", 1) is None
    assert registry.add("a", 7) == 0 and registry.add("a", 9) == 0
    assert len(registry) == 2
