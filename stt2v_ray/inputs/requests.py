"""One video to render, as read from a manifest entry or a Parquet row."""
from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from stt2v_ray.inputs.errors import InputIssue, issues_from_validation
from stt2v_ray.results import RESULT_COLUMNS
from stt2v_ray.storage import resolve_uri

MAX_FRAMES = 100_000
MAX_SEED = 2**63 - 1
MAX_ID_LENGTH = 128
_ID_CHARS = re.compile(r"[A-Za-z0-9._-]")
_PROMPT_OR_IMAGE = "give a non-blank prompt or an image (or both)"


def _whole_number(value: Any) -> Any:
    # Parquet columns written from pandas turn ints into floats (16.0) when a null is
    # present; accept those, but never bools or strings.
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _id_text(value: Any) -> Any:
    # Integer id columns are common in datasets; their decimal text is a valid id.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


WholeNumber = Annotated[int, BeforeValidator(_whole_number)]


def check_id(value: str) -> str:
    """Ids become file names: 1..128 characters of [A-Za-z0-9._-], not starting with '.'."""
    if not 1 <= len(value) <= MAX_ID_LENGTH:
        raise ValueError(f"must be 1 to {MAX_ID_LENGTH} characters long (got {len(value)})")
    bad = sorted({c for c in value if not _ID_CHARS.fullmatch(c)})
    if bad:
        raise ValueError(f"may contain only letters, digits, '.', '_' and '-' (found {', '.join(map(repr, bad))})")
    if value.startswith("."):
        raise ValueError("must not start with '.'")
    return value


class VideoRequest(BaseModel):
    """A video request. `id` is derived from the content when not given (see `derive_id`)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: Annotated[str, BeforeValidator(_id_text)] = Field("", description="Output file name stem; derived from the content when "
            "absent.")
    prompt: str = Field("", description="Text prompt.")
    negative_prompt: str = Field("", description="Negative prompt for classifier-free guidance.")
    image: str | None = Field(None, min_length=1, description="Conditioning image (image-to-video): a path relative to "
                              "the input's folder, or a URI under an allowed prefix.")
    num_frames: WholeNumber = Field(
        ge=1, le=MAX_FRAMES,
        description="Exact frame count of the final MP4; when a manifest entry, its defaults and a Parquet row leave it "
                    "out, the preset's default_num_frames.",
    )
    fps: WholeNumber | None = Field(None, ge=1, le=240, description="Frames per second; None uses encode.default_fps.")
    seed: WholeNumber = Field(0, ge=0, le=MAX_SEED, description="Seed of every random draw of this video.")

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        return check_id(value)

    @model_validator(mode="before")
    @classmethod
    def _fill_id(cls, data: Any) -> Any:
        # The id is derived from the validated fields, in the "after" step.
        if isinstance(data, dict) and data.get("id") is None:
            data = {k: v for k, v in data.items() if k != "id"}
        return data

    @model_validator(mode="after")
    def _check(self) -> VideoRequest:
        if not self.prompt.strip() and self.image is None:
            raise ValueError(_PROMPT_OR_IMAGE)
        if "id" not in self.model_fields_set:
            object.__setattr__(self, "id", derive_id(self))
        return self


def derive_id(request: VideoRequest) -> str:
    """'v-' + 16 hex digits of SHA-256 over the content: the same row gets the same id in every run."""
    content = {
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "image": request.image,
        "num_frames": request.num_frames,
        "fps": request.fps,
        "seed": request.seed,
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "v-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


FIELDS = tuple(VideoRequest.model_fields)


def request_from(raw: dict[str, Any], base_dir: str, file: str, location: str,
                 default_num_frames: int | None = None) -> tuple[VideoRequest | None, list[InputIssue]]:
    """Validate one manifest entry / Parquet row (nulls mean "not set"; relative images join `base_dir`).

    default_num_frames: the preset's, used when the entry (with the manifest's defaults) leaves num_frames out.
    """
    values = {k: v for k, v in raw.items() if v is not None}
    if "num_frames" not in values and default_num_frames is not None:
        values["num_frames"] = default_num_frames
    if isinstance(values.get("image"), str) and values["image"]:
        values["image"] = resolve_uri(base_dir, values["image"])
    try:
        return VideoRequest.model_validate(values), []
    except ValidationError as error:
        issues = issues_from_validation(error, VideoRequest, file, location, whole="prompt")
    # A field named like a results column is a clash, not a typo: say so.
    issues = [InputIssue(i.file, i.location, i.field, f"{i.field!r} is a column of results.parquet, not a request field "
                         "(manifest entries carry no extra columns)")
              if i.field in RESULT_COLUMNS and i.message.startswith("unknown field") else i for i in issues]
    # The cross-field rule runs only once every field is valid; report it with the others.
    prompt = values.get("prompt", "")
    if isinstance(prompt, str) and not prompt.strip() and "image" not in values:
        rule = InputIssue(file, location, "prompt", _PROMPT_OR_IMAGE)
        if rule not in issues:
            issues.append(rule)
    return None, issues
