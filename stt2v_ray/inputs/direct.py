"""Inputs given on the command line: prompts, one image, or a folder of images (local or fsspec).

    stt2v-ray render --prompt "a cat surfing a wave" --output out/     # one video per --prompt
    stt2v-ray render photo.png --prompt "waves" --output out/          # one image-to-video video
    stt2v-ray render s3://bucket/pictures/ --output out/              # one video per image

They become an in-memory manifest, so validation, records and results are exactly those of
manifests. Ids come from the prompt text or the image's file name, made valid the way ids
must be (see `sanitise_id`); names that collide get -2, -3, ... in sorted order. Each video
carries an extra `input` column: the image's URI, or for prompt-only videos the prompt text.
"""
from __future__ import annotations

import os
import posixpath
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from pydantic import ValidationError

from stt2v_ray.inputs.errors import InputError, InputIssue, issues_from_validation
from stt2v_ray.inputs.manifest import Manifest
from stt2v_ray.inputs.parquet import PARQUET_SUFFIXES
from stt2v_ray.inputs.requests import MAX_ID_LENGTH, VideoRequest
from stt2v_ray.inputs.source import InputSource
from stt2v_ray.storage import filesystem, parent_uri, storage_options_for, to_uri

# The original's inference_i2v.py reads *.jpg, *.png, *.jpeg and *.bmp (any case); webp too here.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
# Without --num-frames: the preset's `default_num_frames` where presets have one, else the original
# StreamingSVD's --num_frames default (also the frame count of both of the original's README commands).
DEFAULT_NUM_FRAMES = 200
PROMPT_ID_LENGTH = 64  # ids from prompts stay readable file names; collisions are suffixed
_NOT_ID_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_EDGES = re.compile(r"^[._]+|_+$")  # ids must not start with '.'; '_' at the edges is only noise
_FLAG_OF_FIELD = {"num_frames": "--num-frames", "fps": "--fps", "seed": "--seed",
                  "negative_prompt": "--negative-prompt", "prompt": "--prompt"}


@dataclass(frozen=True)
class VideoFlags:
    """Per-video fields from flags (None: not given)."""

    prompts: tuple[str, ...] = ()
    negative_prompt: str | None = None
    num_frames: int | None = None
    fps: int | None = None
    seed: int | None = None
    default_num_frames: int = DEFAULT_NUM_FRAMES  # when --num-frames is not given

    def fields(self) -> dict[str, Any]:
        values = {"negative_prompt": self.negative_prompt, "num_frames": self.num_frames, "fps": self.fps, "seed": self.seed}
        values = {k: v for k, v in values.items() if v is not None}
        values.setdefault("num_frames", self.default_num_frames)
        return values

    def given(self) -> list[str]:
        """The flags set, by their canonical names."""
        names = ["--prompt"] if self.prompts else []
        fields = ("negative_prompt", "num_frames", "fps", "seed")
        return names + [_FLAG_OF_FIELD[k] for k in fields if getattr(self, k) is not None]


def sanitise_id(text: str, fallback: str = "video", limit: int = MAX_ID_LENGTH) -> str:
    """A valid id (see requests.check_id) from free text: accents dropped, runs of other characters -> '_'.

    'Café au lait!' -> 'Cafe_au_lait'; '..hidden' -> 'hidden'; '日本' -> fallback.
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    out = _EDGES.sub("", _NOT_ID_CHARS.sub("_", ascii_text)[:limit])
    return out or fallback


def unique_ids(names: list[str], limit: int = MAX_ID_LENGTH) -> list[str]:
    """Unique ids, compared case-insensitively (x.png and X.jpg must not share an MP4 on macOS): x, X-2, ...

    A suffixed id never takes a name another input has as its own.
    """
    taken = {n.lower() for n in names}
    used: set[str] = set()
    out = []
    for name in names:
        candidate, n = name, 1
        while candidate.lower() in used or (candidate.lower() != name.lower() and candidate.lower() in taken):
            n += 1
            candidate = name[: limit - len(f"-{n}")] + f"-{n}"
        used.add(candidate.lower())
        out.append(candidate)
    return out


class DirectSource(InputSource):
    """An InputSource over requests built from the command line, located by flag or file name."""

    def __init__(self, uri: str, entries: list[tuple[str, dict[str, Any], str]], issues: list[InputIssue],
                 storage_options: dict[str, Any], roots: list[str] | None = None):
        """entries: (location, raw request fields, value of the `input` column); roots: where its images are."""
        fs, path = filesystem(os.getcwd())  # no file of its own: images carry absolute URIs
        manifest = Manifest(uri, entries=[(i, raw) for i, (_, raw, _) in enumerate(entries)],
                            num_prompts=len(entries), issues=issues)
        super().__init__(uri, "manifest", fs, path, storage_options, manifest=manifest)
        self._where = [loc for loc, _, _ in entries]
        self._inputs = [name for _, _, name in entries]
        self._roots = list(roots or [])

    def image_roots(self) -> list[str]:
        # The image or folder the user named on the command line, not the working directory.
        return self._roots

    def _settings(self, overrides: list[str], base: dict[str, Any] | None) -> tuple[Any, list[InputIssue]]:
        # Every setting of a command-line input comes from --set (and the preset): say so in errors.
        settings, issues = super()._settings(overrides, base)
        return settings, [InputIssue("--set", i.location, i.field, i.message) if i.file == self.uri else i for i in issues]

    def extra_schema(self) -> pa.Schema:
        return pa.schema([("input", pa.string())])

    def _location(self, index: int) -> tuple[str, str]:
        return self.uri, self._where[index]

    def _raw_requests(self, with_extra: bool) -> Iterator[tuple]:
        for index, raw in self._manifest.entries:
            row = (index, self.uri, self._where[index], raw)
            yield row + ({"input": self._inputs[index]},) if with_extra else row


def flag_issues(flags: VideoFlags) -> list[InputIssue]:
    """Problems of the flag values themselves, once (not once per image), named by flag."""
    try:
        VideoRequest.model_validate({"prompt": "x", **flags.fields()})
    except ValidationError as error:
        issues = issues_from_validation(error, VideoRequest, "", "")
        return [InputIssue(_FLAG_OF_FIELD.get(i.field, i.field), "", i.field, i.message) for i in issues]
    return []


def prompt_source(flags: VideoFlags) -> DirectSource:
    """One video per --prompt; ids from the prompt text."""
    issues = flag_issues(flags)
    ids = unique_ids([sanitise_id(p, limit=PROMPT_ID_LENGTH) for p in flags.prompts])
    entries = []
    for i, (prompt, vid) in enumerate(zip(flags.prompts, ids, strict=True)):
        location = f"[{i}]" if len(flags.prompts) > 1 else ""
        entries.append((location, {"id": vid, "prompt": prompt, **flags.fields()}, prompt))
    return DirectSource("--prompt", entries if not issues else [], issues, {})


def image_kind(uri: str, storage_options: dict[str, Any] | None = None) -> str | None:
    """'image' (an image file), 'folder' (a folder with images at its top level and no Parquet there), else None."""
    options = storage_options_for(uri, storage_options)
    try:
        fs, path = filesystem(uri, options)
        fs.invalidate_cache()
        if _is_image(path):
            return "image" if fs.isfile(path) else None
        if not fs.isdir(path):
            return None
        names = [posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False)]
    except (OSError, ValueError):
        return None  # open_input reports what is wrong with it
    if any(n.lower().endswith(PARQUET_SUFFIXES) for n in names):
        return None  # a Parquet dataset (its images are referenced by rows)
    return "folder" if any(_is_image(n) for n in names) else None


def image_source(uri: str, flags: VideoFlags, storage_options: dict[str, Any] | None = None) -> DirectSource:
    """One image-to-video video per image: the image `uri`, or every image at the top of folder `uri`."""
    options = storage_options_for(uri, storage_options)
    issues = flag_issues(flags)
    if len(flags.prompts) > 1:
        issues.append(InputIssue("--prompt", "", "prompt", f"give at most one --prompt with an image or a folder "
                                                           f"(it applies to every image); got {len(flags.prompts)}"))
    fs, path = filesystem(uri, options)
    folder = fs.isdir(path)
    if folder:
        listing = fs.ls(path.rstrip("/"), detail=True)
        files = sorted(e["name"] for e in listing if e.get("type") == "file" and _is_image(e["name"]))
    else:
        files = [path]
    if not files:
        issues.append(InputIssue(uri, "", "", f"no images ({', '.join(IMAGE_SUFFIXES)}) in this folder"))
    stems = [posixpath.splitext(posixpath.basename(p))[0] for p in files]
    ids = unique_ids([sanitise_id(s, fallback="image") for s in stems])
    prompt = flags.prompts[0] if flags.prompts else ""
    entries = []
    for file, vid in zip(files, ids, strict=True):
        image = to_uri(fs, file)
        location = posixpath.basename(file) if folder else ""
        entries.append((location, {"id": vid, "prompt": prompt, "image": image, **flags.fields()}, image))
    roots = [to_uri(fs, path.rstrip("/")) if folder else parent_uri(to_uri(fs, path))]
    return DirectSource(uri, entries if not issues else [], issues, options, roots)


def open_direct(uri: str | None, flags: VideoFlags, storage_options: dict[str, Any] | None = None) -> InputSource | None:
    """The source for command-line inputs, or None when `uri` is a manifest or dataset (open_input's job).

    Raises InputError when per-video flags are given with a manifest or dataset.
    """
    if uri is None:
        return prompt_source(flags)
    if image_kind(uri, storage_options) is not None:
        return image_source(uri, flags, storage_options)
    if flags.given():
        raise InputError([InputIssue(flag, "", "", f"applies to prompts or images given on the command line; "
                                     f"{uri} is a manifest or dataset: set the field in its entries (or a manifest's "
                                     f"`defaults:`)") for flag in flags.given()])
    return None


def default_num_frames(preset: str) -> int:
    """Frames of a video when --num-frames is not given: the preset's default_num_frames if presets have one."""
    from stt2v_ray.presets import PRESETS

    return getattr(PRESETS.get(preset), "default_num_frames", DEFAULT_NUM_FRAMES)


def _is_image(path: str) -> bool:
    name = posixpath.basename(path.rstrip("/"))
    return name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith(".")
